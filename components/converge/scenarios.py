"""The drill's scenarios: data only. How a fault is injected is the Target's
(:mod:`components.converge.drill`); what must hold is :mod:`components.converge.invariants`."""

from __future__ import annotations

from dataclasses import dataclass

from components.bundle.build import RELEASE_TIMING

# How long the old master of ``old-master-returns`` stays cut off from the fault on: past its
# mapping's OSD timeout (its write in flight fails then, and its file system shuts down), so
# it returns having released through the storage's silence (or still trying: the notify
# script's background retry, or its next BACKUP call, then finishes).
RETURN_AFTER = RELEASE_TIMING.osd_request_timeout + 10.0
# A brief stun: longer than the takeover's detection (3 adverts), shorter than a promotion.
STUN_BRIEF = 6.0
# Past Ceph's default blocklist lifetime as the lab's monitor has it (60 s, where a real one
# has an hour: components/lab/ceph.py): a fence that relied on the default would have expired
# when the long-stunned master wakes up.
LAB_BLOCKLIST_DEFAULT = 60
STUN_LONG = LAB_BLOCKLIST_DEFAULT + 30.0


@dataclass(frozen=True)
class Scenario:
    """A fault and how the cluster must answer it. ``flow``: failover (the survivor takes
    over), holder (same, with a file held open on the volume), return (failover, then the old
    master comes back), flap (NIC flaps), restart (keepalived restarted on every node), heal
    (failover while the old master may still run, then ``heal`` undoes the fault: the Ceph
    fence alone keeps the old master from writing), foreign (a failover while a client that
    is not a node has the image open: it is never fenced), refuse (the image loses its
    exclusive-lock feature while no node maps it: no node may mount, until ``heal``)."""

    key: str
    title: str
    faults: tuple[str, ...]
    flow: str = "failover"
    known_break: str | None = None
    heal: str | None = None
    outlast: float | None = None
    """Seconds the fault lasts before ``heal`` (default: just past the takeover)."""
    keeps: bool = False
    """After ``heal`` the survivor keeps the VIP and the mount: the old master wakes up still
    MASTER, and yields to the survivor's rank (S6, as ``return``)."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("master-nic-down", "master NIC down", ("nic_down",)),
    Scenario("master-sshd-killed", "sshd killed on the master (kill -9)", ("kill_sshd",)),
    Scenario("master-keepalived-stop", "keepalived stopped on the master", ("stop_keepalived",)),
    Scenario(
        "master-keepalived-sigkill", "keepalived SIGKILLed on the master", ("kill_keepalived",)
    ),
    Scenario(
        "master-crash",
        "the master's VM powered off (its plug pulled), its lock left behind",
        ("power_off",),
    ),
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
        keeps=True,
    ),
    Scenario(
        "master-link-lost",
        "the master's VM loses its network link (a cable pulled), then back",
        ("link_down",),
        "heal",
        heal="link_up",
    ),
    Scenario(
        "master-stunned-briefly",
        f"the master's whole VM stunned for {STUN_BRIEF:.0f} s, then resumed",
        ("stun",),
        "heal",
        heal="resume",
        outlast=STUN_BRIEF,
    ),
    Scenario(
        "master-stunned-long",
        f"the master's whole VM stunned {STUN_LONG:.0f} s, past Ceph's default blocklist "
        f"lifetime ({LAB_BLOCKLIST_DEFAULT} s on the lab's monitor), then resumed",
        ("stun",),
        "heal",
        heal="resume",
        outlast=STUN_LONG,
        keeps=True,
    ),
    Scenario(
        "foreign-watcher",
        "a client that is not a node has the image open while the master fails over",
        ("stop_keepalived",),
        "foreign",
    ),
    Scenario(
        "no-exclusive-lock",
        "the image loses its exclusive-lock feature: no node mounts it until it is back",
        ("no_exclusive_lock",),
        "refuse",
        heal="exclusive_lock",
    ),
)
BY_KEY = {s.key: s for s in SCENARIOS}
