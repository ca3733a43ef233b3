"""The HA invariants a drill checks, over the samples it took. Pure: samples in, breaks out.

Why separate: the invariants are the definition of "the HA works", and they must not bend to
a scenario. Each check returns what broke and the sample that broke it; a scenario that is
known to break one (no fence yet) still gets the same check, and the break is reported.

    I1 single-writer  at every sample the volume is mounted writable on at most one node (a
                      mount whose Ceph client was fenced cannot write and does not count)
    I2 one-holder     once settled exactly one node holds the VIP, and it has the mount
    I3 ssh-on-vip     ssh to the VIP with the shared host keys only works before and after
    I4 writes-kept    every record the writer saw acknowledged reads back after recovery
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from components.converge.probe import Sample
from components.converge.status import NodeStatus

INVARIANTS = {
    "I1": "the volume is mounted writable on at most one node at every sample",
    "I2": "once settled exactly one node holds the VIP and it is the one with the mount",
    "I3": "ssh to the VIP (shared host keys only) works before and after",
    "I4": "every acknowledged record reads back after recovery",
}


@dataclass(frozen=True)
class Broken:
    """One broken invariant: its id, what was wrong, and the sample that showed it."""

    invariant: str
    detail: str
    sample: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def single_mount(samples: Sequence[Sample]) -> list[Broken]:
    """I1 at every sample; reports the first sample with two writable mounts (and how many
    there were). A mount over a fenced client is not writable: Ceph refuses its I/O."""
    bad = [x for x in samples if len(x.writable()) > 1]
    if not bad:
        return []
    first = bad[0]
    detail = (
        f"volume mounted writable on {', '.join(first.writable())} at once "
        f"({len(bad)} of {len(samples)} samples, first at t={first.t:.2f}s)"
    )
    return [Broken("I1", detail, first.brief())]


def one_holder(last: Sample | None) -> list[Broken]:
    """I2 on the settled (last) sample."""
    if last is None:
        return [Broken("I2", "no sample taken")]
    # the mount that counts is a writable one: a fenced leftover (the lab's crashed node keeps
    # its kernel, and so its dead mount) serves nobody
    holders, mounted = last.vip_holders(), last.writable()
    if len(holders) == 1 and mounted == holders:
        return []
    detail = (
        f"VIP on {', '.join(holders) or 'no node'}, volume on {', '.join(mounted) or 'no node'}"
    )
    return [Broken("I2", detail, last.brief())]


def nobody_mounted(samples: Sequence[Sample]) -> list[Broken]:
    """R1: while the image cannot be fenced (no exclusive-lock), no node mounts it."""
    bad = [x for x in samples if x.mounted()]
    if not bad:
        return []
    first = bad[0]
    detail = f"{', '.join(first.mounted())} mounted an image without exclusive-lock"
    return [Broken("R1", f"{detail} (first at t={first.t:.2f}s)", first.brief())]


def holds_all(node: str) -> Callable[[Sample], bool]:
    """``node`` holds the VIP and has the volume mounted."""

    def cond(x: Sample) -> bool:
        return any(n.name == node and n.holds_vip and n.mounted for n in x.nodes)

    return cond


def settled(x: Sample) -> bool:
    """Exactly one MASTER, holding the VIP and the mount; no other node holds either."""
    m = x.masters()
    return len(m) == 1 and x.vip_holders() == m and x.mounted() == m


def settled_with_backup(holder: str, backup: str) -> Callable[[Sample], bool]:
    """Settled on ``holder``, and ``backup`` is BACKUP (with nothing mounted: settled)."""

    def cond(x: Sample) -> bool:
        return (
            settled(x)
            and x.masters() == [holder]
            and any(n.name == backup and n.vrrp_state == "BACKUP" for n in x.nodes)
        )

    return cond


def stable_since(samples: Sequence[Sample], cond: Callable[[Sample], bool]) -> float | None:
    """Start of the final run of samples meeting ``cond``; None if the last does not."""
    since = None
    for x in samples:
        since = (x.t if since is None else since) if cond(x) else None
    return since


def vrrp_matches_mount(last: Sample | None) -> list[Broken]:
    """Each node's mount state matches its VRRP state (mounted exactly when MASTER)."""
    if last is None:
        return [Broken("S8", "no sample taken")]
    odd = [n.name for n in last.nodes if n.mounted != (n.vrrp_state == "MASTER")]
    if not odd:
        return []
    return [Broken("S8", f"mount state differs from VRRP state on {', '.join(odd)}", last.brief())]


def no_move(
    samples: Sequence[Sample], back: float, holder: str, returner: str, grace: float = 0.0
) -> list[Broken]:
    """From ``back`` (the old master ``returner`` comes back) on, ``holder`` keeps the VIP and
    the mount at every sample, and ``returner`` takes neither: it never holds the VIP and never
    mounts anew (no mount flap); it ends BACKUP with nothing mounted.

    ``grace``: a returner that froze holding the VIP (a stunned VM, a hung keepalived) still
    has it when it resumes, until it hears the holder's first advert and yields: seconds from
    ``back`` in which its VIP is not a move (its mount still is).

    A mount the returner still had when it came back is not a move: cut off from the storage,
    it could not finish its release (a write in flight to unreachable storage cannot be killed,
    so the unmount waits). Its Ceph client was fenced by the takeover, so that mount cannot
    write (I1 checks it); once the storage answers again the release completes."""
    out: list[Broken] = []
    after = [x for x in samples if x.t >= back]
    flap = [x for x in after if not holds_all(holder)(x)]
    if flap:
        out.append(Broken("S6", f"{holder} lost the VIP or the mount", flap[0].brief()))

    def node(x: Sample) -> NodeStatus | None:
        return next((n for n in x.nodes if n.name == returner), None)

    grab = []
    before = [x for x in samples if x.t < back]
    was_mounted = bool(before) and bool((n := node(before[-1])) and n.mounted)
    for x in after:
        n = node(x)
        if n is None:
            continue
        if (n.holds_vip and x.t >= back + grace) or (n.mounted and not was_mounted):
            grab.append(x)
        was_mounted = n.mounted
    if grab:
        out.append(Broken("S6", f"{returner} took the VIP or the mount back", grab[0].brief()))
    if after:
        last = node(after[-1])
        if last is None or last.vrrp_state != "BACKUP" or last.mounted:
            state = "unseen" if last is None else last.vrrp_state
            mounted = " with the volume mounted" if last is not None and last.mounted else ""
            out.append(
                Broken("S6", f"{returner} is {state}{mounted}, want BACKUP", after[-1].brief())
            )
    return out
