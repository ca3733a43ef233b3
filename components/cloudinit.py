"""cloud-init documents for a node's first boot, built from its bundle.

``write_files`` carries every bundle file except the SSH host keys, base64-encoded so the
bytes on the node are exactly the bundle's; the host keys go through ``ssh_keys``, which
replaces the keys the template generated. YAML comes from ``yaml.safe_dump``, never from
string concatenation.
"""

from __future__ import annotations

import base64
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
    install: tuple[str, ...],
    services: tuple[str, ...],
    sysctl_conf: str,
) -> str:
    """``install``: the shell commands that set up the package sources and install the
    bundle's packages, the very ones a converge runs on a node that lacks them all."""
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
    }
    if s.os_family in ("debian", "ubuntu"):
        doc["apt"] = {"preserve_sources_list": True}
    doc["write_files"] = [_write_file(f) for f in files if f.path not in skip]
    # Packages are installed by runcmd, not by cloud-init's `packages`: that module installs
    # in one transaction before runcmd runs, so nothing could come between (el7: epel-release
    # and its key must be in before any EPEL package). write_files (init stage) has laid down
    # the repo files by then; runcmd (final stage) refreshes the sources from them, installs,
    # then configures.
    doc["runcmd"] = [
        *install,
        ["sysctl", "-p", sysctl_conf],
        ["systemctl", "daemon-reload"],
        *(["systemctl", "enable", "--now", unit] for unit in services),
    ]
    return HEADER + _dump(doc)


def network_config(s: Settings, node: Node) -> dict[str, Any]:
    """Network config version 2, saying exactly what the guest customization sets (the
    node's address and prefix, the gateway, the name servers, the domain as search list).

    Without it the VMware datasource falls back to DHCP on the first NIC and undoes the
    customization. ``gateway4``, deprecated in newer cloud-init, is what CentOS 7's 18.5/19.4
    understand (``routes`` with ``to: default`` came later).
    """
    address = f"{node.ip}/{s.network_prefix.prefixlen}"
    return {
        "version": 2,
        "ethernets": {
            s.interface: {
                "match": {"name": s.interface},
                "addresses": [address],
                "gateway4": str(s.gateway),
                "nameservers": {
                    "addresses": [str(a) for a in s.nameservers],
                    "search": [s.domain],
                },
            }
        },
    }


def instance_id(s: Settings, node: Node) -> str:
    """Stable for the node's life: the node's FQDN, nothing from the bundle. A new instance-id
    would rerun every first-boot module at the next reboot (new host keys, users, packages);
    day-2 changes are the converge's job."""
    return node.fqdn(s.domain)


def meta_data(s: Settings, node: Node) -> str:
    """The meta-data the VMware guestinfo datasource reads (``guestinfo.metadata``): the
    ``network`` key, a plain mapping, is the instance's network config; ``cleanup-guestinfo``
    makes the datasource clear ``guestinfo.userdata`` (host private keys, keyring) once read,
    so no process in the guest can read it back through VMware Tools."""
    return _dump(
        {
            "instance-id": instance_id(s, node),
            "local-hostname": node.name,
            "network": network_config(s, node),
            "cleanup-guestinfo": ["userdata"],
        }
    )
