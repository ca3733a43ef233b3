"""The lab's vcsim as its host agent sees it: the stack's VMs with their power state, their
hardware and their extraConfig, in one round trip; and the extraConfig writes a guest asks for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from components.bundle.guestinfo import STACK_MARKER
from components.lab.qemu import Hardware
from components.vcenter.preflight import vm_properties

PROPERTIES = (
    *("name", "config.uuid", "runtime.powerState", "config.hardware"),
    *("config.extraConfig", "config.template"),
)


@dataclass(frozen=True)
class VmView:
    """One VM as vcsim shows it."""

    name: str
    uuid: str
    powered_on: bool
    marker: str
    """Its ``repo-cluster.stack`` extraConfig: ``<project>/<stack>``."""
    hardware: Hardware
    ref: Any


def collect(si: Any) -> list[VmView]:
    """Every VM but templates, with the properties the agent needs, in one round trip."""
    found = []
    for ref, props in vm_properties(si, list(PROPERTIES)):
        if props.get("config.template") or "config.uuid" not in props:
            continue
        found.append(_view(props, ref))
    return found


def _view(props: dict[str, Any], ref: Any) -> VmView:
    extra = {o.key: o.value for o in props.get("config.extraConfig") or []}
    hw = props["config.hardware"]
    disks = [d for d in hw.device if isinstance(d, vim.vm.device.VirtualDisk)]
    nics = [d for d in hw.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return VmView(
        name=props["name"],
        uuid=props["config.uuid"],
        powered_on=props["runtime.powerState"] == "poweredOn",
        marker=str(extra.get(STACK_MARKER, "")),
        hardware=Hardware(
            uuid=props["config.uuid"],
            cpus=int(hw.numCPU),
            memory_mb=int(hw.memoryMB),
            disk_gb=max(1, (disks[0].capacityInKB if disks else 0) // 1048576),
            mac=nics[0].macAddress if nics and nics[0].macAddress else "",
        ),
        ref=ref,
    )


def extra_config(ref: Any) -> dict[str, str]:
    return {o.key: str(o.value) for o in ref.config.extraConfig or []}


def set_extra_config(ref: Any, key: str, value: str) -> None:
    spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=key, value=value)])
    wait(ref.ReconfigVM_Task(spec=spec))


def wait(task: Any) -> None:
    while task.info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
        time.sleep(0.05)
