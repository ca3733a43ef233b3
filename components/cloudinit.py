"""cloud-init documents for a node's first boot, built from its bundle.

``write_files`` carries every bundle file except the SSH host keys, base64-encoded so the
bytes on the node are exactly the bundle's; the host keys go through ``ssh_keys``, which
replaces the keys the template generated. YAML comes from ``yaml.safe_dump``, never from
string concatenation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yaml

from components.hostkeys import HostKey
from components.settings import Node, Settings

if TYPE_CHECKING:
    from components.bundle import BundleFile

HEADER = "#cloud-config\n"


def _dump(doc: dict[str, Any]) -> str:
    # width: keep every scalar on one line (no folding), so what you read is what is written
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 20)


def host_key_paths(keys: Iterable[HostKey]) -> set[str]:
    paths = set()
    for k in keys:
        paths |= {f"/etc/ssh/ssh_host_{k.type}_key", f"/etc/ssh/ssh_host_{k.type}_key.pub"}
    return paths


def _write_file(f: BundleFile) -> dict[str, Any]:
    return {
        "path": f.path,
        "content": base64.b64encode(f.content).decode(),
        "encoding": "b64",
        "owner": f"{f.owner}:{f.group}",
        "permissions": f"{f.mode:04o}",
    }


def _access(s: Settings, authorized: tuple[str, ...]) -> dict[str, Any]:
    """Authorized keys for root, or for a provisioning user with passwordless sudo."""
    if s.ssh_user == "root":
        return {"disable_root": False, "ssh_authorized_keys": list(authorized)}
    user = {
        "name": s.ssh_user,
        "shell": "/bin/bash",
        "lock_passwd": True,
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": list(authorized),
    }
    return {"users": ["default", user]}


def user_data(
    s: Settings,
    node: Node,
    files: tuple[BundleFile, ...],
    host_keys: tuple[HostKey, ...],
    authorized: tuple[str, ...],
    packages: tuple[str, ...],
    services: tuple[str, ...],
    sysctl_conf: str,
) -> str:
    skip = host_key_paths(host_keys)
    ssh_keys: dict[str, str] = {}
    for k in host_keys:
        ssh_keys[f"{k.type}_private"] = k.private
        ssh_keys[f"{k.type}_public"] = k.public + "\n"
    doc: dict[str, Any] = {
        "hostname": node.name,
        "fqdn": node.fqdn(s.domain),
        "manage_etc_hosts": True,
        # the same host keys on every node: Veeam sees one host behind the VIP
        "ssh_deletekeys": True,
        "ssh_keys": ssh_keys,
        **_access(s, authorized),
        # write_files (init stage) lays down the repo files before packages are installed
        # (final stage); package_update refreshes the metadata from them first.
        "package_update": True,
    }
    if s.os_family in ("debian", "ubuntu"):
        doc["apt"] = {"preserve_sources_list": True}
    doc["packages"] = list(packages)
    doc["write_files"] = [_write_file(f) for f in files if f.path not in skip]
    doc["runcmd"] = [
        ["sysctl", "-p", sysctl_conf],
        ["systemctl", "daemon-reload"],
        *(["systemctl", "enable", "--now", unit] for unit in services),
    ]
    return HEADER + _dump(doc)


def meta_data(node: Node, user_data: str) -> str:
    """instance-id follows the node name and its user-data: a changed bundle is a new
    instance for cloud-init."""
    digest = hashlib.sha256(user_data.encode()).hexdigest()[:16]
    return _dump({"instance-id": f"{node.name}-{digest}", "local-hostname": node.name})
