"""cloud-init documents for a node's first boot, built from its bundle.

The documents are templates in ``cloud-init/`` that read like what the VM boots with.
``write_files`` carries every bundle file except the SSH host keys, base64-encoded so the
bytes on the node are exactly the bundle's; the host keys go through ``ssh_keys``, which
replaces the keys the template generated. Every string value is rendered as a quoted YAML
scalar (``yamlstr``), so no value can change the document's structure.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from components.bundle.hostkeys import HostKey
from components.bundle.model import BundleFile
from components.bundle.paths import PATHS
from components.bundle.render import render
from components.config import Node, Settings


@dataclass(frozen=True)
class _WriteFile:
    path: str
    content_b64: str
    owner: str
    group: str
    mode: int


def host_key_paths(keys: Iterable[HostKey]) -> set[str]:
    paths = set()
    for k in keys:
        paths |= {PATHS.host_key(k.type), f"{PATHS.host_key(k.type)}.pub"}
    return paths


def user_data(
    s: Settings,
    node: Node,
    files: tuple[BundleFile, ...],
    host_keys: tuple[HostKey, ...],
    authorized: tuple[str, ...],
    install: tuple[str, ...],
    services: tuple[str, ...],
) -> str:
    """``install``: the shell commands that set up the package sources and install the
    bundle's packages, the very ones a converge runs on a node that lacks them all."""
    skip = host_key_paths(host_keys)
    write = [
        _WriteFile(f.path, base64.b64encode(f.content).decode(), f.owner, f.group, f.mode)
        for f in files
        if f.path not in skip
    ]
    return render(
        "user-data.j2",
        s=s,
        node=node,
        fqdn=node.fqdn(s.domain),
        host_keys=host_keys,
        authorized=authorized,
        files=write,
        install=install,
        services=services,
    )


def instance_id(s: Settings, node: Node) -> str:
    """Stable for the node's life: the node's FQDN, nothing from the bundle (day-2 changes
    are the converge's job)."""
    return node.fqdn(s.domain)


def meta_data(s: Settings, node: Node) -> str:
    """The meta-data the VMware guestinfo datasource reads (``guestinfo.metadata``)."""
    return render(
        "meta-data.j2", s=s, node=node, fqdn=instance_id(s, node), address=s.node_address(node)
    )
