"""One lab VM: a QEMU process (software emulation) booting the lab image, and how to reach it.

Why QEMU's TCG: this machine kind's ``/dev/kvm`` is nested paravirtualisation that stock
kernels stall in, so every VM is emulated (``-accel tcg``); ``-cpu qemu64`` because TCG runs
plain x86-64 code far faster than the extensions ``-cpu max`` would make glibc use.

A VM is what vSphere would give a repo node: its own kernel (krbd ``rbd map``), systemd as
PID 1, one disk (a copy-on-write overlay on the lab image, sized as the VM's disk), one NIC on
the lab's bridge (a tap) behind a PCIe root port in slot 160 (the guest names it ``ens160``, as
a vmxnet3 in a vSphere VM's slot 160), SMBIOS that says VMware (cloud-init's VMware datasource
asks) and the VM's BIOS UUID. Three local sockets, in the VM's run directory:

- ``qmp.sock``: QEMU's monitor (QMP): the NIC's link, status;
- ``qga.sock``: the QEMU guest agent in the VM: the lab runs commands in the guest through it,
  without the guest's network (what VMware Tools' guest operations are to vSphere);
- ``rpc.sock``: the guestinfo channel the image's ``vmware-rpctool`` talks over, answered by the
  lab's host agent (components/lab/hostd.py) from the VM's extraConfig in vcsim.

Faults are a VM's: power off (SIGKILL of QEMU), stun (SIGSTOP, later SIGCONT: every vCPU and
device frozen, as a stunned VM), the NIC's link down (QMP ``set_link``: a cable pulled).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from components.lab.image import Image
from components.lab.net import LabError, run

# qemu.qmp logs every failed read of a stunned VM's socket as an ERROR (dozens a second); the
# failure reaches the caller as a LabError, which says it once
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

QEMU = "qemu-system-x86_64"
NIC_ID = "nic0"
NIC_SLOT = 160  # the PCIe slot a vSphere VM's first NIC sits in: the guest calls it ens160
SMBIOS = "manufacturer=VMware,, Inc.,product=VMware Virtual Platform"  # ",," is a comma
KERNEL_ARGS = ("root=/dev/vda", "rw", "console=ttyS0", "quiet", "ipv6.disable=1")


@dataclass(frozen=True)
class Hardware:
    """What the VM is, as vSphere describes it (vcsim's VM config)."""

    uuid: str
    """BIOS UUID (SMBIOS), the VM's ``config.uuid``."""
    cpus: int
    memory_mb: int
    disk_gb: int
    mac: str


@dataclass(frozen=True)
class Machine:
    """A lab VM's files: ``run_dir`` (sockets, pid, console) and ``disk`` (its overlay)."""

    name: str
    run_dir: Path
    disk: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def qmp_sock(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def qga_sock(self) -> Path:
        return self.run_dir / "qga.sock"

    @property
    def rpc_sock(self) -> Path:
        return self.run_dir / "rpc.sock"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.log"

    # ----------------------------------------------------------------------- process

    def pid(self) -> int | None:
        """QEMU's pid, only while that process is this VM's QEMU (never a reused pid)."""
        with suppress(OSError, ValueError, IndexError):  # IndexError: QEMU still writing it
            pid = int(self.pid_file.read_text().split()[0])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if str(self.pid_file).encode() in argv and not _zombie(pid):
                return pid
        return None

    def running(self) -> bool:
        return self.pid() is not None

    def argv(self, hw: Hardware, image: Image, tap: str, apt_url: str) -> list[str]:
        append = " ".join((*KERNEL_ARGS, f"repo_cluster.apt={apt_url}"))
        serial = f"VMware-{hw.uuid.replace('-', '')}"
        return [
            QEMU,
            *("-name", f"{self.name},process=qemu-{self.name}"),
            *("-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "qemu64"),
            *("-smp", str(hw.cpus), "-m", str(hw.memory_mb)),
            *("-nodefaults", "-no-user-config", "-display", "none"),
            *("-serial", f"file:{self.console}"),
            # native PCIe hotplug: the root port's slot number reaches the guest (ens160)
            *("-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"),
            *("-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append),
            *("-drive", f"file={self.disk},if=none,id=disk0,format=qcow2,cache=unsafe"),
            *("-device", "virtio-blk-pci,drive=disk0"),
            *("-device", f"pcie-root-port,id=port{NIC_SLOT},slot={NIC_SLOT},chassis=1"),
            *("-netdev", f"tap,id={NIC_ID},ifname={tap},script=no,downscript=no"),
            *("-device", f"virtio-net-pci,netdev={NIC_ID},mac={hw.mac},bus=port{NIC_SLOT}"),
            *("-device", "virtio-rng-pci"),
            *("-device", "virtio-serial-pci"),
            *("-chardev", f"socket,id=qga,path={self.qga_sock},server=on,wait=off"),
            *("-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"),
            *("-chardev", f"socket,id=rpc,path={self.rpc_sock},server=on,wait=off"),
            *("-device", "virtserialport,chardev=rpc,name=org.repo-cluster.guestrpc"),
            *("-qmp", f"unix:{self.qmp_sock},server=on,wait=off"),
            *("-smbios", f"type=1,{SMBIOS},serial={serial},uuid={hw.uuid}"),
            *("-pidfile", str(self.pid_file), "-daemonize"),
        ]

    def start(self, hw: Hardware, image: Image, tap: str, apt_url: str) -> int:
        """Power on: the overlay (made on first power-on, kept across power cycles), then QEMU,
        daemonized (it outlives whoever started it). Returns QEMU's pid."""
        if self.running():
            raise LabError(f"{self.name}: already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.disk.exists():
            self.disk.parent.mkdir(parents=True, exist_ok=True)
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk),
                 "-F", "qcow2", str(self.disk), f"{hw.disk_gb}G"])  # fmt: skip
        for sock in (self.qmp_sock, self.qga_sock, self.rpc_sock):
            sock.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        run(self.argv(hw, image, tap, apt_url), timeout=60)
        pid = self.pid()
        if pid is None:
            raise LabError(f"{self.name}: QEMU did not start (see {self.console})")
        return pid

    def power_off(self, wait: float = 10.0) -> bool:
        """Pull the plug (SIGKILL, after a SIGCONT should it be stunned); whether it ran."""
        pid = self.pid()
        if pid is None:
            return False
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + wait
        while Path(f"/proc/{pid}").exists() and not _zombie(pid):
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: QEMU pid {pid} survived SIGKILL")
            time.sleep(0.05)
        return True

    def stun(self) -> None:
        """Freeze the whole VM (every vCPU, timer and device) until :meth:`resume`."""
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        pid = self.pid()
        if pid is None:
            raise LabError(f"{self.name}: not running")
        return pid

    # ----------------------------------------------------------------------- QMP

    def qmp(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        return _run(_execute(self.qmp_sock, command, arguments, timeout, negotiate=True))

    def set_link(self, up: bool) -> None:
        """The NIC's link, as the guest sees its carrier (a cable plugged or pulled)."""
        self.qmp("set_link", name=NIC_ID, up=up)

    # ----------------------------------------------------------------------- guest agent

    def guest(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        """One guest agent command (``guest-*``); raises LabError when the guest is not there."""
        return _run(_execute(self.qga_sock, command, arguments, timeout, negotiate=False))

    def guest_ready(self) -> bool:
        with suppress(LabError):
            self.guest("guest-ping", timeout=3)
            return True
        return False

    def exec(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the guest as root (the guest agent's ``guest-exec``), wait for it,
        return its exit status and output. Raises LabError when the guest does not answer or
        the command outlives ``timeout`` (it is then killed in the guest)."""
        deadline = time.monotonic() + timeout
        args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        if input is not None:
            args["input-data"] = base64.b64encode(input.encode()).decode()
        pid = self.guest("guest-exec", timeout=min(timeout, 15.0), **args)["pid"]
        pause = 0.02
        while True:
            left = deadline - time.monotonic()
            status = self.guest("guest-exec-status", timeout=max(1.0, min(left, 15.0)), pid=pid)
            if status.get("exited"):
                break
            if left <= 0:
                with suppress(LabError):
                    self.guest("guest-exec", path="kill", arg=["-9", str(pid)], timeout=5)
                raise LabError(f"{self.name}: `{' '.join(argv)}` did not finish within {timeout}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        code = status.get("exitcode", 128 + int(status.get("signal", 0)))
        return subprocess.CompletedProcess(
            list(argv), code, _b64(status.get("out-data")), _b64(status.get("err-data"))
        )


def _b64(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _guest_sync(client: QMPClient) -> None:
    """The guest agent's resync: a former client's unread replies (a killed caller's) carry
    the ids a fresh client numbers from again; ``guest-sync`` with a random value, until it
    comes back, reads them away (QEMU's own qemu-ga-client does the same)."""
    for _ in range(16):
        token = secrets.randbelow(2**31)
        if await client.execute("guest-sync", {"id": token}) == token:
            return
    raise LabError("the guest agent's replies never came back in step")


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro`` on a loop of its own: unlike asyncio.run, this leaves the thread's current
    event loop alone (asyncio.run unsets it, and Pulumi's runtime, in the same process under
    the tests, needs one)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _execute(
    sock: Path, command: str, arguments: dict[str, Any], timeout: float, *, negotiate: bool
) -> Any:
    """One command on a QMP (``negotiate``) or guest agent socket, within ``timeout``. A fresh
    client each time: its replies are matched by id, anything a former client left unread is
    dropped; the socket serves one client at a time, so callers queue here."""
    client = QMPClient(sock.parent.name)
    client.await_greeting = negotiate
    client.negotiate = negotiate
    try:
        async with asyncio.timeout(timeout):
            await client.connect(str(sock))
            if not negotiate:
                await _guest_sync(client)
            return await client.execute(command, arguments or None)
    except TimeoutError:
        raise LabError(f"{sock}: no answer to {command} within {timeout:.0f}s") from None
    except Exception as e:  # connection refused, QMP error: the VM is not there or said no
        raise LabError(f"{sock}: {command}: {e}") from None
    finally:
        with suppress(Exception):
            await client.disconnect()
