"""The embedded lab's DNS server: a real BIND ``named`` serving the stack's zone (and reverse
zone) on the stack's ``dnsServer:dnsPort`` (127.0.0.1:5353 for sim), taking TSIG-signed
updates with the key the lab generates (.lab/<stack>/secrets.json, 0600).

Started by ``lab-up`` and stopped by ``lab-down``, its files in .lab/<stack>/named. The stack's
record itself is made by ``pulumi up`` (DnsRecord) or, without the vSphere plugin, by
``fab dns``.
"""

from __future__ import annotations

from pathlib import Path

from components.dns import server
from components.lab.net import LabError
from components.lab.plan import Lab
from components.lab.secrets import dns_tsig_secret


def workdir(lab: Lab) -> Path:
    return lab.dir / "named"


def config(lab: Lab, repo: Path) -> server.NamedConfig | None:
    """The lab's named, or None when the stack has no ``dnsServer``."""
    s = lab.settings
    if not s.dns_server:
        return None
    zones = (s.dns_zone, *((s.dns_ptr_zone,) if s.dns_ptr_zone else ()))
    try:
        return server.NamedConfig(
            workdir=workdir(lab).resolve(),
            listen=s.dns_server,
            port=s.dns_port,
            zones=zones,
            key_name=s.dns_tsig_key_name or "repo-cluster-lab",
            algorithm=s.dns_tsig_algorithm,
            secret=dns_tsig_secret(s, lab.stack, repo),
        )
    except ValueError as exc:
        raise LabError(f"lab {lab.stack}: DNS server: {exc}") from None


def up(lab: Lab, repo: Path) -> str | None:
    """Start the lab's named unless it runs; what was done, or None without a dnsServer."""
    cfg = config(lab, repo)
    if cfg is None:
        return None
    if server.running(cfg.workdir):
        return f"named on {cfg.listen}:{cfg.port} is up"
    if cfg.workdir.exists():
        server.stop(cfg.workdir)  # a dead named's leftovers
    try:
        pid = server.start(cfg)
    except server.NamedError as exc:
        raise LabError(f"lab {lab.stack}: {exc}") from None
    return f"named started on {cfg.listen}:{cfg.port} (pid {pid}), zones {', '.join(cfg.zones)}"


def down(lab: Lab) -> bool:
    """Stop the lab's named and remove its files; whether one ran."""
    try:
        return server.stop(workdir(lab))
    except server.NamedError as exc:
        raise LabError(f"lab {lab.stack}: {exc}") from None
