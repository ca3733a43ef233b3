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
    ceph: CephView | None = None
    """What Ceph says of this node's client (``fab status``, the converge); None: not asked."""
    fenced: bool | None = None
    """The client under this node's mount is blocklisted (a drill's look): the mount cannot
    write. None: not known."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for optional in ("error", "ceph", "fenced"):
            if d[optional] is None:
                del d[optional]
        return d


@dataclass(frozen=True)
class CephView:
    """Ceph's view of one node, asked with the node's own Ceph client (``cephUser``). A field
    is None when Ceph could not be asked."""

    client: bool | None
    """A client of this node (its address) has the image open: its mapping is live."""
    holds_lock: bool | None
    """This node's client holds the image's exclusive lock (the MASTER's, once it wrote)."""
    blocklisted: int | None
    """Blocklist entries of this node's address: its fenced clients (they expire in 1 h)."""
    health: str | None


def ceph_command(s: Settings) -> str:
    """Ask Ceph, as the node's client, for the image's watchers and lock, the blocklist and the
    cluster's health; each bounded (an unreachable Ceph must not stall a status)."""
    image = shlex.quote(f"{s.rbd_pool}/{s.rbd_image}")
    rbd = f"timeout 10 rbd --id {shlex.quote(s.ceph_user)}"
    ceph = f"timeout 15 ceph --id {shlex.quote(s.ceph_user)} --connect-timeout 10"
    return "; ".join(
        (
            f"echo {_SEP}; {rbd} status {image} 2>/dev/null || echo ceph-failed",
            f"echo {_SEP}; {rbd} lock ls {image} 2>/dev/null || echo ceph-failed",
            f"echo {_SEP}; {ceph} osd blocklist ls 2>/dev/null || echo ceph-failed",
            f"echo {_SEP}; {ceph} health 2>/dev/null || echo ceph-failed",
        )
    )


def watcher_addresses(rbd_status: str) -> list[str]:
    """The client addresses (ADDR:PORT/NONCE) in what ``rbd status`` prints."""
    return [w.split("=", 1)[1] for w in rbd_status.split() if w.startswith("watcher=")]


def parse_ceph(ip: str, watchers: str, locks: str, blocklist: str, health: str) -> CephView:
    def failed(text: str) -> bool:
        return "ceph-failed" in text

    def ours(addr: str) -> bool:
        return addr.split(":", 1)[0] == ip

    addrs = watcher_addresses(watchers)
    owners = [ln.split()[-1] for ln in locks.splitlines() if ln.startswith("client.")]
    entries = [ln.split()[0] for ln in blocklist.splitlines() if ln.strip()]
    return CephView(
        client=None if failed(watchers) else any(ours(a) for a in addrs),
        holds_lock=None if failed(locks) else any(ours(a) for a in owners),
        blocklisted=None if failed(blocklist) else sum(ours(e) for e in entries),
        health=None if failed(health) else " ".join(health.split()) or None,
    )


def status_command(interface: str, device: str) -> str:
    """``device``: the mapped image's symlink (PATHS.rbd_device): resolved, never read (a node
    cut off from Ceph hangs on any read of it)."""
    return (
        f'echo "active=$(systemctl is-active {PATHS.keepalived_unit} 2>/dev/null)"; '
        f'echo "volume=$(readlink -e {shlex.quote(device)})"; '
        f'echo "journal=$(tail -n 1 {STATE_JOURNAL} 2>/dev/null)"; echo {_SEP}; '
        f"ip -o addr show dev {shlex.quote(interface)} 2>/dev/null; echo {_SEP}; "
        "cat /proc/self/mounts"
    )


def parse_status(name: str, ip: str, vip: str, mount_point: str, stdout: str) -> NodeStatus:
    head, addrs, mounts, *ceph = [*stdout.split(_SEP), "", ""]
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
        ceph=parse_ceph(ip, *ceph[:4]) if len(ceph) >= 4 else None,
    )


def node_status(c: Connection, s: Settings, name: str) -> NodeStatus:
    """The status of the node behind ``c`` (one round trip), with Ceph's view of it."""
    command = status_command(s.interface, PATHS.rbd_device(s.rbd_pool, s.rbd_image))
    command += "; " + ceph_command(s)
    r = c.run(command, hide=True, warn=True, in_stream=False, timeout=60)
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
    problems += [
        f"Ceph lists no client of {s.name} on the image (fenced, or not mapped): it maps "
        "afresh on its next notify call (through FAULT)"
        for s in statuses
        if s.ceph is not None and s.ceph.client is False
    ]
    return problems
