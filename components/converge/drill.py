"""HA drills: break the cluster on purpose, watch every node meanwhile, report what held.

Why: a failover that worked once by hand proves little; the cases that hurt (a keepalived
that dies without a goodbye, a node that flaps, a data mover holding the volume) are the ones
nobody tries. A drill runs each scenario from a freshly converged healthy cluster, injects the
fault while a sampler watches every node and a writer appends through the VIP, and reports per
scenario the invariants (:mod:`components.converge.invariants`) that broke, with the sample
that broke them, and the recovery time: fault injected -> the survivor holds the VIP, has the
volume mounted and answers SSH on the VIP. Scenarios are data; how a fault is injected is the
:class:`Target`'s (the lab's namespaces today), so this module works on any stack.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import components.converge.invariants as inv
from components.converge.invariants import Broken
from components.converge.probe import Sample, Sampler, VipProber
from components.converge.scenarios import RETURN_AFTER, Scenario
from components.converge.target import Target
from components.converge.writer import Writer


@dataclass
class Result:
    """One scenario's outcome: pass/fail, what broke, the recovery time, what was seen."""

    key: str
    title: str
    ok: bool = False
    recovery: float | None = None
    broken: list[Broken] = field(default_factory=list)
    known_break: str | None = None
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    worst_gap: float = 0.0
    acked: int = 0
    fenced: list[str] = field(default_factory=list)
    """Nodes seen with the volume mounted over a fenced Ceph client (writes refused)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.key,
            "title": self.title,
            "ok": self.ok,
            "recovery_s": None if self.recovery is None else round(self.recovery, 2),
            "broken": [b.as_dict() for b in self.broken],
            "known_break": self.known_break if self.broken else None,
            "notes": self.notes,
            "samples": self.samples,
            "worst_sample_gap_s": round(self.worst_gap, 3),
            "records_acked": self.acked,
            "fenced_mounts_seen": self.fenced,
        }


def _wait(
    sampler: Sampler,
    cond: Any,
    prober: VipProber,
    host: Any,
    after: float,
    hold: float,
    timeout: float,
) -> None:
    """Until ``cond`` held for ``hold`` seconds and ``host`` answered on the VIP, or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = sampler.since(after)
        since = inv.stable_since(samples, cond)
        who = (
            samples[-1].masters()[0] if host is None and samples and samples[-1].masters() else host
        )
        if since is not None and samples[-1].t - since >= hold and prober.first_answer(who, since):
            return
        time.sleep(0.1)


def _recovery(
    sampler: Sampler, prober: VipProber, cond: Any, host: str | None, ref: float
) -> float | None:
    samples = sampler.since(ref)
    since = inv.stable_since(samples, cond)
    if since is None:
        return None
    answer = prober.first_answer(host or samples[-1].masters()[0], ref)
    return None if answer is None else max(since, answer.done) - ref


def _serving(sampler: Sampler) -> Any:
    """The VIP is worth probing: the latest sample shows a node holding it and the volume."""

    def gate() -> bool:
        samples = sampler.samples
        return bool(samples) and any(n.holds_vip and n.mounted for n in samples[-1].nodes)

    return gate


def run(target: Target, scenario: Scenario, say: Any = print) -> Result:
    """Run one scenario on ``target``; never raises for a broken cluster: it reports it."""
    res = Result(scenario.key, scenario.title, known_break=scenario.known_break)
    problem = target.prepare()
    if problem:
        res.broken.append(Broken("setup", f"no healthy cluster to start from: {problem}"))
        return res
    look = target.look()
    first = Sample(0.0, tuple(look()))
    (master,) = first.masters() or ("?",)
    survivor = next((n.name for n in first.nodes if n.name != master), "?")
    ssh = target.ssh
    before = ssh.hostname()
    if before != master:
        res.broken.append(
            Broken("I3", f"before: ssh to the VIP answered {before!r}, want {master}")
        )
    pace = target.pace
    run_id = f"{scenario.key}-{uuid.uuid4().hex[:8]}"
    writer = Writer(ssh.shared(), target.mount_point, run_id, pause=pace.write, max_seconds=600)
    if err := writer.prepare():
        res.broken.append(Broken("I4", err))
        return res
    writer.start()
    writer.wait_acked(3, timeout=20)
    floor = 3 * target.advert_interval
    t0 = time.monotonic()
    holder_pid = mover_pid = None
    foreign = None
    sampler = Sampler(look, t0, pace.sample)
    prober = VipProber(ssh, t0, pace.probe, pace.probe_cap, gate=_serving(sampler))
    with sampler, prober:
        time.sleep(0.6)
        ref = time.monotonic() - t0
        host: str | None = survivor
        cond = inv.holds_all(survivor)
        if scenario.flow == "foreign":
            foreign = target.foreign_watch()
            say(f"{scenario.key}: a foreign client has the image open: {foreign}")
            ref = time.monotonic() - t0
        if scenario.flow == "holder":
            holder_pid = target.hold_open(master, writer.path)
            ref = time.monotonic() - t0
        if scenario.flow == "return":
            # a backup job writing on the master when it is cut off: a write is in flight,
            # so its unmount cannot finish until it reaches the storage again
            mover = f"{writer.path.rsplit('/', 1)[0]}/mover.bin"
            mover_pid = target.keep_writing(master, mover)
            time.sleep(0.3)
            ref = time.monotonic() - t0
        if scenario.flow == "flap":
            for _ in range(5):
                target.inject("nic_down", master)
                time.sleep(1.0)
                target.inject("nic_up", master)
                time.sleep(1.0)
            ref, host, cond = time.monotonic() - t0, None, inv.settled
        elif scenario.flow == "restart":
            target.restart_all()
            host, cond = None, inv.settled
        else:
            for fault in scenario.faults:
                target.inject(fault, master)
            if scenario.flow == "refuse":  # the image cannot be fenced from here on
                ref = time.monotonic() - t0
        say(f"{scenario.key}: fault injected on {master} at t={ref:.2f}s")
        if scenario.flow == "refuse":
            # nobody may mount an image that cannot be fenced: watch a while, then heal it
            time.sleep(max(pace.recovery / 3, 4 * floor))
            refused = time.monotonic() - t0
            res.broken += inv.nobody_mounted(sampler.since(ref))
            logs = [target.notify_log(n.name) for n in first.nodes]
            if not any("rbd feature enable" in log for log in logs):
                res.broken.append(Broken("R2", "no node's log says how to enable the feature"))
            target.inject(scenario.heal or "", master)
            say(f"{scenario.key}: {scenario.heal} at t={refused:.2f}s")
            ref, host, cond = refused, None, inv.settled
        _wait(sampler, cond, prober, host, ref, hold=floor, timeout=pace.recovery)
        res.recovery = _recovery(sampler, prober, cond, host, ref)
        back = 0.0
        if scenario.flow == "heal" and scenario.heal:
            time.sleep(scenario.outlast or floor + 1)  # the fault outlasts the takeover
            target.inject(scenario.heal, master)
            back = time.monotonic() - t0
            say(f"{scenario.key}: {scenario.heal} at t={back:.2f}s")
            time.sleep(1.0)
            settle = inv.settled_with_backup(survivor, master) if scenario.keeps else inv.settled
            _wait(sampler, settle, prober, None, back, floor + 2, pace.recovery)
        if scenario.flow == "return":
            # cut off for longer than its release tries: the release gave up before it returns
            time.sleep(max(0.0, ref + RETURN_AFTER - (time.monotonic() - t0)))
            target.inject("nic_up", master)
            back = time.monotonic() - t0
            say(f"{scenario.key}: {master} back at t={back:.2f}s")
            back_cond = inv.settled_with_backup(survivor, master)
            _wait(sampler, back_cond, prober, survivor, back, floor, pace.recovery)
        if foreign is not None:
            fenced = target.fenced()
            if fenced is None or foreign in fenced:
                res.broken.append(Broken("F1", f"the foreign client {foreign} was fenced"))
            target.foreign_unwatch()
        if not writer.wait_acked(3, timeout=pace.recovery):
            res.broken.append(Broken("I4", "the writer got no acknowledgement after recovery"))
        time.sleep(0.3)
    writer.stop()
    writer.ssh.close()
    samples = list(sampler.samples)
    res.samples, res.worst_gap, res.acked = len(samples), sampler.worst_gap, len(writer.acked)
    res.fenced = sorted({n.name for x in samples for n in x.nodes if n.mounted and n.fenced})
    if res.recovery is None:
        res.notes.append(f"not recovered within {pace.recovery:.0f} s of t={ref:.2f}s")
    res.broken += inv.single_mount(samples)
    res.broken += inv.one_holder(samples[-1] if samples else None)
    if scenario.flow == "return":
        res.broken += inv.no_move(samples, back, survivor, master)
        if mover_pid is not None and target.alive(master, mover_pid):
            res.broken.append(Broken("S6", f"the writer (pid {mover_pid}) on {master} still runs"))
    if scenario.keeps:  # it froze holding the VIP: it yields at the survivor's first advert
        res.broken += inv.no_move(samples, back, survivor, master, grace=floor)
    if scenario.flow == "flap":
        res.broken += inv.vrrp_matches_mount(samples[-1] if samples else None)
    if scenario.flow == "restart" and samples and len(samples[-1].masters()) != 1:
        res.broken.append(Broken("S9", "not exactly one MASTER", samples[-1].brief()))
    if holder_pid is not None:
        if target.alive(master, holder_pid):
            res.broken.append(Broken("S7", f"the holder (pid {holder_pid}) on {master} still runs"))
        if any(n.name == master and n.mounted for n in samples[-1].nodes):
            res.broken.append(Broken("S7", f"{master} still has the volume", samples[-1].brief()))
    final = samples[-1].vip_holders() if samples else []
    after = ssh.hostname()
    if after is None or [after] != final:
        res.broken.append(
            Broken("I3", f"after: ssh to the VIP answered {after!r} (VIP on {final})")
        )
    missing, read_err = writer.missing()
    if read_err or missing:
        detail = read_err or f"{len(missing)} acknowledged record(s) missing, e.g. {missing[:5]}"
        res.broken.append(Broken("I4", detail))
    if sampler.worst_gap > 0.2:
        res.notes.append(f"a sample gap reached {sampler.worst_gap:.2f}s (target 0.2 s)")
    res.ok = not res.broken
    target.tidy(scenario.faults, master)
    return res


@dataclass(frozen=True)
class Timed:
    """One timed failover: seconds to serve (None: not recovered), a note, the survivor, and
    the wall-clock time of the fault (to line up with the survivor's notify log)."""

    took: float | None
    note: str
    survivor: str = "?"
    injected: float = 0.0
    master: str = "?"


def time_failover(target: Target, fault: str) -> Timed:
    """Only the figure (bench): fault on the MASTER of a fresh cluster -> the peer holds the
    VIP and the volume and answers SSH on the VIP. No writer, no invariants."""
    problem = target.prepare()
    if problem:
        return Timed(None, f"setup: {problem}")
    look = target.look()
    first = Sample(0.0, tuple(look()))
    (master,) = first.masters() or ("?",)
    survivor = next((n.name for n in first.nodes if n.name != master), "?")
    t0 = time.monotonic()
    pace = target.pace
    sampler = Sampler(look, t0, pace.sample)
    prober = VipProber(target.ssh, t0, pace.probe, pace.probe_cap, gate=_serving(sampler))
    with sampler, prober:
        time.sleep(0.3)
        ref = time.monotonic() - t0
        injected = time.time()
        target.inject(fault, master)
        cond = inv.holds_all(survivor)
        _wait(sampler, cond, prober, survivor, ref, hold=0.5, timeout=pace.recovery)
        took = _recovery(sampler, prober, cond, survivor, ref)
    return Timed(took, f"worst sample gap {sampler.worst_gap:.2f}s", survivor, injected, master)
