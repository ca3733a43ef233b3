"""The embedded lab's nodes: bare servers in network namespaces, reached over real SSH.

``lab_up(stack)`` builds, from ``Pulumi.<stack>.yaml``, one bare node per stack node; a Fabric
converge then turns them into repo nodes exactly as it would real VMs. ``lab_down(stack)``
removes everything. sshd, keepalived, mount, XFS and Ceph are the real programs; the stand-ins are
``scripts/node/lab-systemctl`` (nodes have no systemd) and, in its rbd unit, rbd-fuse plus a
loop device for the kernel's ``rbd map`` (this kernel has no rbd module).

Topology of the sim stack (addresses from the stack file; all inside 198.18.0.0/15)::

    host (operator / Veeam side): Fabric, ssh, probes
      |
      | 198.18.50.1/24  (gateway)
    +-+----------------------------- bridge rc-br-sim ---------------------------+
    |          |  rc-sim-repo1 (veth)                     |  rc-sim-repo2 (veth)   |
    +----------|------------------------------------------|------------------------+
    netns repo1|                               netns repo2|
    +----------+------------------------+     +-----------+-----------------------+
    | ens160 198.18.50.161/24           |     | ens160 198.18.50.162/24           |
    | (+ VIP 198.18.50.160 on MASTER)   |     | (+ VIP 198.18.50.160 on MASTER)   |
    | no default route, IPv6 disabled   |     | no default route, IPv6 disabled   |
    | own mount, UTS, PID ns (tini):    |     | own mount, UTS, PID ns (tini):    |
    |  /etc/{ssh,keepalived,ceph,...}   |     |  /etc/{ssh,keepalived,ceph,...}   |
    |  /usr/local/bin /root /run        |     |  /usr/local/bin /root /run        |
    |  /mnt/veeamrepo  systemctl (lab)  |     |  /mnt/veeamrepo  systemctl (lab)  |
    | sshd on :22 (own host keys)       |     | sshd on :22 (own host keys)       |
    | own /dev: rbd-fuse -> /dev/loopN  |     | own /dev: rbd-fuse -> /dev/loopN  |
    +-----------------+-----------------+     +-----------------+-----------------+
                      |   each node's own Ceph client (its IP)  |
                      +--> ceph-mon + memstore ceph-osd on 198.18.50.1 (host, cephx)
                           pool rbd, image veeamrepo: XFS "veeamrepo", exclusive-lock

Made: .lab/<stack>/ (node directories, ceph/, state.json), /run/repo-cluster/<stack>/ (the
nodes' /run and /tmp, namespace files, Ceph pid files), the operator key (.lab/ssh/) when
missing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from components.lab import ceph as labceph
from components.lab import dns as labdns
from components.lab import net as labnet
from components.lab import node as labnode
from components.lab import procs as labprocs
from components.lab.net import LabError, node_argv, node_exec, node_run
from components.lab.plan import REPO, Lab, LabNode, State, load_lab

__all__ = [
    "REPO",
    "Lab",
    "LabError",
    "LabNode",
    "lab_down",
    "lab_up",
    "load_lab",
    "node_argv",
    "node_exec",
    "node_run",
]

TOOLS = (
    *("ip", "nsenter", "unshare", "mount", "umount", "findmnt", "setsid", "sysctl", "tini"),
    *("sshd", "ssh-keygen", "keepalived", "mkfs.xfs", "losetup", "blkid", "findfs", "mknod"),
    *labceph.TOOLS,
)
Say = Callable[[str], None]


# --------------------------------------------------------------------------- checks


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces, loop devices)")
    missing = [t for t in TOOLS if shutil.which(t, path=labnet.NODE_PATH) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run scripts/install-deps")


def leftovers(lab: Lab) -> list[str]:
    """What exists of this stack's lab, found by name (with or without a state file)."""
    found = [f"netns {n.netns}" for n in lab.nodes if labnet.netns_exists(n.netns)]
    found += [f"namespace file {f}" for f in lab.ns_files() if labnet.is_mountpoint(f)]
    found += [f"link {v}" for v in (n.veth for n in lab.nodes) if labnet.link_exists(v)]
    if labnet.link_exists(lab.bridge):
        found.append(f"bridge {lab.bridge}")
    found += [f"loop device {d}" for d in labnode.loops_of(lab)]
    found += labceph.leftovers(lab)
    found += [f"{p}" for p in (lab.runtime, *lab.made_paths()) if p.exists()]
    return found


def health(lab: Lab) -> list[str]:
    """Why this stack's lab is not (completely) up; empty when it is. sshd is not checked."""
    state = State.load(lab)
    if state is None or not state.complete:
        return ["no complete lab (state file missing or lab-up unfinished)"]
    problems: list[str] = []
    if not labnet.link_exists(lab.bridge):
        problems.append(f"bridge {lab.bridge} missing")
    if not labceph.healthy(lab):
        problems.append("the lab's Ceph is not running (or lost the image)")
    for n in lab.nodes:
        files = labnet.ns_files(lab.stack, n.name)
        if not all(labnet.is_mountpoint(f) for f in files.values()):
            problems.append(f"node {n.name}: namespace missing")
            continue
        if not labprocs.init_alive(lab, n):
            problems.append(f"node {n.name}: its init is gone (the node cannot run anything)")
            continue
        addr = labnet.run(
            ["ip", "-n", n.netns, "-4", "-o", "addr", "show", "dev", lab.settings.interface],
            check=False,
        )
        if f" {n.address} " not in addr.stdout:
            problems.append(f"node {n.name}: {lab.settings.interface} lacks {n.address}")
    return problems


@contextmanager
def _locked(lab: Lab) -> Iterator[None]:
    """One lab-up/lab-down per stack at a time (an advisory lock on the stack file)."""
    with open(lab.stack_file, encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- up


def lab_up(stack: str, *, repo: Path = REPO, say: Say = print) -> bool:
    """Build the stack's lab nodes. Idempotent: returns False (changing nothing but a stopped
    sshd) when the lab is already up. On failure, removes what it made and re-raises."""
    lab = load_lab(stack, repo)
    _require_root_and_tools()
    with _locked(lab):
        if not health(lab):
            for n in lab.nodes:
                if not labnode.sshd_active(lab, n):
                    labnode.start_sshd(lab, n)
                    say(f"lab {stack}: started sshd on {n.name}")
            _dns_up(lab, repo, say)
            nodes = ", ".join(n.name for n in lab.nodes)
            say(f"lab {stack} is up (nodes: {nodes}); nothing to do")
            return False
        found = leftovers(lab)
        if found:
            say(f"lab {stack}: removing leftovers of an earlier lab: {', '.join(found)}")
            _teardown(lab, say)
        state = State(stack=stack)
        try:
            _build(lab, state, say)
            _dns_up(lab, repo, say)
        except BaseException:
            say(f"lab {stack}: lab-up failed, removing what it made")
            try:
                _teardown(lab, say)
            except LabError as exc:
                say(f"lab {stack}: cleanup after the failure was incomplete: {exc}")
            raise
    return True


def _build(lab: Lab, state: State, say: Say) -> None:
    state.made_lab_root = not lab.dir.parent.exists()
    state.save(lab)
    if not lab.key_file.parent.exists():
        state.made_key_dir = str(lab.key_file.parent)
    if labnode.ensure_operator_key(lab.key_file):
        say(f"lab {lab.stack}: generated operator key {lab.key_file}")
    state.save(lab)
    operator_pub = lab.key_file.with_name(lab.key_file.name + ".pub").read_text()

    labnet.make_bridge(lab.bridge, lab.gateway)
    say(f"lab {lab.stack}: {labceph.up(lab)}")
    ns = labnet.ns_dir(lab.stack)
    ns.mkdir(parents=True, exist_ok=True)
    labnet.run(["mount", "--bind", str(ns), str(ns)])
    labnet.run(["mount", "--make-private", str(ns)])
    state.host_paths = labnode.ensure_host_targets(lab)
    state.save(lab)

    for n in lab.nodes:
        labnet.make_netns(n.netns)
        labnet.plug_node(n.netns, lab.settings.interface, n.address, n.veth, lab.bridge)
        labnode.write_node_tree(lab, n, operator_pub)
        labnode.make_mount_ns(lab, n)
        state.init_pids[n.name] = labprocs.start_init(lab, n)
        state.save(lab)
        state.sshd_pids[n.name] = labnode.start_sshd(lab, n)
        state.save(lab)
        pid = state.sshd_pids[n.name]
        say(f"lab {lab.stack}: node {n.name} {n.address} on {lab.bridge}, sshd pid {pid}")
    state.complete = True
    state.save(lab)
    say(f"lab {lab.stack} is up: ssh -i {lab.key_file} root@<node ip>")


# --------------------------------------------------------------------------- down


def lab_down(stack: str, *, repo: Path = REPO, say: Say = print) -> bool:
    """Remove everything the stack's lab made; safe to repeat. Returns whether anything was
    there to remove. Raises LabError naming anything that would not go."""
    lab = load_lab(stack, repo)
    _require_root_and_tools()
    with _locked(lab):
        if not leftovers(lab) and State.load(lab) is None:
            say(f"lab {stack}: nothing to remove")
            return False
        _teardown(lab, say)
    say(f"lab {stack}: removed")
    return True


def _dns_up(lab: Lab, repo: Path, say: Say) -> None:
    done = labdns.up(lab, repo)
    if done:
        say(f"lab {lab.stack}: DNS: {done}")


def _teardown(lab: Lab, say: Say) -> None:
    state = State.load(lab) or State(stack=lab.stack)
    if labdns.down(lab):
        say(f"lab {lab.stack}: stopped named")
    # found while the nodes' rbd-fuse still run: a stopped rbd-fuse takes its directory with it,
    # and with it the backing file's path by which these are told apart
    loops = labnode.loops_of(lab)
    killed = labprocs.kill_all(lab.ns_files())
    # nodes whose namespace files are already gone (removed by hand) end with their init
    recorded = [p for p in state.init_pids.values() if labprocs.is_lab_init(p)]
    labprocs.terminate(recorded)
    killed += recorded
    if killed:
        say(f"lab {lab.stack}: stopped {len(killed)} process(es) in the nodes")
    # detach first: a loop device still in use detaches once unmounted
    for device in loops:
        labnet.run(["losetup", "--detach", device], check=False)
    for n in lab.nodes:
        if labnet.is_mountpoint(labnet.ns_files(lab.stack, n.name)["mount"]):
            labnode.unmount_volume_in(lab, n)
    ns = labnet.ns_dir(lab.stack)
    for f in lab.ns_files():
        if f.parent == ns and labnet.is_mountpoint(f):
            labnet.run(["umount", str(f)])
    while labnet.is_mountpoint(ns):
        labnet.run(["umount", str(ns)])
    for n in lab.nodes:
        labnet.delete_netns(n.netns)
        labnet.delete_link(n.veth)
    labnet.delete_link(lab.bridge)
    for device in loops:
        if labnet.run(["losetup", "--list", "--noheadings", device], check=False).stdout:
            labnet.run(["losetup", "--detach", device], check=False)
    if labceph.down(lab):
        say(f"lab {lab.stack}: stopped Ceph")
    shutil.rmtree(lab.runtime, ignore_errors=True)
    _rmdir_if_empty(labnet.RUNTIME_ROOT)
    for made in lab.made_paths():
        if made.is_dir():
            # the notify script makes each node's bare mount point immutable
            labnet.run(["chattr", "-R", "-f", "-i", str(made)], check=False)
            shutil.rmtree(made, ignore_errors=True)
        else:
            made.unlink(missing_ok=True)
    _rmdir_if_empty(lab.dir)
    if state.made_key_dir:
        shutil.rmtree(state.made_key_dir, ignore_errors=True)
    if state.made_lab_root:
        _rmdir_if_empty(lab.dir.parent)
    for p in reversed(state.host_paths):
        path = Path(p)
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
        else:
            _rmdir_if_empty(path)
    left = leftovers(lab)
    if left:
        raise LabError(f"lab {lab.stack}: could not remove: {', '.join(left)}")


def _rmdir_if_empty(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()
