"""Adoption: what vCenter holds of an existing server a stack takes in (``nodes[].adopt``).

The article starts from one Veeam repository server that exists already. ``pulumi up`` brings
its VM in with Pulumi's ``import`` (components/node.py), and the program then declares the VM
as vCenter has it: the preflight reads here its hardware (:class:`AdoptedVm`), so the import
matches and nothing is reconfigured, and :func:`differences` names where it departs from the
stack's size, to be reported, never forced. Problems that stop the adoption (no such VM, a
template, powered off, another stack's) are preflight problems, each naming the node's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from components.config import Node, Settings

GIB = 1024**3
NIC_TYPES = {
    vim.vm.device.VirtualVmxnet3: "vmxnet3",
    vim.vm.device.VirtualE1000e: "e1000e",
    vim.vm.device.VirtualE1000: "e1000",
}
SCSI_TYPES = {
    vim.vm.device.ParaVirtualSCSIController: "pvscsi",
    vim.vm.device.VirtualLsiLogicSASController: "lsilogic-sas",
    vim.vm.device.VirtualLsiLogicController: "lsilogic",
}


@dataclass(frozen=True)
class AdoptedDisk:
    """One virtual disk as the provider's import reads it (its label included)."""

    label: str
    unit_number: int
    size_gb: int
    thin_provisioned: bool
    eagerly_scrub: bool
    disk_mode: str | None = None
    disk_sharing: str | None = None
    write_through: bool | None = None
    io_share_level: str | None = None
    io_share_count: int | None = None
    io_limit: int | None = None
    io_reservation: int | None = None


@dataclass(frozen=True)
class AdoptedVm:
    """An existing VM a node adopts, as vCenter holds it."""

    name: str
    uuid: str
    """BIOS UUID: the id the VM has in the provider."""
    path: str
    """Inventory path (``/<datacenter>/vm/[<folder>/]<name>``): what the provider imports by."""
    cpus: int
    memory_mb: int
    guest_id: str
    firmware: str
    scsi_type: str | None
    tools_upgrade_policy: str
    swap_placement_policy: str
    disks: tuple[AdoptedDisk, ...]
    nics: tuple[tuple[str, str | None], ...]
    """(network managed object id, adapter type) of each NIC."""
    managed: bool
    """It carries this stack's marker: adopted by an earlier ``pulumi up``."""


def _disk(index: int, device: Any) -> AdoptedDisk:
    """The ``index``-th disk (in the provider's order) as its import reads it: labelled as
    vCenter labels it ("Hard disk 1"), or ``disk<index>`` when the device has no label."""
    backing = device.backing
    info = device.deviceInfo
    io = device.storageIOAllocation
    shares = io.shares if io else None
    level = str(shares.level) if shares and shares.level else None
    return AdoptedDisk(
        label=(info.label if info is not None and info.label else None) or f"disk{index}",
        unit_number=int(device.unitNumber or 0),
        size_gb=int(device.capacityInKB // (1024 * 1024)),
        thin_provisioned=bool(getattr(backing, "thinProvisioned", False)),
        eagerly_scrub=bool(getattr(backing, "eagerlyScrub", False)),
        disk_mode=getattr(backing, "diskMode", None) or None,
        disk_sharing=getattr(backing, "sharing", None) or None,
        write_through=getattr(backing, "writeThrough", None),
        io_share_level=level,
        io_share_count=int(shares.shares) if shares and shares.shares is not None else None,
        io_limit=int(io.limit) if io and io.limit is not None else None,
        io_reservation=int(io.reservation) if io and io.reservation is not None else None,
    )


def _disks_in_order(devices: list[Any]) -> list[Any]:
    """The virtual disks in the order the provider's import lists them: by controller (its bus
    number), then unit number."""
    buses = {d.key: getattr(d, "busNumber", 0) or 0 for d in devices}
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    return sorted(disks, key=lambda d: (buses.get(d.controllerKey, 0), d.unitNumber or 0))


def inventory_path(obj: Any, root: Any) -> str:
    """``/<datacenter>/vm/.../<name>`` of a managed entity below the ``root`` folder."""
    names = []
    while obj is not None and obj._moId != root._moId:
        names.append(obj.name)
        obj = obj.parent
    return "/" + "/".join(reversed(names))


def read(vm: Any, root: Any, marker: str | None, stack_id: str) -> AdoptedVm:
    """What the program declares for the adopted ``vm`` (a pyVmomi VirtualMachine below the
    inventory's ``root`` folder)."""
    config = vm.config
    devices = list(config.hardware.device or [])
    scsi = next((t for d in devices for cls, t in SCSI_TYPES.items() if isinstance(d, cls)), None)
    nics = tuple(
        (
            d.backing.network._moId if getattr(d.backing, "network", None) else "",
            next((t for cls, t in NIC_TYPES.items() if isinstance(d, cls)), None),
        )
        for d in devices
        if isinstance(d, vim.vm.device.VirtualEthernetCard)
    )
    return AdoptedVm(
        name=vm.name,
        uuid=config.uuid,
        path=inventory_path(vm, root),
        cpus=int(config.hardware.numCPU),
        memory_mb=int(config.hardware.memoryMB),
        guest_id=config.guestId,
        firmware=config.firmware or "bios",
        scsi_type=scsi,
        tools_upgrade_policy=(config.tools.toolsUpgradePolicy if config.tools else None)
        or "manual",
        # a vCenter reports it ("inherit" unless set); vcsim never stores it
        swap_placement_policy=config.swapPlacement or "inherit",
        disks=tuple(_disk(i, d) for i, d in enumerate(_disks_in_order(devices))),
        nics=nics,
        managed=marker == stack_id,
    )


def problems(node: Node, vm: Any | None, marker: str | None, stack_id: str) -> list[str]:
    """Why ``vm`` (None: no VM of the node's name) cannot be adopted as ``node``."""
    where = f"repo-cluster:nodes: {node.name} (adopt)"
    if vm is None:
        return [f"{where}: no VM named {node.name!r} to adopt"]
    if vm.config is None or vm.config.template:
        return [f"{where}: {node.name!r} is a template, not a running server"]
    found = []
    if marker is not None and marker != stack_id:
        found.append(f"{where}: VM {node.name!r} belongs to stack {marker!r}")
    if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
        found.append(
            f"{where}: VM {node.name!r} is {vm.runtime.powerState}: the server being adopted "
            "serves the volume, and is adopted running"
        )
    disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    if not disks:
        found.append(f"{where}: VM {node.name!r} has no virtual disk")
    elif len({d.controllerKey for d in disks}) > 1:
        # the provider numbers disks across buses; each is declared with its unit on its own
        found.append(
            f"{where}: VM {node.name!r} has disks on more than one controller: adopting it is "
            "supported with every disk on one controller"
        )
    return found


def differences(s: Settings, vm: AdoptedVm) -> list[str]:
    """Where the adopted VM departs from the stack's VM size: reported, not changed."""
    found = []
    if vm.cpus != s.cpus:
        found.append(f"{vm.cpus} vCPU(s), the stack's cpus is {s.cpus}")
    if vm.memory_mb != s.memory_mb:
        found.append(f"{vm.memory_mb} MB of memory, the stack's memoryMb is {s.memory_mb}")
    system = vm.disks[0].size_gb if vm.disks else 0
    if system != s.disk_gb:
        found.append(f"a {system} GB first disk, the stack's diskGb is {s.disk_gb}")
    return [f"{vm.name}: adopted as it is, with {d} (not changed)" for d in found]
