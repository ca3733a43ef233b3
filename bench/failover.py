"""Failover and switchover timing on the lab, beside the VRRP floor.

    .venv/bin/python bench/failover.py [N] [default|fast|both]   (root; N runs per case,
                                                                   default 3, both profiles)

Builds a fresh sim lab (`components.lab.lab_up`), then per run starts from a freshly converged
healthy cluster and measures "fault injected -> the survivor holds the VIP, has the volume
mounted and answers SSH on the VIP" (at the lab target's pace: a look at the nodes every 1.5 s
and an ssh probe of the VIP every 2 s, the lab's VMs being emulated) for: the MASTER's link
down, keepalived SIGKILLed on the MASTER, the MASTER's VM powered off (its QEMU killed), split
into phases by the survivor's notify log (VRRP takeover, Ceph fence, krbd map, mount, first
SSH answer on the VIP). Then N switchovers back and forth (`fab switchover`'s code) with the
longest ssh outage on the VIP. The VRRP floor is 3 x advert_int + skew, skew = (256 -
priority) / 256 x advert_int of the BACKUP.
Prints median, p90, min, max; never asserts.
Profiles: ``default`` is the stack's (the article's VRRP v2, advert_int 1 s); ``fast`` is VRRP
v3 with 200 ms adverts and the second gratuitous-ARP burst after 1 s (vrrpVersion 3,
advertIntervalMs 200, garpMasterDelay 1), brought to the running cluster by the converge's
cluster-wide VRRP change. Removes the lab at the end.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import lab
from components.cli.drill import LabTarget
from components.config import PROJECT_ROOT as ROOT
from components.converge import drill
from components.converge.probe import VipProber
from components.converge.switchover import switchover
from components.lab import node_run
from components.lab import secrets as labsecrets

STACK = "sim"


def quiet(_: str) -> None:
    pass


def figures(xs: list[float]) -> str:
    if not xs:
        return "no successful run"
    ordered = sorted(xs)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"{statistics.median(ordered):>7.2f} {p90:>7.2f} {ordered[0]:>7.2f} {ordered[-1]:>7.2f}"
        f"   ({len(xs)} runs)"
    )


# The survivor's notify log (millisecond timestamps) splits a failover into its phases.
PHASES = (
    ("VRRP: fault -> MASTER notify call", "is MASTER"),
    ("fence: MASTER call -> fence done", "fence: done"),
    ("map: fence done -> mapped (krbd)", "mapped "),
    ("mount: mapped -> mounted", "mounted "),
)


def phases(stack: str, t: drill.Timed) -> list[float] | None:
    """Seconds of each phase of :data:`PHASES`, then mounted -> serving (SSH on the VIP as
    the sampler saw it); None when the log lacks a step."""
    log = node_run(stack, t.survivor, "cat /run/keepalivednotify/log", timeout=10).stdout
    marks: list[float] = []
    for line in log.splitlines():
        stamp, _, text = line.partition(" [")
        try:
            at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        if at >= t.injected and len(marks) < len(PHASES) and PHASES[len(marks)][1] in text:
            marks.append(at)
    if len(marks) < len(PHASES) or t.took is None:
        return None
    edges = [t.injected, *marks]
    return [b - a for a, b in itertools.pairwise(edges)] + [t.took - (marks[-1] - t.injected)]


PROFILES = {
    "default": {},
    "fast": {"vrrp_version": 3, "advert_interval_ms": 200, "garp_master_delay": 1},
}


def bench(plan: lab.Lab, profile: str, runs: int) -> None:
    s = dataclasses.replace(plan.settings, **PROFILES[profile])
    plan = dataclasses.replace(plan, settings=s)
    target = LabTarget(plan, labsecrets.load_or_create(s, STACK, ROOT), say=quiet)
    backup = min(n.priority for n in s.nodes)
    adv = s.advert_seconds
    floor = 3 * adv + (256 - backup) / 256 * adv
    table: dict[str, list[float]] = {}
    split: dict[str, list[list[float]]] = {}
    cases = (
        ("link down", "nic_down"),
        ("keepalived SIGKILL", "kill_keepalived"),
        ("VM powered off", "power_off"),
    )
    for label, fault in cases:
        for i in range(runs):
            t = drill.time_failover(target, fault)
            target.tidy((fault,), t.master)
            parts = phases(plan.stack, t)
            shown = "" if parts is None else " = " + " + ".join(f"{x:.2f}" for x in parts)
            print(
                f"[{profile}] {label} {i + 1}/{runs}: "
                f"{'-' if t.took is None else f'{t.took:.2f}s'}{shown} ({t.note})",
                flush=True,
            )
            if t.took is not None:
                table.setdefault(label, []).append(t.took)
            if parts is not None:
                split.setdefault(label, []).append(parts)
    assert target.prepare() is None, "no healthy cluster for the switchovers"
    moves: list[float] = []
    outages: list[float] = []
    for i in range(runs):
        pace = target.pace
        with VipProber(target.ssh, time.monotonic(), pace.probe, pace.probe_cap) as prober:
            time.sleep(0.5)
            out = switchover(s, target.access(), say=quiet)
            time.sleep(1.0)
        if out.error:
            print(f"[{profile}] switchover {i + 1}/{runs}: FAILED: {out.error}", flush=True)
            continue
        promoted = next(t for t, step in out.steps if "MASTER, holds" in step)
        moves.append(promoted)
        outages.append(prober.outage())
        print(
            f"[{profile}] switchover {i + 1}/{runs}: {out.old} -> {out.new}, peer ready "
            f"{promoted:.2f}s, total {out.total:.2f}s, ssh outage {outages[-1]:.2f}s",
            flush=True,
        )
    target.close()
    print(
        f"\nprofile {profile}: VRRP v{s.vrrp_version}, floor (3 x advert_int "
        f"{s.advert_int_text}s + skew of priority {backup}): {floor:.2f}s"
    )
    print(f"{'seconds':<50} {'median':>7} {'p90':>7} {'min':>7} {'max':>7}")
    for label, xs in table.items():
        print(f"{'failover, ' + label + ' -> survivor serves':<50} {figures(xs)}")
        names = [name for name, _ in PHASES] + ["serve: mounted -> SSH on the VIP answers"]
        for k, name in enumerate(names):
            print(f"{'  ' + name:<50} {figures([p[k] for p in split.get(label, [])])}")
    print(f"{'switchover, start -> peer MASTER+VIP+mount':<50} {figures(moves)}")
    label = f"switchover, ssh outage (probe every {target.pace.probe:g} s)"
    print(f"{label:<50} {figures(outages)}\n")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    which = sys.argv[2] if len(sys.argv) > 2 else "both"
    profiles = list(PROFILES) if which == "both" else [which]
    lab.lab_down(STACK, say=quiet)
    lab.lab_up(STACK, say=quiet)
    started = time.monotonic()
    try:
        plan = lab.load_lab(STACK)
        for profile in profiles:
            bench(plan, profile, runs)
        print(f"(bench took {time.monotonic() - started:.0f}s)")
    finally:
        lab.lab_down(STACK, say=quiet)


if __name__ == "__main__":
    main()
