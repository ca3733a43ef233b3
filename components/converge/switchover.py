"""Planned switchover: move the MASTER role to the other node, volume released first.

Why: maintenance on the MASTER (a kernel update, a reboot) must not be a failover. With
``state BACKUP`` + ``nopreempt`` keepalived offers no "move the role" command; the least
unavailability it allows is: release the volume on the MASTER (what the keepalived drop-in's
``ExecStop`` does: kill the holders, unmount, while the VIP is still there, so the peer cannot
mount beside it), stop keepalived there (priority 0 advert: the peer takes over at once, not
after 3 missed adverts), wait until the peer is MASTER with the VIP and the volume, then start
keepalived on the old MASTER again: it comes back BACKUP (nopreempt). The release is run
explicitly before the stop, so the order holds even where the service manager runs no
``ExecStop`` (the embedded lab's systemctl stand-in); under systemd the drop-in's release then
finds nothing mounted. Refused unless the cluster is healthy and the peer a healthy BACKUP.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fabric import Connection

import components.converge.fleet as fleet
import components.converge.ssh as sshconn
import components.converge.status as status
from components.bundle import PATHS
from components.config import Settings
from components.converge.ssh import Access


class SwitchoverError(RuntimeError):
    """The switchover was refused or could not finish; the message says where it stopped."""


@dataclass
class Switchover:
    """What a switchover did: old and new MASTER, each step with its time since the start."""

    old: str = ""
    new: str = ""
    steps: list[tuple[float, str]] = field(default_factory=list)
    total: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_master": self.old,
            "new_master": self.new,
            "steps": [{"t_s": round(t, 2), "step": s} for t, s in self.steps],
            "total_s": round(self.total, 2),
            "error": self.error,
        }


def plan(statuses: list[status.NodeStatus]) -> tuple[str, str]:
    """(current MASTER, the BACKUP to promote); SwitchoverError unless the cluster is healthy
    and that BACKUP is reachable, BACKUP, without VIP and mount."""
    problems = status.cluster_problems(statuses)
    if problems:
        raise SwitchoverError(f"refused: the cluster is not healthy: {'; '.join(problems)}")
    master = next(s for s in statuses if s.vrrp_state == "MASTER")
    peers = [s for s in statuses if s.name != master.name]
    healthy = [p for p in peers if p.vrrp_state == "BACKUP" and not (p.holds_vip or p.mounted)]
    if not healthy:
        seen = ", ".join(f"{p.name} {p.vrrp_state}" for p in peers) or "no peer"
        raise SwitchoverError(f"refused: no healthy BACKUP to take over ({seen})")
    return master.name, healthy[0].name


def _wait(what: str, probe: Callable[[], bool], timeout: float, period: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SwitchoverError(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(period)


def switchover(
    s: Settings, access: Access, *, say: Callable[[str], None] = print, timeout: float = 60
) -> Switchover:
    """Move the MASTER role to the peer (see module doc); the result says what it did. Never
    raises for a refusal or a failed step: ``error`` says which."""
    out = Switchover()
    t0 = time.monotonic()

    def step(text: str) -> None:
        out.steps.append((time.monotonic() - t0, text))
        say(f"switchover: {out.steps[-1][0]:6.2f}s {text}")

    try:
        out.old, out.new = plan(fleet.cluster_status(s, access))
        conns: dict[str, Connection] = {}
        for name in (out.old, out.new):
            node = s.node(name)
            conns[name] = sshconn.connect(access.target(name, str(node.ip), strict=True), say)
        try:
            _move(s, conns, out, step, timeout)
        finally:
            for c in conns.values():
                c.close()
    except (SwitchoverError, OSError, sshconn.HostKeyError) as e:
        out.error = str(e)
    except Exception as e:  # paramiko, invoke: the step's error, reported, not a traceback
        out.error = f"{type(e).__name__}: {e}"
    out.total = time.monotonic() - t0
    return out


def _move(
    s: Settings,
    conns: dict[str, Connection],
    out: Switchover,
    step: Callable[[str], None],
    timeout: float,
) -> None:
    old, new = conns[out.old], conns[out.new]

    def state(c: Connection, name: str) -> status.NodeStatus:
        return status.node_status(c, s, name)

    release = f"{shlex.quote(PATHS.notify_script)} INSTANCE {shlex.quote(s.vrrp_instance)} STOP"
    step(f"{out.old}: releasing the volume (the drop-in's ExecStop: {release})")
    r = old.run(release, hide=True, warn=True, in_stream=False, timeout=120)
    if r.exited != 0 or state(old, out.old).mounted:
        raise SwitchoverError(
            f"{out.old}: the release failed (exit {r.exited}); the volume may still be mounted "
            "there and keepalived was left running: nothing moved"
        )
    step(f"{out.old}: volume released; stopping keepalived")
    old.run(f"systemctl stop {PATHS.keepalived_unit}", hide=True, in_stream=False, timeout=120)
    step(f"{out.old}: keepalived stopped; waiting for {out.new} to be MASTER with VIP and mount")

    def promoted() -> bool:
        st = state(new, out.new)
        return st.vrrp_state == "MASTER" and st.holds_vip and st.mounted

    _wait(f"{out.new} is MASTER with the VIP and the volume", promoted, timeout)
    step(f"{out.new}: MASTER, holds the VIP and the volume")
    old.run(f"systemctl start {PATHS.keepalived_unit}", hide=True, in_stream=False, timeout=120)
    step(f"{out.old}: keepalived started; waiting for it to be BACKUP")

    def backup() -> bool:
        st = state(old, out.old)
        return st.vrrp_state == "BACKUP" and not (st.holds_vip or st.mounted)

    _wait(f"{out.old} is BACKUP (nopreempt)", backup, 3 * s.advert_seconds + timeout)
    if not promoted():
        raise SwitchoverError(f"{out.new} lost the MASTER role when {out.old} came back")
    step(f"{out.old}: BACKUP; {out.new} still MASTER with VIP and volume")
