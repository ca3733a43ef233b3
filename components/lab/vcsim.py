"""The embedded lab's vSphere: vcsim on 127.0.0.1, holding the template the sim stack clones.

vcsim keeps its inventory in memory: start() launches it (recording its pid under .lab/) and
creates a powered-off VM marked as template with one disk on a paravirtual SCSI controller and
one vmxnet3 NIC on the stack's network, like a prepared CentOS template on a real vCenter.
Without the vSphere plugin (no ``pulumi up``), the lab makes the nodes' VMs here itself
(:func:`ensure_vm`), with the guestinfo RepoNode would give them; either way the lab's host
agent (components/lab/hostd.py) runs every powered-on VM of the stack as a QEMU VM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyVmomi import vim

from components.bundle.guestinfo import STACK_MARKER
from components.config import PROJECT_ROOT, Settings
from components.lab.net import LabError
from components.vcenter import preflight

REPO = PROJECT_ROOT
STATE = REPO / ".lab" / "vcsim"
TEMPLATE_DISK_GB = 16
TEMPLATE_GUEST_ID = "otherLinux64Guest"
TEMPLATE_HW_VERSION = "vmx-0"


def _endpoint(s: Settings) -> tuple[str, int]:
    host, _, port = s.vsphere_server.partition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise LabError(
            f"vsphere:vsphereServer {s.vsphere_server!r}: the lab's vcsim is 127.0.0.1 only"
        )
    return "127.0.0.1", int(port or 443)


def _pid_file(state: Path) -> Path:
    return state / "vcsim.pid"


def _is_vcsim(pid: int, listen: str) -> bool:
    """Whether ``pid`` is a vcsim listening on ``listen`` (never a stale pid's new owner)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return Path(argv[0]).name == "vcsim" and listen in argv


def running(state: Path) -> int | None:
    """The pid of the vcsim this state directory started, if it still runs."""
    try:
        pid_text, listen = _pid_file(state).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _is_vcsim(pid, listen) else None


def _wait_ready(s: Settings, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with preflight.connect(s) as si:
                si.RetrieveContent()
                return
        except Exception as exc:  # vcsim still starting: connection refused, HTTP errors
            last = exc
            time.sleep(0.2)
    raise LabError(f"vcsim did not answer on {s.vsphere_server} in time: {last}")


def start(s: Settings, vcsim_bin: str, state: Path) -> bool:
    """Start vcsim unless it runs already; return True when it was started now."""
    if running(state):
        return False
    host, port = _endpoint(s)
    state.mkdir(parents=True, exist_ok=True)
    log = (state / "vcsim.log").open("ab")
    proc = subprocess.Popen(
        [vcsim_bin, "-l", f"{host}:{port}", "-dc", "1", "-cluster", "1", "-vm", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tmp = _pid_file(state).with_suffix(".tmp")
    tmp.write_text(f"{proc.pid} {host}:{port}\n")
    tmp.replace(_pid_file(state))  # whole or not at all
    _wait_ready(s, time.monotonic() + 30)
    return True


def stop(state: Path) -> None:
    pid = running(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    _pid_file(state).unlink(missing_ok=True)


def find(content: Any, kind: type, name: str) -> Any:
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return next((o for o in view.view if o.name == name), None)
    finally:
        view.Destroy()


def wait_task(task: Any) -> Any:
    while task.info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
        time.sleep(0.05)
    if task.info.state != vim.TaskInfo.State.success:
        raise LabError(f"vcsim task failed: {task.info.error}")
    return task.info.result


def _template_spec(s: Settings, datastore: Any, network: Any) -> Any:
    controller = vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
        device=vim.vm.device.ParaVirtualSCSIController(
            key=1000, busNumber=0, sharedBus="noSharing"
        ),
    )
    disk = vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
        fileOperation=vim.vm.device.VirtualDeviceSpec.FileOperation.create,
        device=vim.vm.device.VirtualDisk(
            key=2000,
            controllerKey=1000,
            unitNumber=0,
            capacityInKB=TEMPLATE_DISK_GB * 1024 * 1024,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                diskMode="persistent", thinProvisioned=True
            ),
        ),
    )
    nic = vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
        device=vim.vm.device.VirtualVmxnet3(
            key=4000,
            backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                deviceName=network.name, network=network
            ),
        ),
    )
    return vim.vm.ConfigSpec(
        name=s.template,
        guestId=TEMPLATE_GUEST_ID,
        # vcsim's QueryConfigOption reports hardware version 0 for every VM, and the provider
        # "upgrades" any VM whose version differs from that after each in-place update:
        # vcsim then refuses (AlreadyUpgraded / InvalidPowerState) and the update fails. A
        # template (so its clones) of version 0 agrees with vcsim; a vCenter reports both.
        version=TEMPLATE_HW_VERSION,
        numCPUs=1,
        memoryMB=1024,
        firmware="bios",
        files=vim.vm.FileInfo(vmPathName=f"[{datastore.name}]"),
        deviceChange=[controller, disk, nic],
    )


def create(content: Any, s: Settings, make_spec: Callable[[Any, Any], Any]) -> Any:
    """A VM made in the stack's datacenter and cluster from ``make_spec(datastore, network)``
    (the stack's); LabError naming what vcsim lacks of those."""
    dc = find(content, vim.Datacenter, s.datacenter)
    cluster = find(content, vim.ClusterComputeResource, s.cluster)
    datastore = find(content, vim.Datastore, s.datastore)
    network = find(content, vim.Network, s.network)
    places = (("datacenter", dc), ("cluster", cluster), ("datastore", datastore))
    missing = [n for n, o in (*places, ("network", network)) if o is None]
    if missing:
        raise LabError(f"vcsim lacks the stack's {', '.join(missing)}")
    spec = make_spec(datastore, network)
    return wait_task(dc.vmFolder.CreateVM_Task(config=spec, pool=cluster.resourcePool))


def ensure_template(s: Settings) -> bool:
    """Create the powered-off template VM the stack clones; return True when created now."""
    with preflight.connect(s) as si:
        content = si.RetrieveContent()
        if find(content, vim.VirtualMachine, s.template) is not None:
            return False
        vm = create(content, s, lambda ds, net: _template_spec(s, ds, net))
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            wait_task(vm.PowerOffVM_Task())
        vm.MarkAsTemplate()
        return True


def vm_spec(s: Settings, name: str, datastore: Any, network: Any, extra: dict[str, str]) -> Any:
    spec = _template_spec(s, datastore, network)
    spec.name = name
    spec.numCPUs = s.cpus
    spec.memoryMB = s.memory_mb
    disk = spec.deviceChange[1].device
    disk.capacityInKB = s.disk_gb * 1024 * 1024
    spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in extra.items()]
    return spec


def ensure_vm(s: Settings, name: str, extra: dict[str, str]) -> bool:
    """A VM named ``name`` (the stack's size, ``extra`` as its extraConfig), powered on;
    True when it was created now. An existing VM of that name keeps its extraConfig (its
    guest read it at first boot) and is only powered on."""
    with preflight.connect(s) as si:
        content = si.RetrieveContent()
        vm = find(content, vim.VirtualMachine, name)
        created = vm is None
        if vm is None:
            vm = create(content, s, lambda ds, net: vm_spec(s, name, ds, net, extra))
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
            wait_task(vm.PowerOnVM_Task())
        return created


def set_power(s: Settings, name: str, on: bool) -> bool:
    """Power the VM ``name`` on or off in vcsim (the host agent follows); whether it changed."""
    with preflight.connect(s) as si:
        vm = find(si.RetrieveContent(), vim.VirtualMachine, name)
        if vm is None:
            raise LabError(f"vcsim has no VM {name!r}")
        state = vim.VirtualMachinePowerState
        if vm.runtime.powerState == (state.poweredOn if on else state.poweredOff):
            return False
        wait_task(vm.PowerOnVM_Task() if on else vm.PowerOffVM_Task())
        return True


def extra_config(s: Settings, name: str) -> dict[str, str]:
    """The extraConfig of the VM ``name`` as vcsim holds it now."""
    with preflight.connect(s) as si:
        vm = find(si.RetrieveContent(), vim.VirtualMachine, name)
        if vm is None:
            raise LabError(f"vcsim has no VM {name!r}")
        return {o.key: str(o.value) for o in vm.config.extraConfig or []}


def remove_vms(s: Settings, stack_id: str) -> list[str]:
    """Power off and destroy every VM carrying ``stack_id`` as its stack marker; their names."""
    gone = []
    with preflight.connect(s) as si:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True
        )
        try:
            vms = list(view.view)
        finally:
            view.Destroy()
        for vm in vms:
            extra = {o.key: str(o.value) for o in (vm.config.extraConfig if vm.config else [])}
            if extra.get(STACK_MARKER) != stack_id:
                continue
            if vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn:
                wait_task(vm.PowerOffVM_Task())
            gone.append(vm.name)
            wait_task(vm.Destroy_Task())
    return gone


def power_state(s: Settings, name: str) -> bool:
    """Whether vcsim shows the VM ``name`` powered on."""
    with preflight.connect(s) as si:
        vm = find(si.RetrieveContent(), vim.VirtualMachine, name)
        if vm is None:
            raise LabError(f"vcsim has no VM {name!r}")
        return bool(vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn)
