"""Cluster-wide VRRP changes without a split brain.

Why: a new auth_pass, virtual router id, advert interval, VIP or unicast peer set reloaded
node after node leaves, for a while, two keepalived that reject each other's adverts, and both
become MASTER: two VIPs, and the notify scripts race for the volume. So before the per-node
converge, the converge looks at the VRRP parameters each running keepalived has on disk (the
digest line of components/bundle/vrrp.py) and, when a running node's differ from the render:

1. stops keepalived on every running node but one, the *keeper* (the MASTER, else the first
   running node in start order); a stopped BACKUP has no VIP and no mount to give;
2. writes the keeper's new keepalived.conf and reloads it: alone, it stays MASTER (a reload
   keeps the state; a new virtual router id is a new instance: it re-elects itself after
   3 adverts, no peer runs to contest it);
3. writes each stopped node's new keepalived.conf and starts it: it joins as BACKUP.

A node whose keepalived does not run (stopped, failed, waiting for its automatic restart, or
its VM still booting) but whose keepalived.conf has other parameters would come back on them
beside the others: before the keeper reloads, its keepalived is stopped (a pending restart is
cancelled) and its new keepalived.conf written; the per-node converge that follows starts it.

At no moment do two nodes with different parameters both run. A node that cannot be reached
may run the old parameters: the change is refused, naming it, and nothing is touched. A new
machine (a node added to the stack, a replaced VM: a fresh disk that never ran keepalived) runs
no parameters at all: it is not waited for, and its own converge, after this, starts it on the
new ones (``new``; ``fab converge`` also looks at a node presenting the key its VM published,
which only a node never converged does). So adding a node with unicast VRRP, a change of the
peer set, reloads the running nodes with their new peer first, and the new node joins last.

A node removed from the stack still runs until its VM goes, at the end of ``pulumi up``; left
running beside peers that no longer list it, it would hear no advert and take the VIP. So it is
retired first (:func:`retire`): its volume released and its keepalived stopped (the release
command of a converge step's delete); when it was the MASTER, a remaining node takes over at
once (the stop's priority 0 advert) and the change waits until one is MASTER. A removed node
that cannot be reached is reported, not waited for (its VM may be gone already).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paramiko
from fabric import Connection

import components.converge.operations as operations
import components.converge.ssh as sshconn
import components.converge.status as status
from components.bundle import PATHS, BundleFile, vrrp
from components.config import Settings
from components.converge.node import StepError, feed, run
from components.converge.ssh import Access

Report = Callable[[str], None]


class RolloutError(Exception):
    """The change cannot be applied safely, or a step of it failed (the message says which)."""


@dataclass(frozen=True)
class View:
    """A node's keepalived as the rollout sees it. ``running`` None: unreachable."""

    name: str
    running: bool | None
    state: str = ""
    digest: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    keeper: str | None
    """The node updated alone (None: no running node has other parameters)."""
    stopped: tuple[str, ...]
    """Running nodes stopped first and started again, updated, after the keeper."""
    idle: tuple[str, ...] = ()
    """Nodes not running whose keepalived.conf has other parameters: stopped (a pending
    restart cancelled) and written before the keeper reloads, left for the converge to start."""


def plan(views: Sequence[View], want: str, *, complete: bool = True) -> Plan | None:
    """None when no keepalived (running, or not running with our keepalived.conf) has
    parameters other than ``want``. ``views`` in start order; ``complete``: they cover every
    node of the stack (not a ``--only`` run)."""
    stale = [v.name for v in views if v.running and v.digest != want]
    idle = [v.name for v in views if v.running is False and v.digest not in (None, want)]
    if not stale and not idle:
        return None
    what = f"the VRRP parameters of {', '.join(stale + idle)} differ from the stack's"
    unreachable = [v for v in views if v.running is None]
    if unreachable:
        seen = "; ".join(f"{v.name}: {v.error}" for v in unreachable)
        raise RolloutError(
            f"{what}, and {', '.join(v.name for v in unreachable)} cannot be reached ({seen}): "
            "a cluster-wide VRRP change must reach every node at once, or a node still running "
            "the old parameters takes the VIP as well. Bring it back (or remove it from the "
            "stack) and converge again; nothing was changed"
        )
    if not complete:
        raise RolloutError(f"{what}: a cluster-wide VRRP change converges every node, not a subset")
    if not stale:  # the running nodes have the new parameters already: no one to stop
        return Plan(None, (), tuple(idle))
    running = [v for v in views if v.running]
    masters = [v.name for v in running if v.state == "MASTER"]
    keeper = masters[0] if masters else running[0].name
    return Plan(keeper, tuple(v.name for v in running if v.name != keeper), tuple(idle))


def _look(s: Settings, c: Connection, name: str) -> View:
    st = status.parse_status(
        name,
        str(c.host),
        str(s.vip.ip),
        s.mount_point,
        c.run(
            status.status_command(s),
            hide=True,
            warn=True,
            in_stream=False,
            timeout=30,
        ).stdout,
    )
    conf = c.run(
        f"grep -F -e '{vrrp.MARKER.strip()}' {PATHS.keepalived_conf} || true",
        hide=True,
        warn=True,
        in_stream=False,
        timeout=30,
    ).stdout
    return View(name, st.vrrp_state != "STOPPED", st.vrrp_state, vrrp.digest_in(conf))


def look(s: Settings, access: Access, names: Sequence[str], new: Sequence[str] = ()) -> list[View]:
    """Every node in ``names``, in parallel, in that order: over a strict connection, or, for
    a node whose VM publishes its own key (never converged), trusting that key; a ``new``
    machine is not looked at: it runs no keepalived of ours."""

    def one(name: str) -> View:
        if name in new:
            return View(name, False, "new machine")
        published = name in dict(access.published_keys)
        target = access.target(name, str(s.node(name).ip), strict=not published)
        try:
            with sshconn.connect(target, report=lambda _m: None) as c:
                return _look(s, c, name)
        except (OSError, paramiko.SSHException, sshconn.HostKeyError) as e:
            return View(name, None, error=f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return list(pool.map(one, names))


def _install_conf(c: Connection, conf: BundleFile, family: str, start: bool) -> list[str]:
    """Write keepalived.conf (checked before it replaces the installed one, el7 aside: see
    components.converge.writes), reload (or start) keepalived; the commands run."""
    script = operations.write_files_script([operations.FileChange(conf, True)], family)
    feed(c, "vrrp", "sh -s", script.encode(), 120)
    commands = operations.keepalived(family, [conf.path], "inactive" if start else "active")
    for command in commands:
        run(c, "vrrp", command)
    run(c, "vrrp", operations.clear_owed(operations.KEEPALIVED))
    return [f"write {conf.path}", *commands]


def _write_idle(c: Connection, conf: BundleFile, family: str) -> list[str]:
    """Stop keepalived (cancelling a pending automatic restart), write keepalived.conf; no
    reload owed: it reads the file when the converge starts it."""
    stop = f"systemctl stop {PATHS.keepalived_unit}"
    run(c, "vrrp", stop)
    script = operations.write_files_script([operations.FileChange(conf, True)], family)
    feed(c, "vrrp", "sh -s", script.encode(), 120)
    run(c, "vrrp", operations.clear_owed(operations.KEEPALIVED))
    return [stop, f"write {conf.path}"]


def _check_conf(c: Connection, conf: BundleFile, family: str) -> None:
    """``keepalived -t`` of the node's new keepalived.conf on the node, installing nothing: a
    config a node rejects must stop the change before its peers are stopped (the write checks
    it again). el7's keepalived has no -t: nothing to run there."""
    script = operations.check_files_script([conf], family)
    if script is not None:
        feed(c, "vrrp (config test)", "sh -s", script.encode(), 120)


def apply(
    s: Settings,
    confs: Mapping[str, BundleFile],
    access: Access,
    *,
    only: Sequence[str] | None = None,
    new: Sequence[str] = (),
    report: Report = print,
) -> list[str]:
    """Carry out a cluster-wide VRRP change if one is due (see the module doc); the actions
    taken, each ``node: action``. RolloutError when it is refused or a step failed.
    ``confs``: each node's rendered keepalived.conf (Bundle.file(PATHS.keepalived_conf));
    ``new``: nodes whose machine is new (never converged)."""
    names = [n.name for n in s.start_order]
    want = vrrp.digest_in(confs[names[0]].content)
    if want is None:
        return []
    complete = only is None or set(names) <= set(only)
    p = plan(look(s, access, names, new), want, complete=complete)
    if p is None:
        return []
    actions: list[str] = []

    def did(node: str, what: str) -> None:
        actions.append(f"{node}: {what}")
        report(f"{node}: vrrp: {what}")

    report(
        f"vrrp: cluster-wide change of the VRRP parameters: {', '.join(p.stopped) or 'no peer'} "
        f"stopped, {p.keeper or 'no running node'} updated alone, then the others started"
        + (f"; {', '.join(p.idle)} (not running) written first" if p.idle else "")
    )

    def connect(name: str) -> Connection:
        return sshconn.connect(access.target(name, str(s.node(name).ip), strict=True))

    try:
        keeper = (p.keeper,) if p.keeper else ()
        for name in (*keeper, *p.stopped, *p.idle):  # before anything changes: see _check_conf
            with connect(name) as c:
                _check_conf(c, confs[name], s.os_family)
        for name in p.idle:
            with connect(name) as c:
                for action in _write_idle(c, confs[name], s.os_family):
                    did(name, action)
        for name in p.stopped:
            with connect(name) as c:
                run(c, "vrrp", f"systemctl stop {PATHS.keepalived_unit}")
            did(name, f"systemctl stop {PATHS.keepalived_unit}")
        if p.keeper is None:
            return actions
        with connect(p.keeper) as c:
            for action in _install_conf(c, confs[p.keeper], s.os_family, start=False):
                did(p.keeper, action)
            if not _wait_master(s, c, p.keeper):  # all run the new parameters from here on
                report(f"{p.keeper}: vrrp: not MASTER after its reload; starting the others")
        for name in p.stopped:
            with connect(name) as c:
                for action in _install_conf(c, confs[name], s.os_family, start=True):
                    did(name, action)
    except (StepError, OSError, paramiko.SSHException, sshconn.HostKeyError) as e:
        raise RolloutError(f"cluster-wide VRRP change: {e} (done so far: {actions})") from e
    return actions


def retire(
    old: Settings,
    s: Settings,
    access: Access,
    removed: Sequence[str],
    report: Report = print,
    timeout: float = 180,
) -> list[str]:
    """Release and stop each reachable ``removed`` node (named in ``old``, the settings that
    still had it), then, when one held the MASTER role, wait until a node of ``s`` is MASTER;
    the actions taken. RolloutError when a release fails or no node takes over in time."""
    actions: list[str] = []
    was_master = False
    for name in removed:
        try:
            with sshconn.connect(access.target(name, str(old.node(name).ip), strict=True)) as c:
                view = _look(old, c, name)
                if not view.running:
                    continue
                was_master = was_master or view.state == "MASTER"
                run(c, "retire", operations.release_command(), timeout=timeout)
        except StepError as e:
            raise RolloutError(f"{name} is removed from the stack but kept running: {e}") from e
        except (OSError, paramiko.SSHException, sshconn.HostKeyError) as e:
            report(f"{name}: removed from the stack, not reached ({type(e).__name__}: {e})")
            continue
        actions.append(f"{name}: released and stopped (removed from the stack)")
        report(f"{name}: vrrp: released and stopped: removed from the stack")
    if was_master:
        names = [n.name for n in s.start_order]
        deadline = time.monotonic() + timeout
        while not any(v.state == "MASTER" for v in look(s, access, names)):
            if time.monotonic() > deadline:
                raise RolloutError(f"no node took the MASTER role over from {removed}")
            time.sleep(2)
    return actions


def _wait_master(s: Settings, c: Connection, name: str) -> bool:
    """Whether the keeper is MASTER again (bounded: 3 of its new adverts, and the mount)."""
    deadline = time.monotonic() + 3 * s.advert_seconds + 20
    while time.monotonic() < deadline:
        if _look(s, c, name).state == "MASTER":
            return True
        time.sleep(0.5)
    return False
