"""Preflight: ask vCenter (pyvmomi) whether the stack can be built, before creating anything.

Every problem is collected and reported at once: the template exists and is a template; the
cluster, datastore and network exist; the datastore has room for every node's disk; no VM
outside this stack already uses a node name, a node IP or the VIP; a node to adopt has its VM,
running (components/vcenter/adoption.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from components.bundle.guestinfo import STACK_MARKER
from components.bundle.paths import PATHS
from components.config import Settings
from components.vcenter.adoption import AdoptedVm, read
from components.vcenter.adoption import problems as adoption_problems

GIB = 1024**3


@dataclass(frozen=True)
class Found:
    """What the preflight found in vCenter that the program builds on."""

    existing: frozenset[str] = frozenset()
    """The stack's nodes whose VM exists already (named after the node, with the stack's
    marker)."""
    adopted: dict[str, AdoptedVm] = field(default_factory=dict)
    """Node name -> the existing VM it adopts, as vCenter holds it (where it departs from the
    stack's size is reported by RepoCluster: :func:`components.vcenter.adoption.differences`)."""
    masters: frozenset[str] = frozenset()
    """The stack's nodes whose VM reports keepalived's MASTER state (the notify script publishes
    it in guestinfo): a rolling change takes them last."""


class PreflightError(RuntimeError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"preflight found {len(problems)} problem(s) in vCenter:\n{lines}")


@contextmanager
def connect_to(server: str, user: str, password: str, unverified_ssl: bool) -> Iterator[Any]:
    """A vCenter session (``server`` is ``host[:port]``), logged out at the end."""
    host, _, port = server.partition(":")
    context = ssl.create_default_context()
    if unverified_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    si = SmartConnect(
        host=host,
        port=int(port or 443),
        user=user,
        pwd=password,
        sslContext=context,
        connectionPoolTimeout=30,
    )
    try:
        yield si
    finally:
        Disconnect(si)


@contextmanager
def connect(s: Settings) -> Iterator[Any]:
    """A session with the stack's vCenter."""
    with connect_to(
        s.vsphere_server, s.vsphere_user, s.vsphere_password.value or "", s.allow_unverified_ssl
    ) as si:
        yield si


def vm_properties(si: Any, paths: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    """(VM, its ``paths``' values) for every VM of the inventory, in one round trip."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    pc = vmodl.query.PropertyCollector
    try:
        traverse = pc.TraversalSpec(
            name="view", path="view", skip=False, type=vim.view.ContainerView
        )
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=paths)],
        )
        return [
            (o.obj, {p.name: p.val for p in o.propSet})
            for o in content.propertyCollector.RetrieveContents([spec])
        ]
    finally:
        view.Destroy()


def _children(content: Any, root: Any, kind: type) -> list[Any]:
    view = content.viewManager.CreateContainerView(root, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def _named(objs: list[Any], name: str) -> Any | None:
    return next((o for o in objs if o.name == name), None)


def _vm_ips(vm: Any) -> set[str]:
    ips: set[str] = set()
    guest = vm.guest
    if guest is None:
        return ips
    if guest.ipAddress:
        ips.add(guest.ipAddress)
    for nic in guest.net or []:
        ips.update(nic.ipAddress or [])
    return ips


def _extra(vm: Any, key: str) -> str | None:
    config = vm.config
    for opt in (config.extraConfig if config else None) or []:
        if opt.key == key:
            return str(opt.value)
    return None


def _marker(vm: Any) -> str | None:
    return _extra(vm, STACK_MARKER)


def _pool_exists(content: Any, dc: Any, path: str) -> bool:
    """``path`` as the provider reads it: ``<compute resource>/Resources[/<pool>...]``."""
    pools = _children(content, dc.hostFolder, vim.ResourcePool)
    by_path = set()
    for pool in pools:
        names, obj = [], pool
        while isinstance(obj, vim.ResourcePool):
            names.append(obj.name)
            obj = obj.parent
        by_path.add("/".join([obj.name, *reversed(names)]))
    return path.strip("/") in by_path


def check(s: Settings, stack_id: str, si: Any) -> list[str]:
    """Return every problem found; an empty list means the stack can be built."""
    content = si.RetrieveContent()
    problems: list[str] = []
    dc = _named(_children(content, content.rootFolder, vim.Datacenter), s.datacenter)
    if dc is None:
        return [f"repo-cluster:datacenter: datacenter {s.datacenter!r} not found"]
    if _named(_children(content, dc.hostFolder, vim.ClusterComputeResource), s.cluster) is None:
        problems.append(f"repo-cluster:cluster: cluster {s.cluster!r} not found in {dc.name}")
    if s.resource_pool and not _pool_exists(content, dc, s.resource_pool):
        problems.append(
            f"repo-cluster:resourcePool: resource pool {s.resource_pool!r} not found in {dc.name}"
        )
    if _named(_children(content, dc.networkFolder, vim.Network), s.network) is None:
        problems.append(f"repo-cluster:network: network {s.network!r} not found in {dc.name}")
    vms = _children(content, dc.vmFolder, vim.VirtualMachine)
    template = _named(vms, s.template)
    if template is None:
        problems.append(f"repo-cluster:template: VM {s.template!r} not found in {dc.name}")
    elif not (template.config and template.config.template):
        problems.append(f"repo-cluster:template: {s.template!r} exists but is not a template")
    ours = {vm.name for vm in vms if _marker(vm) == stack_id}
    adopt = {n.name: n for n in s.nodes if n.adopt}
    for n in adopt.values():
        vm = _named(vms, n.name)
        problems += adoption_problems(n, vm, _marker(vm) if vm else None, stack_id)
    new = [n for n in s.nodes if n.name not in ours and n.name not in adopt]
    needed = len(new) * s.disk_gb * GIB
    ds = _named(_children(content, dc.datastoreFolder, vim.Datastore), s.datastore)
    if ds is None:
        problems.append(f"repo-cluster:datastore: datastore {s.datastore!r} not found")
    elif ds.summary.freeSpace < needed:
        problems.append(
            f"repo-cluster:datastore: {s.datastore!r} has {ds.summary.freeSpace / GIB:.1f} GiB "
            f"free, the new disks need {needed / GIB:.0f} GiB"
        )
    wanted_ips = {str(n.ip): f"node {n.name}" for n in s.nodes} | {str(s.vip.ip): "the VIP"}
    names = {n.name for n in s.nodes}
    for vm in vms:
        if _marker(vm) == stack_id:
            continue
        own = {str(adopt[vm.name].ip)} if vm.name in adopt else set()  # a server to adopt
        if vm.name in names and not own:
            problems.append(f"repo-cluster:nodes: a VM named {vm.name!r} already exists")
        for ip in sorted((_vm_ips(vm) - own) & set(wanted_ips)):
            problems.append(
                f"repo-cluster:nodes: VM {vm.name!r} already uses {ip} ({wanted_ips[ip]})"
                if wanted_ips[ip] != "the VIP"
                else f"repo-cluster:vip: VM {vm.name!r} already uses the VIP {ip}"
            )
    return problems


def found(s: Settings, stack_id: str, si: Any) -> Found:
    """What the program builds on (after :func:`check` passed), from one listing of the
    datacenter's VMs: the stack's nodes whose VM exists already (named after the node, with
    the stack's marker: ``pulumi up`` then changes them one after the other), those of them
    whose VM reports MASTER, and each adopted VM as vCenter holds it."""
    content = si.RetrieveContent()
    dc = _named(_children(content, content.rootFolder, vim.Datacenter), s.datacenter)
    vms = {vm.name: vm for vm in _children(content, dc.vmFolder, vim.VirtualMachine)} if dc else {}
    markers = {n.name: _marker(vms[n.name]) for n in s.nodes if n.name in vms}
    ours = [vms[name] for name, marker in markers.items() if marker == stack_id]
    return Found(
        existing=frozenset(vm.name for vm in ours),
        adopted={
            n.name: read(vms[n.name], content.rootFolder, markers[n.name], stack_id)
            for n in s.nodes
            if n.adopt and n.name in vms
        },
        masters=frozenset(
            vm.name
            for vm in ours
            if (_extra(vm, PATHS.vrrp_state_guestinfo) or "").strip() == "MASTER"
        ),
    )


def run(s: Settings, stack_id: str) -> Found:
    """Connect, check, raise PreflightError with every problem (or a clear connection error);
    what was found (:class:`Found`)."""
    try:
        with connect(s) as si:
            problems = check(s, stack_id, si)
            result = found(s, stack_id, si) if not problems else None
    except vim.fault.InvalidLogin as exc:
        raise PreflightError([f"vsphere:user: login refused by {s.vsphere_server}"]) from exc
    except (OSError, ssl.SSLError) as exc:
        raise PreflightError(
            [f"vsphere:vsphereServer: cannot reach {s.vsphere_server}: {exc}"]
        ) from exc
    if problems or result is None:
        raise PreflightError(problems)
    return result
