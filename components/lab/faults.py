"""Faults injected into the embedded lab's VMs, and the reset that undoes all of them.

Why here: breaking a node on purpose is only safe where the node is a VM of this lab; the
drill (:mod:`components.converge.drill`) asks for a fault by name and this module does it.
Two kinds:

- faults of the VM, done from the host, as vSphere would meet them: the VM powered off (its
  QEMU killed: no shutdown, no goodbye), stunned (every vCPU and device frozen) and resumed,
  its NIC's link lost (a cable pulled, the guest sees no carrier);
- faults inside the guest, done through its guest agent (never its network): the NIC taken
  down (the article's own test), a VRRP partition (the peers' addresses pinned to a MAC
  nobody has, so adverts are lost while Ceph on the host stays reachable), sshd or keepalived
  killed, keepalived frozen or stopped.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time

import components.lab.ceph as labceph
import components.lab.vcsim as labvcsim
from components.lab.net import LabError, run
from components.lab.plan import Lab
from components.lab.vmexec import node_run
from components.lab.vms import wait_booted

# a locally administered MAC no lab NIC has: frames sent to it reach nobody
NOWHERE_MAC = "02:00:5e:00:de:ad"
# sshd killed stays dead (its unit would restart it at once): a runtime drop-in, gone at reset
_SSHD_STAYS_DEAD = "/run/systemd/system/ssh.service.d/90-repo-cluster-drill.conf"
# the fault that undoes each fault a scenario may leave behind (the others need no undoing)
UNDO = {
    "nic_down": "nic_up",
    "link_down": "link_up",
    "kill_sshd": "reset_sshd",
    "stop_keepalived": "start_keepalived",
    "power_off": "power_on",
    "stun": "resume",
    "freeze_keepalived": "thaw_keepalived",
}


class LabFaults:
    """The faults of one lab, by name (see :data:`components.converge.scenarios.SCENARIOS`)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nic = lab.settings.interface
        self._foreign: subprocess.Popen[bytes] | None = None

    def sh(self, node: str, script: str, timeout: float = 60) -> str:
        return node_run(self.lab.stack, node, script, check=True, timeout=timeout).stdout

    def _peers(self, node: str) -> list[str]:
        return [str(n.address.ip) for n in self.lab.nodes if n.name != node]

    def _cut(self, node: str) -> str:
        """No frame from ``node`` reaches its peers: each peer's address is pinned to a MAC
        nobody has (a permanent neighbour entry), so its VRRP adverts (unicast in the lab) are
        lost, while Ceph (on the bridge's address) stays reachable."""
        return "; ".join(
            f"ip neigh replace {p} lladdr {NOWHERE_MAC} dev {self.nic} nud permanent"
            for p in self._peers(node)
        )

    def _uncut(self, node: str) -> str:
        cut = f"lladdr {NOWHERE_MAC} "
        return (
            "; ".join(
                f"ip neigh show {p} dev {self.nic} | grep -q {shlex.quote(cut)} && "
                f"ip neigh del {p} dev {self.nic}"
                for p in self._peers(node)
            )
            + "; true"
        )

    # ----------------------------------------------------------------------- VM faults

    def power_off(self, node: str) -> None:
        """The VM's QEMU killed: the host agent then shows it powered off in vcsim."""
        if not self.lab.machine(node).power_off():
            raise LabError(f"{node}: its VM is not running")

    def power_on(self, node: str, wait: bool = True) -> None:
        """Powered on in vcsim, as an operator would; the host agent boots it."""
        machine = self.lab.machine(node)
        started = time.monotonic()
        # a VM whose QEMU died is shown powered off by the agent within a poll: wait for that
        # (or this power-on would be undone by it), unless the agent is booting it already
        while not machine.running() and labvcsim.power_state(self.lab.settings, node):
            if time.monotonic() - started > 30:
                raise LabError(f"{node}: vcsim shows it powered on, but no QEMU runs it")
            time.sleep(0.2)
        if not machine.running():
            labvcsim.set_power(self.lab.settings, node, True)
        if wait:
            wait_booted(self.lab, [node], lambda _: None, started)

    def undo(self, fault: str, node: str) -> None:
        """Undo ``fault`` on ``node`` (nothing for a fault that needs no undoing)."""
        if fault in UNDO:
            self.inject(UNDO[fault], node)

    def inject(self, fault: str, node: str) -> None:
        machine = self.lab.machine(node)
        vm_faults = {
            "power_off": lambda: self.power_off(node),
            "power_on": lambda: self.power_on(node),
            "stun": machine.stun,
            "resume": machine.resume,
            "link_down": lambda: machine.set_link(False),
            "link_up": lambda: machine.set_link(True),
            "reset_sshd": lambda: self.reset_sshd(node),
        }
        if fault in vm_faults:
            vm_faults[fault]()
            return
        image_faults = {
            "no_exclusive_lock": lambda: self._exclusive_lock(False, node),
            "exclusive_lock": lambda: self._exclusive_lock(True, node),
        }
        if fault in image_faults:
            image_faults[fault]()
            return
        both = {"partition": self._cut, "heal": self._uncut}
        if fault in both:
            for n in self.lab.nodes:
                self.sh(n.name, both[fault](n.name))
            return
        scripts = {
            # only the master's adverts are lost: it still hears its peers
            "partition_oneway": self._cut(node),
            # keepalived frozen (a stunned daemon), later thawed: it wakes up MASTER
            "freeze_keepalived": "pkill -STOP -x keepalived",
            "thaw_keepalived": "pkill -CONT -x keepalived",
            "nic_down": f"ip link set {self.nic} down",
            "nic_up": f"ip link set {self.nic} up",
            "kill_sshd": f"mkdir -p {shlex.quote(_SSHD_STAYS_DEAD.rsplit('/', 1)[0])} && "
            f"printf '[Service]\\nRestart=no\\n' > {_SSHD_STAYS_DEAD} && "
            "systemctl daemon-reload && systemctl kill --signal=KILL ssh.service",
            "stop_keepalived": "systemctl stop keepalived",
            "start_keepalived": "systemctl start keepalived",
            "restart_keepalived": "systemctl restart keepalived",
            # every keepalived process at once: no child survives to say goodbye
            "kill_keepalived": "pkill -KILL -x keepalived",
        }
        if fault not in scripts:
            raise LabError(f"unknown lab fault {fault!r}")
        self.sh(node, scripts[fault])

    def _image(self) -> str:
        return f"{self.lab.settings.rbd_pool}/{self.lab.settings.rbd_image}"

    def _exclusive_lock(self, on: bool, master: str) -> None:
        """The image's exclusive-lock feature off (every node released it first: keepalived
        stopped, which unmaps, the ``master`` last so that no BACKUP takes over meanwhile;
        then started again) or back on."""
        rbd = labceph.admin(self.lab, "rbd")
        if on:
            run([*rbd, "feature", "enable", self._image(), "exclusive-lock"])
            return
        for n in sorted(self.lab.nodes, key=lambda n: n.name == master):
            self.sh(n.name, "systemctl stop keepalived", timeout=300)
        run([*rbd, "feature", "disable", self._image(), "exclusive-lock"])
        for n in self.lab.nodes:
            self.sh(n.name, "systemctl start keepalived")

    def foreign_watch(self) -> str:
        """A client that is not a node with the image open: ``rbd watch`` from the host (the
        bridge's address), as the lab's admin; its instance, as Ceph lists it."""
        self.foreign_unwatch()
        before = labceph.watchers(self.lab) or set()
        self._foreign = subprocess.Popen(
            [*labceph.admin(self.lab, "rbd"), "watch", self._image()],
            # `rbd watch` watches until a key is pressed: end of file on its input (DEVNULL)
            # would end it at once, so it gets a pipe nobody writes to
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = (labceph.watchers(self.lab) or set()) - before
            mine = [w for w in new if w.startswith(f"{self.lab.gateway.ip}:")]
            if mine:
                return mine[0]
            time.sleep(0.2)
        self.foreign_unwatch()
        raise LabError("the foreign `rbd watch` never showed as a watcher")

    def foreign_unwatch(self) -> None:
        if self._foreign is not None:
            if self._foreign.stdin is not None:
                self._foreign.stdin.close()  # the key press it waits for
            self._foreign.terminate()
            try:
                self._foreign.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._foreign.kill()
                self._foreign.wait()
            self._foreign = None

    def reset_sshd(self, node: str) -> None:
        """Undo ``kill_sshd``: the unit restarts sshd again, and sshd runs."""
        self.sh(node, f"rm -f {_SSHD_STAYS_DEAD}; systemctl daemon-reload; systemctl start ssh")

    def hold_open(self, node: str, path: str) -> int:
        """A "data mover" on ``node`` holding ``path`` open (fd 3) in its own session."""
        out = self.sh(
            node,
            f"setsid sh -c 'exec 3<{shlex.quote(path)}; exec sleep 600' "
            "</dev/null >/dev/null 2>&1 & echo $!",
        )
        return int(out.split()[-1])

    def keep_writing(self, node: str, path: str) -> int:
        """A data mover on ``node`` rewriting 1 MiB of ``path`` with fsync, again and again
        (a backup job in progress): there is nearly always a write in flight. Its working
        directory is on the volume, so the release's ``fuser -k`` takes it too."""
        d, f = shlex.quote(path.rsplit("/", 1)[0]), shlex.quote(path)
        dd = f"dd if=/dev/zero of={f} bs=64k count=16 conv=notrunc,fsync status=none"
        loop = f"cd {d} || exit 1; while {dd}; do :; done"
        out = self.sh(
            node,
            f"setsid sh -c {shlex.quote(loop)} </dev/null >/dev/null 2>&1 & echo $!",
        )
        return int(out.split()[-1])

    def alive(self, node: str, pid: int) -> bool:
        r = node_run(self.lab.stack, node, f"kill -0 {int(pid)}", timeout=30)
        return r.returncode == 0

    def reset(self) -> None:
        """Every node back to bare-but-ready: powered on and running (resumed, link up), NIC
        up, no partition, sshd running, keepalived thawed and stopped, the volume unmounted
        (holders killed) and unmapped, no VIP, no stray drill process. The next converge starts
        keepalived in priority order."""
        s = self.lab.settings
        mp = shlex.quote(s.mount_point)
        vip = shlex.quote(s.vip.with_prefixlen)
        self.foreign_unwatch()
        info = run([*labceph.admin(self.lab, "rbd"), "info", self._image()]).stdout
        if "exclusive-lock" not in info:  # a no-exclusive-lock drill stopped half-way
            self._exclusive_lock(True)
        for n in self.lab.nodes:
            machine = self.lab.machine(n.name)
            if machine.running():
                machine.resume()
                machine.set_link(True)
            else:
                self.power_on(n.name)
        for n in self.lab.nodes:
            self.sh(
                n.name,
                f"ip link set {self.nic} up; {self._uncut(n.name)}; "
                "pkill -CONT -x keepalived; systemctl stop keepalived >/dev/null 2>&1; "
                "pkill -KILL -x keepalived; "
                # the drill's holders and data movers ([i]: the pattern never matches this shell)
                "pkill -KILL -f '^sleep 600$'; "
                "pkill -KILL -f 'dd [i]f=/dev/zero.*conv=notrunc,fsync'; "
                f"rm -f {_SSHD_STAYS_DEAD}; systemctl daemon-reload; "
                f"if findmnt -rn --mountpoint {mp} >/dev/null; then "
                f"fuser -M -k -m {mp} >/dev/null 2>&1; umount {mp}; fi; "
                'for d in /sys/bus/rbd/devices/*; do [ -e "$d/name" ] && '
                'rbd unmap -o force "/dev/rbd${d##*/}"; done; '
                "rm -f /run/keepalivednotify/promoting; "
                f"ip addr del {vip} dev {self.nic} 2>/dev/null; "
                "systemctl start ssh; true",
            )
        for n in self.lab.nodes:
            left = self.sh(
                n.name, f"findmnt -rn --mountpoint {mp}; ls /sys/bus/rbd/devices 2>/dev/null; true"
            )
            if left.strip():
                raise LabError(f"{n.name}: still mounted or mapped after the reset: {left}")

    def restart_all(self) -> None:
        """``systemctl restart keepalived`` on every node, started together."""
        threads = [
            threading.Thread(
                target=node_run,
                args=(self.lab.stack, n.name, "systemctl restart keepalived"),
                kwargs={"timeout": 60},
            )
            for n in self.lab.nodes
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
