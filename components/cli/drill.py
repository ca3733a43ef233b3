"""`fab drill`: the HA scenarios on the embedded lab, each from a freshly converged cluster.

Why a thin layer: the scenarios, the sampler, the writer and the invariants are stack-neutral
(components/converge/drill.py); only the faults need the lab's VMs
(components/lab/faults.py). This module joins the two behind :class:`LabTarget` and refuses
every destructive scenario on a stack that is not a lab stack (``lab: true``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json as _json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.bundle import Bundle, Secrets, authorized_keys, render_cluster
from components.cli.common import load_stack, published_keys, require
from components.config import PROJECT_ROOT, ConfigError, Settings, load_stack_file, stack_file
from components.converge import drill as drillmod
from components.converge import fleet, scenarios, status
from components.converge.probe import Look, VipSsh, parallel_look
from components.converge.ssh import Access
from components.converge.target import Pace
from components.lab import LabError, health, load_lab, node_run
from components.lab import ceph as labceph
from components.lab.faults import LabFaults
from components.lab.plan import Lab


def lab_look(lab: Lab) -> Look:
    """A look at every lab node with its own tools (one guest-agent round trip per node), then
    at Ceph's watchers of the image (with the lab's admin key), AFTER the nodes: a mount whose
    client instance Ceph no longer lists was fenced (or lost Ceph), and cannot write. Asking
    Ceph last means a mount seen writable was writable at least until the nodes were looked
    at."""
    s = lab.settings
    command = status.status_command(s)

    def one(name: str) -> status.NodeStatus:
        ip = str(s.node(name).ip)
        try:
            r = node_run(lab.stack, name, command, timeout=10)
        except LabError as e:
            return status.NodeStatus(name, ip, "UNREACHABLE", False, False, str(e))
        return status.parse_status(name, ip, str(s.vip.ip), s.mount_point, r.stdout)

    nodes = parallel_look([n.name for n in lab.nodes], one)

    def look() -> list[status.NodeStatus]:
        statuses = nodes()
        watchers = labceph.watchers(lab)
        if watchers is None:
            return statuses
        return [
            dataclasses.replace(st, fenced=bool(st.clients) and not set(st.clients) & watchers)
            for st in statuses
        ]

    return look


LOGIN = 15.0  # seconds an SSH login to an emulated lab node may take, under a drill's load


@dataclass
class LabTarget:
    """The drill's :class:`components.converge.drill.Target` on the embedded lab."""

    lab: Lab
    secrets: Secrets
    say: Callable[[str], None] = print
    bundles: dict[str, Bundle] = field(init=False)
    ssh: VipSsh = field(init=False)

    def __post_init__(self) -> None:
        s = self.lab.settings
        self.bundles = dict(render_cluster(s, self.secrets, authorized_keys(s, PROJECT_ROOT)))
        key = str(s.ssh_key_path(PROJECT_ROOT))
        keys = self.secrets.public_host_keys
        self.ssh = VipSsh.make(str(s.vip.ip), s.ssh_user, key, keys, login=LOGIN)
        self.faults = LabFaults(self.lab)
        self._look = lab_look(self.lab)

    @property
    def settings(self) -> Settings:
        return self.lab.settings

    @property
    def mount_point(self) -> str:
        return self.settings.mount_point

    @property
    def advert_interval(self) -> float:
        return self.settings.advert_seconds

    # the lab's VMs are emulated: an SSH login costs one ~1.5 s of CPU, a look ~0.3 s: a look
    # every 1.5 s and a probe every 2 s (only while a node serves: the drill gates them) leave
    # the nodes most of their CPU for the failover itself; the writer's records share one login
    pace = Pace(sample=1.5, probe=2.0, probe_cap=1, write=1.0, recovery=240.0)

    def access(self) -> Access:
        s = self.settings
        return Access.for_stack(
            s,
            PROJECT_ROOT,
            self.secrets.public_host_keys,
            False,
            stack=self.lab.stack,
            published_keys=published_keys(s, self.lab.stack, lambda m: print(m, file=sys.stderr)),
        )

    def prepare(self) -> str | None:
        """A healthy cluster: the one a scenario left, when it is (every node running,
        one MASTER with the VIP and the volume, the others BACKUP with nothing), else every
        node reset and converged again (in priority order: repo1 MASTER)."""
        deadline = time.monotonic() + self.pace.recovery / 2
        while all(self.lab.machine(n.name).running() for n in self.lab.nodes):
            if not status.cluster_problems(self._look()):
                return None  # what the last scenario left (and tidied) is healthy
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        try:
            self.faults.reset()
        except LabError as e:
            return f"reset: {e}"
        outcome = fleet.converge_stack(self.settings, self.bundles, self.access(), report=quiet)
        if not outcome.ok:
            errors = [r.error for r in outcome.results.values() if r.error]
            return "; ".join([*errors, *outcome.problems])
        return None

    def look(self) -> Look:
        return self._look

    def inject(self, fault: str, node: str) -> None:
        self.faults.inject(fault, node)

    def hold_open(self, node: str, path: str) -> int:
        return self.faults.hold_open(node, path)

    def keep_writing(self, node: str, path: str) -> int:
        return self.faults.keep_writing(node, path)

    def alive(self, node: str, pid: int) -> bool:
        return self.faults.alive(node, pid)

    def restart_all(self) -> None:
        self.faults.restart_all()

    def foreign_watch(self) -> str:
        return self.faults.foreign_watch()

    def foreign_unwatch(self) -> None:
        self.faults.foreign_unwatch()

    def fenced(self) -> set[str] | None:
        return labceph.blocklist(self.lab)

    def notify_log(self, node: str) -> str:
        try:
            return node_run(self.lab.stack, node, "cat /run/keepalivednotify/log").stdout
        except LabError as e:
            return str(e)

    def tidy(self, faults: tuple[str, ...], node: str) -> None:
        for fault in faults:
            try:
                self.faults.undo(fault, node)
            except LabError as e:
                self.say(f"drill: could not undo {fault} on {node} ({e}); the next scenario resets")

    def close(self) -> None:
        self.faults.foreign_unwatch()
        self.ssh.close()


def quiet(_: str) -> None:
    pass


def lab_target(stack: str, say: Callable[[str], None] = quiet) -> LabTarget:
    """The target for ``stack``'s lab, which must be up; exit 2 saying so otherwise."""
    lab = load_lab(stack)
    problems = health(lab)
    if problems:
        raise Exit(
            f"drill: the lab of {stack} is not up ({'; '.join(problems)}): run "
            f"`fab lab-up --stack {stack}` first",
            code=2,
        )
    loaded = load_stack(stack, "drill")
    return LabTarget(lab, loaded.secrets, say)


def describe(r: drillmod.Result) -> list[str]:
    rec = "-" if r.recovery is None else f"{r.recovery:.2f}s"
    verdict = "PASS" if r.ok else ("FAIL (known)" if r.known_break else "FAIL")
    lines = [
        f"{r.key:<26} {verdict:<13} recovery {rec:>7}  ({r.samples} samples, "
        f"worst gap {r.worst_gap:.2f}s, {r.acked} records acked)"
    ]
    lines += [
        f"    broken {b.invariant}: {b.detail}" + (f"\n      sample {b.sample}" if b.sample else "")
        for b in r.broken
    ]
    if r.fenced:
        lines.append(f"    fenced (mounted, writes refused by Ceph): {', '.join(r.fenced)}")
    if r.broken and r.known_break:
        lines.append(f"    known: {r.known_break}")
    lines += [f"    note: {n}" for n in r.notes]
    return lines


@task(
    positional=[],
    help={
        "stack": "Stack name; destructive scenarios run only on a lab stack (repo-cluster:lab).",
        "scenario": "Run only this scenario (default: all): "
        + ", ".join(s.key for s in scenarios.SCENARIOS)
        + ".",
        "json": "Print one JSON object instead of the summary.",
    },
)
def drill(c: Context, stack: str = "", scenario: str = "", json: bool = False) -> None:
    """Break the cluster on purpose, scenario by scenario, and report which HA invariants held.

    Each scenario starts from a freshly converged healthy cluster; a sampler watches every
    node (at least every 200 ms) and a writer appends fsync'd records through the VIP. Exits
    1 when any scenario broke an invariant (known breaks included: they are real).
    """
    require("drill", stack=stack)
    chosen = [scenarios.BY_KEY[scenario]] if scenario in scenarios.BY_KEY else []
    if scenario and not chosen:
        raise Exit(f"drill: unknown scenario {scenario!r} (see `fab drill --help`)", code=2)
    chosen = chosen or list(scenarios.SCENARIOS)
    try:
        s = load_stack_file(stack_file(stack, PROJECT_ROOT))
    except (OSError, ConfigError) as e:
        raise Exit(f"drill: {e}", code=2) from None
    if not s.lab:  # lab: true outside 198.18.0.0/15 is a config error; load_lab checks again
        raise Exit(
            f"drill: refused: {', '.join(x.key for x in chosen)} are destructive and {stack} is "
            "not a lab stack (repo-cluster:lab is not true)",
            code=2,
        )
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if json else print
    target = lab_target(stack, say)
    results = []
    lock = open(target.lab.runtime / "drill.lock", "a")  # noqa: SIM115 (held for the whole drill)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        target.close()
        raise Exit(f"drill: another drill runs on {stack}'s lab", code=2) from None
    try:
        for sc in chosen:
            r = drillmod.run(target, sc, say=say)
            results.append(r)
            if not json:
                print("\n".join(describe(r)), flush=True)
        restored = target.prepare()
        if restored:
            say(f"drill: could not leave the cluster healthy: {restored}")
    finally:
        target.close()
        lock.close()
    failed = [r.key for r in results if not r.ok]
    if json:
        print(
            _json.dumps(
                {"stack": stack, "results": [r.as_dict() for r in results], "failed": failed},
                indent=2,
            )
        )
    else:
        print(
            f"drill: {len(results) - len(failed)} of {len(results)} passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    if failed:
        raise Exit(code=1)
