"""The SSH host keys the nodes publish in their guestinfo, read over the vSphere API.

A node's VM makes its own host key at first boot and publishes the public half in its
guestinfo (``PATHS.host_key_guestinfo``, by ``node/scripts/repo-cluster-publish-host-key.j2``,
with VMware Tools' ``info-set``); vSphere shows what a guest set there in the VM's
``extraConfig``. Only that VM ever held the private half, so a converge that trusts exactly
the key published by the VM named after the node, and marked as this stack's
(``repo-cluster.stack``), talks to that VM and to nothing else answering on its address
(components/converge/trust.py). Once converged, a node publishes the shared key it serves.

Whoever may reconfigure the VM in vCenter could publish another key: that right gives the
VM's disks anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from components.bundle.guestinfo import STACK_MARKER
from components.bundle.paths import PATHS
from components.config import Settings
from components.vcenter.preflight import connect_to, vm_properties

POLL = 5.0


@dataclass(frozen=True)
class VCenter:
    """How to reach the stack's vCenter."""

    server: str
    user: str
    password: str = field(repr=False)
    unverified_ssl: bool = False

    @classmethod
    def of(cls, s: Settings) -> VCenter:
        return cls(
            s.vsphere_server,
            s.vsphere_user,
            s.vsphere_password.value or "",
            s.allow_unverified_ssl,
        )

    @classmethod
    def of_props(cls, where: dict[str, object], password: str) -> VCenter:
        """From a converge step's ``vcenter`` input (components/node_converge.py)."""
        unverified = bool(where.get("unverified_ssl"))
        return cls(str(where["server"]), str(where["user"]), password, unverified)


class NotPublished(RuntimeError):
    """The node's VM has published no host key (yet)."""


def published_in(extra_config: Iterable[Any], stack_id: str) -> str | None:
    """The host public key line in a VM's extraConfig, when the VM is this stack's and has
    published an ed25519 key; else None."""
    extra = {str(o.key): str(o.value) for o in extra_config or []}
    line = extra.get(PATHS.host_key_guestinfo, "").strip()
    fields = line.split()
    if extra.get(STACK_MARKER) != stack_id or len(fields) < 2 or fields[0] != "ssh-ed25519":
        return None
    return " ".join(fields[:2])


def read(vc: VCenter, stack_id: str, names: Iterable[str]) -> dict[str, str]:
    """Node name -> the host public key its VM publishes, for the named VMs of this stack
    that publish one (a VM not found, not this stack's or not publishing is left out)."""
    wanted = set(names)
    with connect_to(vc.server, vc.user, vc.password, vc.unverified_ssl) as si:
        vms = [ref for ref, p in vm_properties(si, ["name"]) if p.get("name") in wanted]
        keys: dict[str, str] = {}
        for ref in vms:
            line = published_in(ref.config.extraConfig if ref.config else [], stack_id)
            if line is not None:
                keys[str(ref.name)] = line
    return keys


def wait(
    vc: VCenter,
    stack_id: str,
    node: str,
    timeout: float,
    log: Callable[[str], None] = lambda _m: None,
) -> str:
    """The host public key ``node``'s VM publishes, waiting up to ``timeout`` seconds for a
    VM that is still booting; :class:`NotPublished` naming what to check."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        key = read(vc, stack_id, [node]).get(node)
        if key is not None:
            return key
        if time.monotonic() >= deadline:
            raise NotPublished(
                f"{node}: its VM published no SSH host key in {PATHS.host_key_guestinfo} "
                f"within {timeout:.0f} s (is open-vm-tools in the template, did "
                f"{PATHS.publish_host_key_unit} run? `journalctl -u {PATHS.publish_host_key_unit}`"
                " on the node); without it, only --trust-first-contact reaches the node"
            )
        if not said:
            log(f"{node}: waiting for its VM to publish its SSH host key")
            said = True
        time.sleep(min(POLL, max(0.5, deadline - time.monotonic())))
