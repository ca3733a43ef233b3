"""What each node says about the cluster: VRRP state, VIP, mount. One round trip per node.

VRRP state source: the journal keepalived's notify script keeps
(``/run/keepalivednotify/states``, one ``STATE PID`` line per notify call, newest last; see
scripts/node/keepalivednotify.sh.j2). keepalived calls the script on every transition, with the
same arguments on 1.3.5 (el7) and 2.x, so its newest line is keepalived's own latest state.
It is read together with ``systemctl is-active keepalived``: keepalived 1.3.5 does not report
STOP when it exits, so a stopped keepalived is ``STOPPED`` whatever the journal says.
The other keepalived-native source, the SIGUSR1 dump (/tmp/keepalived.data), was not chosen:
it is written asynchronously (a reader must wait for the rewrite), needs the daemon's pid, and
its path depends on the build and on PrivateTmp.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any

from fabric import Connection

from components.bundle import PATHS
from components.config import Settings
from components.converge import facts

STATE_JOURNAL = PATHS.notify_journal
_SEP = "--repo-cluster--"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    vrrp_state: str
    """MASTER, BACKUP, FAULT, STOP (keepalived's words), STOPPED, UNKNOWN or UNREACHABLE."""
    holds_vip: bool
    mounted: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["error"] is None:
            del d["error"]
        return d


def status_command(interface: str, label: str) -> str:
    return (
        f'echo "active=$(systemctl is-active {PATHS.keepalived_unit} 2>/dev/null)"; '
        'echo "volume=$(blkid -c /dev/null -o device -t '
        f'{shlex.quote("LABEL=" + label)} 2>/dev/null | tr "\\n" " ")"; '
        f'echo "journal=$(tail -n 1 {STATE_JOURNAL} 2>/dev/null)"; echo {_SEP}; '
        f"ip -o addr show dev {shlex.quote(interface)} 2>/dev/null; echo {_SEP}; "
        "cat /proc/self/mounts"
    )


def parse_status(name: str, ip: str, vip: str, mount_point: str, stdout: str) -> NodeStatus:
    head, addrs, mounts = [*stdout.split(_SEP), "", ""][:3]
    fields = dict(ln.partition("=")[::2] for ln in head.splitlines() if "=" in ln)
    active = fields.get("active", "").strip()
    journal = (fields.get("journal", "").split() or [""])[0]
    devices = set(fields.get("volume", "").split())
    state = "STOPPED" if active != "active" else journal or "UNKNOWN"
    return NodeStatus(
        name=name,
        ip=ip,
        vrrp_state=state,
        holds_vip=facts.parse_holds_vip(addrs, vip),
        mounted=facts.parse_mounted(mounts, mount_point, devices),
    )


def node_status(c: Connection, s: Settings, name: str) -> NodeStatus:
    """The status of the node behind ``c`` (one round trip)."""
    command = status_command(s.interface, s.xfs_label)
    r = c.run(command, hide=True, warn=True, in_stream=False, timeout=30)
    return parse_status(name, str(c.host), str(s.vip.ip), s.mount_point, r.stdout)


def cluster_problems(statuses: list[NodeStatus]) -> list[str]:
    """Empty when exactly one node is MASTER, holds the VIP and has the volume mounted, and
    every other node is BACKUP with neither."""
    masters = [s.name for s in statuses if s.vrrp_state == "MASTER"]
    holders = [s.name for s in statuses if s.holds_vip]
    mounted = [s.name for s in statuses if s.mounted]
    problems = []
    if len(masters) != 1:
        problems.append(f"{len(masters)} MASTER nodes ({', '.join(masters) or 'none'}), want 1")
    if len(holders) != 1 or holders != masters:
        problems.append(f"VIP held by {', '.join(holders) or 'no node'}")
    if len(mounted) != 1 or mounted != masters:
        problems.append(f"volume mounted on {', '.join(mounted) or 'no node'}")
    others = [s for s in statuses if s.name not in masters and s.vrrp_state != "BACKUP"]
    problems += [f"{s.name} is {s.vrrp_state}, want BACKUP" for s in others if masters]
    return problems
