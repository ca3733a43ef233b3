"""Faults injected into the embedded lab's nodes, and the reset that undoes all of them.

Why here: breaking a node on purpose (its NIC down, sshd or keepalived killed, every process
killed) is only safe where the node is a namespace on this machine; the drill
(:mod:`components.converge.drill`) asks for a fault by name and this module does it with the
node's own tools (``nsenter`` via :func:`node_run`). Each node has its own PID namespace, so
what a fault lists and kills inside a node is that node's, as on a VM: nothing of the host or
of the other node can be signalled. The node's init (PID 1, tini, and the ``sleep infinity``
it watches) is spared, so the node can be reset without being rebuilt.
"""

from __future__ import annotations

import shlex

from components.lab.net import LabError, node_run
from components.lab.plan import Lab

# a locally administered MAC no lab NIC has: frames sent to it reach nobody
NOWHERE_MAC = "02:00:5e:00:de:ad"

# the node's init and the child it watches: spared by every kill (see the module doc)
_NOT_INIT = (
    '[ "$p" = 1 ] && continue; '
    '[ "$(tr "\\0" " " < /proc/$p/cmdline 2>/dev/null)" = "sleep infinity " ] && continue; '
)
# pids of the node's processes, except this shell and the init
_NODE_PIDS = (
    'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue; '
    f'{_NOT_INIT}echo "$p"; done'
)


def _node_pids_named(comm: str) -> str:
    return f'for p in $(pgrep -x {shlex.quote(comm)}); do {_NOT_INIT}echo "$p"; done'


class LabFaults:
    """The faults of one lab, by name (see :data:`components.converge.scenarios.SCENARIOS`)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nic = lab.settings.interface

    def sh(self, node: str, script: str, timeout: float = 60) -> str:
        return node_run(self.lab.stack, node, script, check=True, timeout=timeout).stdout

    def _peers(self, node: str) -> list[str]:
        return [str(n.address.ip) for n in self.lab.nodes if n.name != node]

    def _cut(self, node: str) -> str:
        """No frame from ``node`` reaches its peers: each peer's address is pinned to a MAC
        nobody has (a permanent neighbour entry), so its VRRP adverts (unicast in the lab) are
        dropped by the peers' NICs, while Ceph (on the bridge's address) stays reachable. A
        blackhole route would not do: keepalived's VRRP socket bypasses the routing table."""
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

    def inject(self, fault: str, node: str) -> None:
        both = {
            # VRRP dropped both ways: every node stops reaching every other
            "partition": self._cut,
            "heal": self._uncut,
        }
        if fault in both:
            for n in self.lab.nodes:
                self.sh(n.name, both[fault](n.name))
            return
        scripts = {
            # only the master's adverts are lost: it still hears its peers
            "partition_oneway": self._cut(node),
            # keepalived frozen (a stunned VM's daemon), later thawed: it wakes up MASTER
            "freeze_keepalived": f"kill -STOP $({_node_pids_named('keepalived')})",
            "thaw_keepalived": f"kill -CONT $({_node_pids_named('keepalived')})",
            "nic_down": f"ip link set {self.nic} down",
            "nic_up": f"ip link set {self.nic} up",
            "kill_sshd": "kill -9 $(cat /run/sshd.pid)",
            "stop_keepalived": "systemctl stop keepalived",
            "start_keepalived": "systemctl start keepalived",
            "restart_keepalived": "systemctl restart keepalived",
            # every keepalived process at once: no child survives to say goodbye
            "kill_keepalived": f"kill -9 $({_node_pids_named('keepalived')})",
            # every process of the node, then its NIC, and the VIP with it (a dead VM's address
            # answers nobody); the lab's shared kernel keeps the node's mount, which the
            # peer's fence has made unwritable
            "crash": f"kill -9 $({_NODE_PIDS}) 2>/dev/null; ip link set {self.nic} down; "
            f"ip addr del {self.lab.settings.vip.with_prefixlen} dev {self.nic} 2>/dev/null; true",
        }
        if fault not in scripts:
            raise LabError(f"unknown lab fault {fault!r}")
        self.sh(node, scripts[fault])

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
        r = node_run(self.lab.stack, node, f"{_NODE_PIDS}", timeout=30)
        return str(pid) in r.stdout.split()

    def reset(self) -> None:
        """Every node back to bare-but-ready: NIC up, no partition, sshd running (its stale
        sessions gone), keepalived thawed and stopped, the volume unmounted (holders killed),
        no VIP, no stray drill process. The next converge starts keepalived in priority
        order."""
        s = self.lab.settings
        mp = shlex.quote(s.mount_point)
        vip = shlex.quote(s.vip.with_prefixlen)
        for n in self.lab.nodes:
            self.sh(
                n.name,
                f"ip link set {self.nic} up; {self._uncut(n.name)}; "
                f'p=$({_node_pids_named("keepalived")}); [ -n "$p" ] && kill -CONT $p; '
                "systemctl stop keepalived >/dev/null 2>&1; "
                f'p=$({_node_pids_named("keepalived")}); [ -n "$p" ] && kill -9 $p; '
                f"for p in $({_node_pids_named('sleep')}); do kill -9 $p; done; "
                # sessions left by clients that lost the VIP count against MaxStartups
                f"for p in $({_node_pids_named('sshd')}); do "
                '[ "$p" = "$(cat /run/sshd.pid 2>/dev/null)" ] || kill -9 $p; done; '
                f"if findmnt -rn --mountpoint {mp} >/dev/null; then "
                f"fuser -M -k -m {mp} >/dev/null 2>&1; umount {mp}; fi; "
                f"ip addr del {vip} dev {self.nic} 2>/dev/null; "
                "systemctl start ssh; true",
            )
        for n in self.lab.nodes:
            left = self.sh(n.name, f"findmnt -rn --mountpoint {mp} || true")
            if left.strip():
                raise LabError(f"{n.name}: {s.mount_point} still mounted after the reset")

    def restart_all(self) -> None:
        """``systemctl restart keepalived`` on every node, started together."""
        import subprocess

        from components.lab.net import node_argv, node_env

        procs = [
            subprocess.Popen(
                node_argv(self.lab.stack, n.name, ["systemctl", "restart", "keepalived"]),
                env=node_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n in self.lab.nodes
        ]
        for p in procs:
            p.wait(timeout=60)
