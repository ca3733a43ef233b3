"""cloud-init documents for a node's first boot, built from its bundle: no secret in them.

The user-data travels in the VM's extraConfig (guestinfo), which anyone who can read the VM
in vCenter, its .vmx, a backup or a clone can read. So it carries only what needs no secret:
host name, network (meta-data), package sources and packages, the operator's public keys and
every bundle file not marked secret (``write_files``, base64 so the bytes on the node are the
bundle's). The secret files (shared host private keys, Ceph keyring, keepalived.conf with the
VRRP auth_pass) arrive over SSH with the first converge (components/converge/node.py).

No key either: the VM makes its own host key at first boot (cloud-init's ``ssh`` module,
the template's keys deleted) and publishes the public half in its guestinfo
(``repo-cluster-publish-host-key``, started first thing by ``runcmd``), where the first converge
reads it over the vSphere API and trusts exactly that key (components/converge/trust.py). The
shared host key files (public halves too) are the converge's. First boot installs packages and
writes files but starts no service beyond that publication: keepalived and the rbd unit need
their secret files; the converge enables and starts them. Every string value is rendered as a
quoted YAML scalar (``yamlstr``), so no value can change the document's structure.
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


def first_boot_files(files: Iterable[BundleFile]) -> list[BundleFile]:
    """The bundle files user-data writes: no secret, no host key file (see the module doc),
    no rank config (it holds the priorities: it comes with keepalived.conf, so that a
    priority change touches no VM; keepalived starts with the first converge anyway)."""
    return [
        f
        for f in files
        if not f.secret and not PATHS.is_host_key(f.path) and f.path != PATHS.rank_conf
    ]


def user_data(
    s: Settings,
    node: Node,
    files: tuple[BundleFile, ...],
    authorized: tuple[str, ...],
    install: tuple[str, ...],
) -> str:
    """``install``: the shell commands that set up the package sources and install the
    bundle's packages, the very ones a converge runs on a node that lacks them all."""
    write = [
        _WriteFile(f.path, base64.b64encode(f.content).decode(), f.owner, f.group, f.mode)
        for f in first_boot_files(files)
    ]
    return render(
        "user-data.j2",
        s=s,
        node=node,
        fqdn=node.fqdn(s.domain),
        authorized=authorized,
        files=write,
        install=install,
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
