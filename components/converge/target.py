"""What a drill needs of a stack (:class:`Target`), and how hard it may look at it (:class:`Pace`).

The drill (:mod:`components.converge.drill`) is stack-neutral; a target knows how to break
and look at one stack's nodes (the lab's: components/cli/drill.py's LabTarget over
components/lab/faults.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from components.converge.probe import Look, VipSsh


@dataclass(frozen=True)
class Pace:
    """How hard a drill looks at a target, and how long it waits. The defaults suit real
    nodes; an emulated lab VM pays about a second and a half of CPU for every SSH login and a
    third of one for a look, so its target asks less often and waits longer."""

    sample: float = 0.12
    """Seconds between the sampler's looks at every node."""
    probe: float = 0.1
    """Seconds between new SSH probes of the VIP (at most ``probe_cap`` in flight)."""
    probe_cap: int = 4
    write: float = 0.05
    """Seconds between the writer's records."""
    recovery: float = 45.0
    """Seconds a scenario may take to settle after its fault (or its heal)."""


class Target(Protocol):
    """What a drill needs from a stack: fresh healthy cluster, looks, faults, the VIP."""

    ssh: VipSsh
    mount_point: str
    advert_interval: float
    pace: Pace

    def prepare(self) -> str | None:
        """A freshly converged healthy cluster; None, or why not."""

    def look(self) -> Look:
        """One look at every node (parallel)."""

    def inject(self, fault: str, node: str) -> None:
        """Apply ``fault`` (nic_down, nic_up, kill_sshd, ... see :data:`SCENARIOS`) to ``node``."""

    def hold_open(self, node: str, path: str) -> int:
        """Start a process on ``node`` holding ``path`` open; its pid."""

    def keep_writing(self, node: str, path: str) -> int:
        """Start a process on ``node`` writing ``path`` (fsync'd) without pause; its pid."""

    def alive(self, node: str, pid: int) -> bool:
        """Whether ``pid`` still runs on ``node``."""

    def restart_all(self) -> None:
        """Restart keepalived on every node at the same moment."""

    def foreign_watch(self) -> str:
        """Open the image from a client that is not a node (as rbd-mirror, a backup tool or
        an admin's ``rbd watch`` would); its instance (ADDR:PORT/NONCE)."""

    def foreign_unwatch(self) -> None:
        """Close that client."""

    def fenced(self) -> set[str] | None:
        """The OSD blocklist's entries; None when Ceph did not answer."""

    def notify_log(self, node: str) -> str:
        """The node's notify script log."""

    def tidy(self, faults: tuple[str, ...], node: str) -> None:
        """Undo ``faults`` on ``node`` (its NIC up, sshd or keepalived back, its VM powered on
        or resumed...), so the next scenario finds a healthy cluster without a reset."""
