"""The lab's ESXi: runs, as QEMU VMs, the VMs vcsim says are powered on, and answers them.

Why: vcsim is only vCenter's API; nothing runs behind it. This agent is the hypervisor behind
the lab's vcsim, so that what ``pulumi up`` (or the Fabric path's lab-up) does in vcsim
happens to real machines: a VM of the stack that is powered on in vcsim boots as a QEMU VM
with the hardware vcsim describes (vCPUs, memory, disk size, MAC, BIOS UUID) and reads its
guestinfo from vcsim; a VM powered off or destroyed in vcsim stops; a replaced VM (a new
UUID) gets a fresh disk. And the other way: a VM whose QEMU exits (the guest powered off, or
the drill pulled its plug) is powered off in vcsim, as vCenter would show it.

It also serves, on the lab bridge's address only:

- each VM's guestinfo channel (components/lab/guestrpc.py): ``info-get guestinfo.KEY`` reads
  the VM's extraConfig from vcsim, ``info-set`` writes it, as VMware Tools' RPC does;
- the packages a first boot installs (components/lab/image.py), over HTTP.

One agent per lab stack: ``python -m components.lab.hostd STACK``, started and stopped by
components/lab/agentctl.py (the VMs are separate processes: the agent may restart without
touching them). Every action is one line in ``.lab/<stack>/hostd.log``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

import components.lab.guestrpc as guestrpc
import components.lab.image as labimage
import components.lab.inventory as inv
import components.lab.net as labnet
from components.lab.inventory import VmView
from components.lab.plan import APT_PORT, Lab, hostd_log, load_lab, stack_id
from components.lab.qemu import Hardware
from components.vcenter.preflight import connect

POLL = 1.0


def _disk_owner(disk: Path) -> Path:
    """Beside a VM's disk: the managed object id of the VM it belongs to."""
    return disk.with_suffix(".moid")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _drop_disk(disk: Path) -> None:
    disk.unlink(missing_ok=True)
    _disk_owner(disk).unlink(missing_ok=True)


def _moid(ref: Any) -> str:
    """A VM's managed object id in vcsim (``vm-42``)."""
    return str(ref._moId)


class Agent:
    """The reconcile loop, the guestinfo channels and the package server of one lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.image = labimage.Image(Path(lab.image_file.read_text().strip()))
        self.log_file = hostd_log(lab).open("a", buffering=1)
        self.vc_lock = threading.Lock()
        self.si: Any = None
        self._session = contextlib.ExitStack()
        # node name -> (uuid, managed object id) of the VM its QEMU runs: vcsim derives a
        # clone's UUID from its name, so a replaced VM has the old one's UUID; only its id
        # tells it is another VM
        self.owners: dict[str, tuple[str, str]] = {}
        self.stopping = threading.Event()
        self._said: set[str] = set()
        self._stack_mtime: float | None = None

    def say(self, message: str) -> None:
        self.log_file.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def _once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.say(message)

    # ----------------------------------------------------------------------- vcsim

    def _call(self, fn: Any) -> Any:
        """A vcsim call under the lock; one reconnect when the session is gone."""
        with self.vc_lock:
            for attempt in (1, 2):
                if self.si is None:
                    self.si = self._session.enter_context(connect(self.lab.settings))
                try:
                    return fn(self.si)
                except (vim.fault.NotAuthenticated, OSError):
                    if attempt == 2:
                        raise
                    self.si = None
                    with contextlib.suppress(Exception):
                        self._session.close()
                    self._session = contextlib.ExitStack()
        raise AssertionError("unreachable")

    def _ours(self) -> dict[str, VmView]:
        """The stack's VMs in vcsim the agent runs or may start: its nodes' (and the server a
        node adopts), and a VM it already runs whose node left the stack file (as on a
        vCenter, that VM runs on until it is powered off or deleted: ``pulumi up`` retires it
        first)."""
        mine = stack_id(self.lab)
        nodes = {n.name for n in self.lab.nodes}
        # a server the stack adopts carries no marker until `pulumi up` imported it
        adopted = {n.name for n in self.lab.settings.nodes if n.adopt}
        ours = {}
        vms = self._call(inv.collect)
        for v in (v for v in vms if v.marker == mine or (not v.marker and v.name in adopted)):
            if v.name in nodes or self.owners.get(v.name, ("",))[0] == v.uuid:
                ours[v.uuid] = v
            else:
                self._once(f"ignored VM {v.name} ({v.uuid}): no node of that name in the lab")
        return ours

    # ----------------------------------------------------------------------- reconcile

    def _follow_the_stack(self) -> None:
        """A node added to the stack file is one the agent runs from its next look on, as a
        vCenter takes a new VM: the lab is not rebuilt. One removed runs on until vcsim powers
        its VM off or deletes it (:meth:`_ours`)."""
        mtime = self.lab.stack_file.stat().st_mtime
        if mtime != self._stack_mtime:
            if self._stack_mtime is not None:
                self.lab = load_lab(self.lab.stack)
                self.say(f"stack file changed: nodes {', '.join(n.name for n in self.lab.nodes)}")
            self._stack_mtime = mtime

    def reconcile(self) -> None:
        self._follow_the_stack()
        views = self._ours()
        exited: set[str] = set()
        # machines whose VM is gone, powered off or replaced stop first (a replacement reuses
        # the node's name, address and tap)
        for name, (uuid, moid) in list(self.owners.items()):
            machine = self.lab.machine(name, uuid)
            view = views.get(uuid)
            replaced = view is not None and _moid(view.ref) != moid
            if replaced:
                view = None  # the VM this QEMU ran is gone: the view is its replacement
            if view is None or not view.powered_on:
                if machine.power_off():
                    why = "replaced" if replaced else "destroyed" if view is None else "powered off"
                    self.say(f"{name}: stopped QEMU ({why} in vcsim, uuid {uuid})")
                del self.owners[name]
                if view is None:
                    _drop_disk(machine.disk)
            elif not machine.running():
                self.say(f"{name}: QEMU exited; powering the VM off in vcsim (uuid {uuid})")
                del self.owners[name]
                self._call(lambda _si, v=view: inv.wait(v.ref.PowerOffVM_Task()))
                exited.add(uuid)
        for view in views.values():
            if not view.powered_on or view.uuid in exited:
                continue
            if view.name in self.owners:
                if self.owners[view.name][0] != view.uuid:
                    self._once(f"{view.name}: two powered-on VMs of that name; {view.uuid} waits")
                continue
            self._start(view)
        for disk in self.lab.vm_disks():
            if disk.stem not in views:
                _drop_disk(disk)

    def _start(self, view: VmView) -> None:
        node = self.lab.node(view.name)
        machine = self.lab.machine(view.name, view.uuid)
        hw = view.hardware
        if not hw.mac:
            hw = Hardware(hw.uuid, hw.cpus, hw.memory_mb, hw.disk_gb, node.mac)
        labnet.ensure_tap(node.tap, self.lab.bridge)
        # the disk is the VM's: one replaced between two looks (the old one seen powered off,
        # then the new one, same UUID, powered on) gets a fresh one, as a new VM does
        moid, owner = _moid(view.ref), _disk_owner(machine.disk)
        if machine.disk.exists() and _read(owner) != moid:
            _drop_disk(machine.disk)
        pid = machine.start(hw, self.image, node.tap, self.lab.apt_url)
        owner.write_text(moid + "\n")
        self.owners[view.name] = (view.uuid, moid)
        (machine.run_dir / "uuid").write_text(view.uuid + "\n")
        self.say(
            f"{view.name}: powered on in vcsim: QEMU pid {pid}, {hw.cpus} vCPU, "
            f"{hw.memory_mb} MB, {hw.disk_gb} GB disk, {hw.mac} on {node.tap} (uuid {view.uuid})"
        )
        self._channel(view.name, view.uuid, view.ref)

    def adopt(self) -> None:
        """Machines already running (an agent restarted) keep running, recorded as before."""
        views = self._ours()
        for node in self.lab.nodes:
            try:
                uuid = (self.lab.machine(node.name).run_dir / "uuid").read_text().strip()
            except OSError:
                continue
            machine = self.lab.machine(node.name, uuid)
            if machine.running() and uuid in views:
                self.owners[node.name] = (uuid, _moid(views[uuid].ref))
                self.say(f"{node.name}: adopted running QEMU pid {machine.pid()}")
                self._channel(node.name, uuid, views[uuid].ref)

    # ----------------------------------------------------------------------- guestinfo

    def _channel(self, name: str, uuid: str, ref: Any) -> None:
        def get(key: str) -> str | None:
            return self._call(lambda _si: inv.extra_config(ref).get(key))

        def put(key: str, value: str) -> None:
            self._call(lambda _si: inv.set_extra_config(ref, key, value))
            self.say(f"{name}: the guest set {key} ({len(value)} bytes)")

        def wanted() -> bool:
            return not self.stopping.is_set() and self.owners.get(name) == (uuid, _moid(ref))

        sock = self.lab.machine(name, uuid).rpc_sock
        threading.Thread(
            target=guestrpc.serve, args=(sock, get, put, wanted), name=f"rpc-{name}", daemon=True
        ).start()

    # ----------------------------------------------------------------------- run

    def serve_packages(self) -> http.server.ThreadingHTTPServer:
        handler = functools.partial(_QuietHandler, directory=str(self.image.apt))
        server = http.server.ThreadingHTTPServer((str(self.lab.gateway.ip), APT_PORT), handler)
        threading.Thread(target=server.serve_forever, name="apt", daemon=True).start()
        return server

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        server = self.serve_packages()
        self.say(f"agent up: packages on {self.lab.apt_url}")
        self.adopt()
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception as e:  # vcsim restarting, a VM that would not start: said, retried
                self._once(f"reconcile: {type(e).__name__}: {e}")
            self.stopping.wait(POLL)
        server.shutdown()
        self.say("agent stopped (the VMs run on)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m components.lab.hostd STACK", file=sys.stderr)
        return 2
    Agent(load_lab(argv[0])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
