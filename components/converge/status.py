"""What each node says about the cluster, and what Ceph says of it. One round trip per node.

VRRP state source: the journal keepalived's notify script keeps
(``/run/keepalivednotify/states``, one ``STATE PID`` line per notify call, newest last; see
node/scripts/keepalivednotify.sh.j2). keepalived calls the script on every transition, with the
same arguments on 1.3.5 (el7) and 2.x, so its newest line is keepalived's own latest state.
It is read together with ``systemctl is-active keepalived``: keepalived 1.3.5 does not report
STOP when it exits, so a stopped keepalived is ``STOPPED`` whatever the journal says.
The mapping and the mount come from the kernel's own records (``/sys/bus/rbd/devices``, the
mount table), never from a symlink or a read of the device (which hangs when Ceph is gone).

Ceph's view (the image's watchers and lock, the OSD blocklist, the cluster's health) is the
same from every node: it is asked once, from one node with its own key (:func:`ceph_command`),
and each node's part is read from that one answer (:func:`ceph_views`).
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fabric import Connection

import components.converge.facts as facts
from components.bundle import PATHS
from components.config import Settings

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
    clients: tuple[str, ...] = ()
    """The client instances (ADDR:PORT/NONCE) of this node's mappings of the image: only the
    MASTER maps it."""
    rank: int | None = None
    """The priority this MASTER advertises above its own (the notify script's rank: it fenced
    a peer that may still advertise more than this node's priority); None: its own."""

    @property
    def summary(self) -> str:
        """``MASTER, VIP yes, mounted yes`` (and the error, if any): what the node reports."""
        said = f"{self.vrrp_state}, VIP {'yes' if self.holds_vip else 'no'}, "
        said += f"mounted {'yes' if self.mounted else 'no'}"
        said += f", rank {self.rank}" if self.rank is not None else ""
        return said + (f" ({self.error})" if self.error else "")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for optional in ("error", "ceph", "fenced", "rank"):
            if d[optional] is None:
                del d[optional]
        d["clients"] = list(self.clients)
        return d


@dataclass(frozen=True)
class CephView:
    """Ceph's view of one node (and of the cluster), read from one answer. A field is None
    when Ceph could not be asked."""

    client: bool | None
    """Ceph lists a client of this node with the image open: its mapping is live."""
    holds_lock: bool | None
    """This node's client holds the image's exclusive lock (the MASTER's)."""
    blocklisted: int | None
    """Blocklist entries of this node's address: its fenced client instances."""
    health: str | None
    foreign_lock: str | None = None
    """``client.N at ADDR`` when a client that is not one of the nodes holds the image's lock:
    the nodes refuse to break it, and none mounts."""
    entries: int | None = None
    """The cluster's blocklist entries, all of them."""
    short_entries: tuple[str, ...] = field(default=())
    """Entries of the nodes' instances that expire within a year (Ceph's one-hour default, an
    entry someone else added first): that instance could write again once it expires."""


def ceph_command(s: Settings) -> str:
    """Ask Ceph, as a node's client, for the image's watchers and lock, the blocklist and the
    cluster's health, the four at once and each bounded (an unreachable Ceph must not stall
    a status)."""
    image = shlex.quote(f"{s.rbd_pool}/{s.rbd_image}")
    rbd = f"timeout 60 rbd --id {shlex.quote(s.ceph_user)}"
    ceph = f"timeout 60 ceph --id {shlex.quote(s.ceph_user)} --connect-timeout 30"
    queries = (
        f"{rbd} status {image}",
        f"{rbd} lock ls {image}",
        f"{ceph} osd blocklist ls",
        f"{ceph} health",
    )
    jobs = " ".join(
        f'({q} >"$d/{i}" 2>/dev/null || echo ceph-failed >"$d/{i}") &'
        for i, q in enumerate(queries)
    )
    show = "; ".join(f'echo {_SEP}; cat "$d/{i}"' for i in range(len(queries)))
    return f'd=$(mktemp -d) && {{ {jobs} wait; {show}; rm -rf "$d"; }}'


def watcher_addresses(rbd_status: str) -> list[str]:
    """The client addresses (ADDR:PORT/NONCE) in what ``rbd status`` prints."""
    return [w.split("=", 1)[1] for w in rbd_status.split() if w.startswith("watcher=")]


def _expiry(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("+0000", "+00:00"))
    except ValueError:
        return None


def ceph_views(
    node_ips: Sequence[str],
    answer: str,
    now: dt.datetime | None = None,
) -> dict[str, CephView]:
    """Each node's CephView (by IP) from one :func:`ceph_command` answer."""
    watchers, locks, blocklist, health = [*answer.split(_SEP), "", "", "", ""][1:5]
    now = now or dt.datetime.now(dt.UTC)

    def failed(text: str) -> bool:
        return "ceph-failed" in text

    def ip_of(addr: str) -> str:
        return addr.split(":", 1)[0]

    addrs = watcher_addresses(watchers)
    owners = [
        (ln.split()[0], ln.split()[-1]) for ln in locks.splitlines() if ln.startswith("client.")
    ]
    entries = [ln.split() for ln in blocklist.splitlines() if ln.strip()]
    entries = [e for e in entries if ":" in e[0]]
    foreign = [f"{who} at {addr}" for who, addr in owners if ip_of(addr) not in node_ips]
    year = dt.timedelta(days=365)
    short = tuple(
        e[0]
        for e in entries
        if ip_of(e[0]) in node_ips
        and len(e) > 1
        and (exp := _expiry(e[1])) is not None
        and exp - now < year
    )
    views = {}
    for ip in node_ips:
        views[ip] = CephView(
            client=None if failed(watchers) else any(ip_of(a) == ip for a in addrs),
            holds_lock=None if failed(locks) else any(ip_of(a) == ip for _, a in owners),
            blocklisted=None if failed(blocklist) else sum(ip_of(e[0]) == ip for e in entries),
            health=None if failed(health) else " ".join(health.split()) or None,
            foreign_lock=None if failed(locks) else ("; ".join(foreign) or None),
            entries=None if failed(blocklist) else len(entries),
            short_entries=() if failed(blocklist) else short,
        )
    return views


def status_command(s: Settings) -> str:
    """The node's own view: keepalived, the newest notify state, its mappings of the image
    (sysfs: device and client instance), the addresses of the VRRP interface, the mounts."""
    pool, image = shlex.quote(s.rbd_pool), shlex.quote(s.rbd_image)
    maps = (
        "for d in /sys/bus/rbd/devices/*; do "
        f'[ "$(cat "$d/pool" 2>/dev/null)" = {pool} ] && '
        f'[ "$(cat "$d/name" 2>/dev/null)" = {image} ] && '
        'echo "map=/dev/rbd${d##*/} $(cat "$d/client_addr" 2>/dev/null)"; done'
    )
    return (
        f'echo "active=$(systemctl is-active {PATHS.keepalived_unit} 2>/dev/null)"; '
        f'echo "journal=$(tail -n 1 {STATE_JOURNAL} 2>/dev/null)"; '
        f'echo "rank=$(cat {PATHS.rank} 2>/dev/null)"; {maps}; echo {_SEP}; '
        f"ip -o addr show dev {shlex.quote(s.interface)} 2>/dev/null; echo {_SEP}; "
        "cat /proc/self/mounts"
    )


def parse_status(name: str, ip: str, vip: str, mount_point: str, stdout: str) -> NodeStatus:
    head, addrs, mounts = [*stdout.split(_SEP), "", ""][:3]
    fields = dict(ln.partition("=")[::2] for ln in head.splitlines() if "=" in ln)
    active = fields.get("active", "").strip()
    journal = (fields.get("journal", "").split() or [""])[0]
    maps = [ln[4:].split() for ln in head.splitlines() if ln.startswith("map=")]
    devices = {m[0] for m in maps if m}
    clients = tuple(m[1] for m in maps if len(m) > 1)
    state = "STOPPED" if active != "active" else journal or "UNKNOWN"
    rank = fields.get("rank", "").strip()
    return NodeStatus(
        name=name,
        ip=ip,
        vrrp_state=state,
        holds_vip=facts.parse_holds_vip(addrs, vip),
        mounted=facts.parse_mounted(mounts, mount_point, devices),
        clients=clients,
        rank=int(rank) if rank.isdigit() else None,
    )


def node_status(c: Connection, s: Settings, name: str) -> NodeStatus:
    """The node behind ``c``, as it sees itself (one round trip, no Ceph command)."""
    r = c.run(status_command(s), hide=True, warn=True, in_stream=False, timeout=60)
    return parse_status(name, str(c.host), str(s.vip.ip), s.mount_point, r.stdout)


def ask_ceph(c: Connection, s: Settings) -> str:
    """Ceph's answer to :func:`ceph_command`, asked from the node behind ``c``."""
    r = c.run(ceph_command(s), hide=True, warn=True, in_stream=False, timeout=120)
    return r.stdout


def serving(st: NodeStatus) -> bool:
    """The node takes its part: MASTER with the VIP and the volume mounted, or BACKUP with
    neither and no mapping of the image."""
    if st.vrrp_state == "MASTER":
        return st.holds_vip and st.mounted
    return st.vrrp_state == "BACKUP" and not (st.holds_vip or st.mounted or st.clients)


def cluster_problems(statuses: list[NodeStatus]) -> list[str]:
    """Empty when exactly one node is MASTER, holds the VIP and has the volume mounted, and
    every other node is BACKUP with neither, and no mapping; with Ceph's view, also when the
    MASTER's client is live and no foreign client holds the image's lock."""
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
        f"{s.name} maps the image but is not MASTER ({', '.join(s.clients)}): its release "
        "has not finished"
        for s in statuses
        if s.clients and s.name not in masters
    ]
    problems += [
        f"Ceph lists no client of the MASTER {s.name} on the image: it was fenced, or its "
        "mapping died; it leaves MASTER by its volume check"
        for s in statuses
        if s.name in masters and s.ceph is not None and s.ceph.client is False
    ]
    foreign = {s.ceph.foreign_lock for s in statuses if s.ceph and s.ceph.foreign_lock}
    problems += [
        f"{who} holds the image's lock and is not one of the nodes: no node breaks it, none "
        "mounts (release it on that client, or remove it: `rbd lock rm`)"
        for who in sorted(foreign)
    ]
    return problems
