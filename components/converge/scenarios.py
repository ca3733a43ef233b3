"""The drill's scenarios: data only. How a fault is injected is the Target's
(:mod:`components.converge.drill`); what must hold is :mod:`components.converge.invariants`."""

from __future__ import annotations

from dataclasses import dataclass

from components.bundle.build import RELEASE_TIMING

# How long the old master of ``old-master-returns`` stays cut off from the fault on: longer
# than its release's tries (about 2 s each), so it returns with a release that gave up, which
# the notify script's background retry (or its next BACKUP call) then finishes.
RETURN_AFTER = RELEASE_TIMING.umount_tries * 2.0 + 5.0


@dataclass(frozen=True)
class Scenario:
    """A fault and how the cluster must answer it. ``flow``: failover (the survivor takes
    over), holder (same, with a file held open on the volume), return (failover, then the old
    master comes back), flap (NIC flaps), restart (keepalived restarted on every node), heal
    (failover while the old master may still run, then ``heal`` undoes the fault: the Ceph
    fence alone keeps the old master from writing)."""

    key: str
    title: str
    faults: tuple[str, ...]
    flow: str = "failover"
    known_break: str | None = None
    heal: str | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("master-nic-down", "master NIC down", ("nic_down",)),
    Scenario("master-sshd-killed", "sshd killed on the master (kill -9)", ("kill_sshd",)),
    Scenario("master-keepalived-stop", "keepalived stopped on the master", ("stop_keepalived",)),
    Scenario(
        "master-keepalived-sigkill", "keepalived SIGKILLed on the master", ("kill_keepalived",)
    ),
    Scenario("master-crash", "master node crash, its lock left behind", ("crash",)),
    Scenario("old-master-returns", "old master returns as BACKUP", ("nic_down",), "return"),
    # Demoted while it still reaches Ceph (its sshd check fails): the holders can be killed
    # and the unmount must succeed. Cut off from Ceph instead (NIC down), a write in flight
    # cannot be killed and the unmount waits for the storage: the fence covers that case
    # (master-nic-down, old-master-returns).
    Scenario(
        "open-file-on-demotion",
        "file held open on the volume when the master is demoted (its sshd dies)",
        ("kill_sshd",),
        "holder",
    ),
    Scenario("master-nic-flaps", "master NIC flaps 5 times in 10 s", ("nic_flap",), "flap"),
    Scenario("keepalived-restart-both", "keepalived restarted on both", ("restart",), "restart"),
    Scenario(
        "partition", "VRRP partition both ways, then healed", ("partition",), "heal", heal="heal"
    ),
    Scenario(
        "partition-one-way",
        "the master's adverts lost (one-way partition), then healed",
        ("partition_oneway",),
        "heal",
        heal="heal",
    ),
    Scenario(
        "hung-master",
        "the master's keepalived frozen past the takeover, then thawed",
        ("freeze_keepalived",),
        "heal",
        heal="thaw_keepalived",
    ),
)
BY_KEY = {s.key: s for s in SCENARIOS}
