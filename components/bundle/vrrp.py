"""The VRRP parameters every node of a cluster must share, and their digest in keepalived.conf.

Why: two keepalived that disagree on the auth_pass, the virtual router id, the advert interval
or the peer set drop each other's adverts, and both become MASTER. A converge that reloads the
nodes one after the other opens exactly that window, so it must know when a change is
cluster-wide. keepalived.conf carries a digest of these parameters on one comment line; the
converge reads that line from each node (components/converge/rollout.py) and compares it
with the render's. Per-node settings (priority, unicast_src_ip, the check scripts) are not in
it: they may differ and change one node at a time.

The digest covers the auth_pass, so it lives only where the auth_pass does: in keepalived.conf
(root-only, a secret file) and in values the program keeps secret.
"""

from __future__ import annotations

import hashlib
import json

from components.config import Settings

MARKER = "# VRRP parameters (the same on every node): "


def parameters(s: Settings, auth_pass: str) -> dict[str, object]:
    """What every node's vrrp_instance must agree on."""
    advert = s.advert_seconds
    return {
        "instance": s.vrrp_instance,
        "virtual_router_id": s.virtual_router_id,
        # spelled as before version 3 existed, so a v2 cluster's digest stays what it was
        **({"version": s.vrrp_version} if s.vrrp_version != 2 else {}),
        "advert_int": int(advert) if advert.is_integer() else advert,
        "auth_pass": auth_pass,
        "vip": str(s.vip),
        # unicast: each node accepts adverts from its listed peers only
        "unicast": sorted(str(n.ip) for n in s.nodes) if s.unicast else None,
    }


def digest(s: Settings, auth_pass: str) -> str:
    canonical = json.dumps(parameters(s, auth_pass), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def digest_in(conf: bytes | str) -> str | None:
    """The digest a keepalived.conf carries; None when it has none (written before it had)."""
    text = conf.decode(errors="replace") if isinstance(conf, bytes) else conf
    for line in text.splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER) :].strip() or None
    return None
