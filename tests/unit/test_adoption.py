"""What the preflight reads of a VM to adopt, from pyVmomi objects as a vCenter returns them."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from pyVmomi import vim

from components.config.model import Node
from components.vcenter.adoption import inventory_path, problems, read

pytestmark = pytest.mark.unit


def _disk(key: int, unit: int, gb: int, label: str | None) -> vim.vm.device.VirtualDisk:
    return vim.vm.device.VirtualDisk(
        key=key,
        controllerKey=1000,
        unitNumber=unit,
        capacityInKB=gb * 1024 * 1024,
        deviceInfo=vim.Description(label=label, summary="") if label else None,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            thinProvisioned=True, diskMode="persistent", sharing="sharingNone"
        ),
        storageIOAllocation=vim.StorageResourceManager.IOAllocationInfo(
            limit=-1, reservation=0, shares=vim.SharesInfo(level="normal", shares=1000)
        ),
    )


def _vm() -> tuple[SimpleNamespace, SimpleNamespace]:
    root = SimpleNamespace(_moId="group-d1", name="Datacenters", parent=None)
    dc = SimpleNamespace(_moId="datacenter-3", name="dc1", parent=root)
    vm_folder = SimpleNamespace(_moId="group-v4", name="vm", parent=dc)
    folder = SimpleNamespace(_moId="group-v9", name="Veeam", parent=vm_folder)
    devices = [
        vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0),
        _disk(2001, 1, 2000, None),  # listed first here, second on the bus: disk1
        _disk(2000, 0, 40, "Hard disk 1"),
        vim.vm.device.VirtualVmxnet3(
            key=4000,
            backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                deviceName="VM Network", network=vim.Network("network-17")
            ),
        ),
    ]
    config = SimpleNamespace(
        uuid="4216d1b2-0000-0000-0000-000000000001",
        guestId="centos7_64Guest",
        firmware="bios",
        swapPlacement="inherit",
        tools=SimpleNamespace(toolsUpgradePolicy="manual"),
        hardware=SimpleNamespace(numCPU=1, memoryMB=4096, device=devices),
        template=False,
    )
    return SimpleNamespace(_moId="vm-42", name="repo1", config=config, parent=folder), root


def test_the_disks_carry_the_labels_the_providers_import_gives_them() -> None:
    """vCenter's own label ("Hard disk 1"), else disk<i> in bus order: another label in the
    program would read as a new disk to add."""
    vm, root = _vm()
    got = read(vm, root, None, "repo-cluster/lab")
    assert [(d.label, d.unit_number, d.size_gb) for d in got.disks] == [
        ("Hard disk 1", 0, 40),
        ("disk1", 1, 2000),
    ]
    d = got.disks[0]
    assert (d.thin_provisioned, d.disk_mode, d.disk_sharing) == (True, "persistent", "sharingNone")
    assert (d.io_share_level, d.io_share_count, d.io_limit) == ("normal", 1000, -1)
    assert got.nics == (("network-17", "vmxnet3"),)
    assert (got.cpus, got.memory_mb, got.scsi_type, got.managed) == (1, 4096, "pvscsi", False)
    assert (got.tools_upgrade_policy, got.swap_placement_policy) == ("manual", "inherit")


def test_the_import_id_is_the_inventory_path() -> None:
    vm, root = _vm()
    assert inventory_path(vm, root) == "/dc1/vm/Veeam/repo1"
    assert read(vm, root, "repo-cluster/lab", "repo-cluster/lab").managed


def test_disks_on_two_controllers_are_refused_naming_the_node() -> None:
    vm, _root = _vm()
    vm.runtime = SimpleNamespace(powerState=vim.VirtualMachinePowerState.poweredOn)
    node = Node("repo1", ipaddress.IPv4Address("10.2.50.161"), 101, adopt=True)
    assert problems(node, vm, None, "repo-cluster/lab") == []
    vm.config.hardware.device[1].controllerKey = 1001  # its second disk on a second controller
    assert problems(node, vm, None, "repo-cluster/lab") == [
        "repo-cluster:nodes: repo1 (adopt): VM 'repo1' has disks on more than one controller: "
        "adopting it is supported with every disk on one controller"
    ]
