"""Mixed versions in one cluster: what breaks a failover between an older node and a newer one.

A rolling upgrade (a new template, one node at a time) runs, for a while, an old node beside a
new one. Two differences between them break a failover without any error at deploy time:

- **VRRP version 3 over unicast.** keepalived before 1.3.6 (EL7 ships 1.3.5) computes a
  unicast VRRPv3 advert's checksum over the multicast address (keepalived issue #642); 1.3.6
  and later use the peer's address. Each side drops the other's adverts as corrupt and both
  become MASTER. VRRP version 2, or multicast, is the same on both.
- **XFS features an older kernel cannot mount.** A newer ``mkfs.xfs`` turns on features (reflink,
  reverse mapping, big timestamps, inode btree counters, large extent counters) an older
  kernel refuses to mount read-write: the older node fails at its takeover, the moment it is
  needed. The table holds the mainline kernel that first mounts each; EL7's 3.10 lacks all of
  them whatever its backports, so only features it lacks are listed (never crc, finobt or
  sparse inodes, which it has).

:func:`problems` is the decision (pure); :func:`node_versions` and :func:`xfs_features` the
probes (one round trip each, read-only); :func:`problems_of` asks the nodes. The cluster
check, ``fab converge`` and ``fab status`` report them; a node's first keepalived start is
refused on them (components/converge/fleet.py: refuse_mixed), so a rolling upgrade stops at
the first new node that could not fail over with the others.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import paramiko
from fabric import Connection

import components.converge.ssh as sshconn
from components.config import Settings
from components.converge.ssh import Access
from components.converge.status import NodeStatus

UNICAST_V3_CHECKSUM_FIX = (1, 3, 6)
"""The first keepalived whose unicast VRRPv3 checksum covers the peer's address."""

XFS_FEATURE_KERNEL: dict[str, tuple[int, int]] = {
    "rmapbt": (4, 8),
    "reflink": (4, 9),
    "bigtime": (5, 10),
    "inobtcount": (5, 10),
    "nrext64": (5, 19),
}
"""XFS feature -> the first mainline kernel that mounts it read-write."""

VERSIONS_COMMAND = "keepalived --version 2>&1 | head -n 1; uname -r"


@dataclass(frozen=True)
class Versions:
    """What a node runs: keepalived (None: not installed) and its kernel release."""

    keepalived: tuple[int, ...] | None
    kernel: str

    @property
    def kernel_version(self) -> tuple[int, ...]:
        m = re.match(r"(\d+)\.(\d+)", self.kernel)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _dotted(v: tuple[int, ...] | None) -> str:
    return ".".join(map(str, v)) if v else "none"


def parse_versions(stdout: str) -> Versions:
    """``Keepalived v1.3.5 (03/19,2017)...`` and ``3.10.0-1160.el7.x86_64``, one per line."""
    lines = [*stdout.splitlines(), "", ""]
    m = re.search(r"Keepalived v(\d+)\.(\d+)\.(\d+)", lines[0])
    keepalived = tuple(int(g) for g in m.groups()) if m else None
    kernel = (lines[1] if m else next((ln for ln in lines[1:] if ln.strip()), "")).strip()
    return Versions(keepalived, kernel)


def parse_xfs_info(stdout: str) -> frozenset[str]:
    """The features of :data:`XFS_FEATURE_KERNEL` that ``xfs_info`` shows turned on."""
    on = {m.group(1) for m in re.finditer(r"\b([a-z0-9]+)=1\b", stdout)}
    return frozenset(on & XFS_FEATURE_KERNEL.keys())


def node_versions(c: Connection) -> Versions:
    r = c.run(VERSIONS_COMMAND, hide=True, warn=True, in_stream=False, timeout=60)
    return parse_versions(r.stdout)


def xfs_features(c: Connection, mount_point: str) -> frozenset[str] | None:
    """The volume's features, read where it is mounted; None when ``xfs_info`` failed."""
    r = c.run(
        f"xfs_info {shlex.quote(mount_point)}", hide=True, warn=True, in_stream=False, timeout=60
    )
    return parse_xfs_info(r.stdout) if r.ok else None


def problems(
    s: Settings, versions: Mapping[str, Versions], xfs: frozenset[str] | None
) -> list[str]:
    """What breaks a failover between these nodes (``versions`` by node name; ``xfs``: the
    volume's features, None: not known); empty when nothing does."""
    found = []
    if s.vrrp_version == 3 and s.unicast:
        known = {n: v.keepalived for n, v in versions.items() if v.keepalived}
        old = sorted(n for n, v in known.items() if v < UNICAST_V3_CHECKSUM_FIX)
        new = sorted(n for n, v in known.items() if v >= UNICAST_V3_CHECKSUM_FIX)
        if old and new:
            seen = ", ".join(f"{n} keepalived {_dotted(known[n])}" for n in old + new)
            found.append(
                f"repo-cluster:vrrpVersion: {seen}: with VRRP version 3 over unicast, keepalived "
                "before 1.3.6 checksums its adverts differently, each side drops the other's and "
                "both become MASTER. Upgrade with vrrpVersion 2 (or multicast), then go back"
            )
    for name, v in sorted(versions.items()):
        missing = sorted(f for f in xfs or () if v.kernel_version < XFS_FEATURE_KERNEL[f])
        if missing:
            found.append(
                f"{name} (kernel {v.kernel}) cannot mount the volume read-write: its XFS has "
                f"{', '.join(f + '=1' for f in missing)} (made by a newer mkfs.xfs), which that "
                "kernel does not know; it would fail at its takeover. Replace it first, or keep "
                "the volume's features to what every node's kernel mounts"
            )
    return found


def problems_of(
    s: Settings,
    access: Access,
    statuses: Sequence[NodeStatus],
    also: Mapping[str, Versions] | None = None,
) -> list[str]:
    """:func:`problems`, asked of every node in ``statuses`` that answers (``also``: versions
    known already, of a node not asked), the volume's features of the node that mounts it."""
    versions, xfs = dict(also or {}), None
    for st in statuses:
        if st.vrrp_state == "UNREACHABLE" or st.name in versions:
            continue
        try:
            with sshconn.connect(access.target(st.name, st.ip, strict=True)) as c:
                versions[st.name] = node_versions(c)
                if st.mounted and xfs is None:
                    xfs = xfs_features(c, s.mount_point)
        except (OSError, paramiko.SSHException, sshconn.HostKeyError):
            continue
    return problems(s, versions, xfs)
