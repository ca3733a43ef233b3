"""The embedded lab's vSphere: vcsim on 127.0.0.1, holding the template the sim stack clones.

vcsim keeps its inventory in memory: start() launches it (recording its pid under .lab/) and
creates a powered-off VM marked as template with one disk on a paravirtual SCSI controller and
one vmxnet3 NIC on the stack's network, like a prepared CentOS template on a real vCenter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

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


def ensure_template(s: Settings) -> bool:
    """Create the powered-off template VM the stack clones; return True when created now."""
    with preflight.connect(s) as si:
        content = si.RetrieveContent()
        if find(content, vim.VirtualMachine, s.template) is not None:
            return False
        dc = find(content, vim.Datacenter, s.datacenter)
        cluster = find(content, vim.ClusterComputeResource, s.cluster)
        datastore = find(content, vim.Datastore, s.datastore)
        network = find(content, vim.Network, s.network)
        missing = [
            n
            for n, o in (("datacenter", dc), ("cluster", cluster), ("datastore", datastore))
            if o is None
        ] + (["network"] if network is None else [])
        if missing:
            raise LabError(f"vcsim lacks the stack's {', '.join(missing)}")
        vm = wait_task(
            dc.vmFolder.CreateVM_Task(
                config=_template_spec(s, datastore, network), pool=cluster.resourcePool
            )
        )
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            wait_task(vm.PowerOffVM_Task())
        vm.MarkAsTemplate()
        return True
