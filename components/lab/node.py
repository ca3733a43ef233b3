"""A lab node's own files, its mount namespace with its own /dev, and its sshd.

A node's directories live under ``.lab/<stack>/nodes/<node>/`` (persistent, gitignored) and
``/run/repo-cluster/<stack>/nodes/<node>/`` (its /run and /tmp); its mount namespace binds them
over the real paths, so what a node (or a converge run over its sshd) writes stays its own.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path, PurePosixPath

from components.config import PROJECT_ROOT
from components.lab.net import LabError, node_exec, ns_files, run
from components.lab.plan import Lab, LabNode

SYSTEMCTL_SCRIPT = PROJECT_ROOT / "scripts" / "node" / "lab-systemctl"
VOLUME_MIB = 300  # the smallest XFS that xfsprogs 6 makes
# Directories a node owns, bound from .lab/<stack>/nodes/<node>/<same path>.
NODE_DIRS = (
    "etc/keepalived",
    "etc/ssh",
    "etc/ceph",
    "etc/sysctl.d",
    "etc/systemd/system",
    "usr/local/bin",
    # the node's own home: a VM never runs the host's ~/.bashrc (here it ran the host's pyenv,
    # whose rehash lock, left by a killed session, stalled every later ssh session on the nodes)
    "root",
    "var/log",
)
NODE_FILES = ("etc/resolv.conf", "etc/hostname", "etc/hosts")
SSHD_PID = "/run/sshd.pid"

_SETUP = """set -e
node=$1
shift
# drop the copies of the host's namespace files (they would pin other namespaces alive)
findmnt -rn -t nsfs -o TARGET | sort -r | while read -r t; do umount "$t"; done
# a sysfs of the node's own network namespace, as `ip netns exec` gives, with fusectl (the
# lab's rbd unit aborts a dead rbd-fuse connection there instead of waiting on it)
mount -t sysfs sysfs /sys
mount -t fusectl fusectl /sys/fs/fuse/connections
# the node's own /dev: only its own block devices (its mapped image), as on a VM, so
# `mount -L` and blkid never see the other node's copy of the volume
mount -t tmpfs -o mode=0755,nosuid,size=1m lab-dev /dev
dev() { mknod -m "$1" "/dev/$2" c "$3" "$4"; }
dev 0666 null 1 3; dev 0666 zero 1 5; dev 0666 full 1 7; dev 0666 random 1 8
dev 0666 urandom 1 9; dev 0666 tty 5 0; dev 0666 fuse 10 229; dev 0600 loop-control 10 237
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
hostname "$node"
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
"""


def sshd_config(node: LabNode) -> str:
    return f"""\
# sshd_config of lab node {node.name}, written by `fab lab-up` (components/labnode.py).
# A minimal server: root logs in with a key only, on every address of the node: its own and,
# on the MASTER, the VIP (Veeam's way in, as on a real node; nothing NATs VIP:22 in the lab).
ListenAddress 0.0.0.0:22
HostKey /etc/ssh/ssh_host_rsa_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PidFile {SSHD_PID}
Subsystem sftp internal-sftp
"""


def mount_point_parent(lab: Lab) -> str:
    """The directory bound per node to hold the mount point (the mount point itself when its
    parent is /, which cannot be bound over)."""
    mount_point = PurePosixPath(lab.settings.mount_point)
    parent = mount_point.parent
    return str(mount_point if parent == PurePosixPath("/") else parent)


def binds(lab: Lab, node: LabNode) -> list[tuple[Path, str]]:
    """(host source, node path) pairs, in mount order: /run last (the sources live under /run)."""
    pairs = [(node.root / d, f"/{d}") for d in (*NODE_DIRS, *NODE_FILES)]
    # The node's own copy of the mount point's parent (/mnt): the mount point itself stays a
    # plain directory, so `mountpoint /mnt/veeamrepo` answers as on a real server.
    parent = mount_point_parent(lab)
    pairs.append((node.root / parent.lstrip("/"), parent))
    pairs.append((SYSTEMCTL_SCRIPT, "/usr/bin/systemctl"))
    if os.path.realpath("/bin/systemctl") != os.path.realpath("/usr/bin/systemctl"):
        pairs.append((SYSTEMCTL_SCRIPT, "/bin/systemctl"))
    pairs.append((node.runtime / "tmp", "/tmp"))
    pairs.append((node.runtime / "run", "/run"))
    return pairs


def ensure_host_targets(lab: Lab) -> list[str]:
    """Create the bind targets the host lacks (e.g. /etc/ceph, /mnt/veeamrepo); return them,
    outermost first, so lab-down removes exactly those (when still empty)."""
    created: list[str] = []
    for _, target in binds(lab, lab.nodes[0]):
        path = Path(target)
        is_file = target.lstrip("/") in NODE_FILES or target.endswith("/systemctl")
        parent = path.parent if is_file else path
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir(mode=0o755)
            created.append(str(p))
        if is_file and not path.exists():
            path.touch()
            created.append(str(path))
    return created


def fuse_dir(lab: Lab, node: LabNode) -> str:
    """Where the node's rbd-fuse shows the image (in the node's own /run): named after the
    stack and node, so the host tells the lab's loop devices by their backing file."""
    return f"/run/lab/rbd/{lab.stack}.{node.name}"


def write_node_tree(lab: Lab, node: LabNode, operator_pub: str) -> None:
    """The node's own directories and files, as a fresh server would have them."""
    s = lab.settings
    for d in NODE_DIRS:
        (node.root / d).mkdir(parents=True, exist_ok=True)
    (node.root / "root").chmod(0o700)
    (node.root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    mount_point = node.root / s.mount_point.lstrip("/")
    mount_point.mkdir(parents=True, exist_ok=True)
    if any(mount_point.iterdir()):
        raise LabError(f"{mount_point} must be empty (it is {node.name}'s mount point)")
    etc = node.root / "etc"
    (etc / "resolv.conf").write_text(
        f"# lab node {node.name}: the node's own loopback, so no DNS packet leaves it\n"
        "nameserver 127.0.0.1\n"
    )
    (etc / "hostname").write_text(f"{node.name}\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n{node.address.ip}\t{node.name}.{s.domain}\t{node.name}\n"
    )
    (etc / "ssh/sshd_config").write_text(sshd_config(node))
    if Path("/etc/ssh/moduli").exists():
        shutil.copyfile("/etc/ssh/moduli", etc / "ssh/moduli")
    keys = node.root / "root/.ssh/authorized_keys"
    keys.write_text(operator_pub)
    keys.chmod(0o600)
    for sub in ("run/lab", "run/log", "run/sshd", "run/keepalived", "tmp"):
        (node.runtime / sub).mkdir(parents=True, exist_ok=True)
    (node.runtime / "tmp").chmod(0o1777)
    facts = {
        "LAB_STACK": lab.stack,
        "LAB_NODE": node.name,
        "LAB_RBD_IMAGE": s.rbd_image,
        "LAB_FUSE_DIR": fuse_dir(lab, node),
        "LAB_NODE_IP": str(node.address.ip),
    }
    (node.runtime / "run/lab/env").write_text(
        "# lab facts for the lab's systemctl stand-in, written by `fab lab-up`\n"
        + "".join(f"{k}={shlex.quote(v)}\n" for k, v in facts.items())
    )


def make_mount_ns(lab: Lab, node: LabNode) -> None:
    """The node's persistent mount and UTS namespaces, entered with the network one."""
    files = ns_files(lab.stack, node.name)
    for kind in ("mount", "uts"):
        files[kind].touch()
    flat = [str(part) for src, dst in binds(lab, node) for part in (src, dst)]
    run(
        [
            "nsenter",
            f"--net={files['net']}",
            "unshare",
            f"--mount={files['mount']}",
            f"--uts={files['uts']}",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _SETUP,
            "lab-node-setup",
            node.name,
            *flat,
        ]
    )


def start_sshd(lab: Lab, node: LabNode) -> int:
    """Random host keys of the node's own (`ssh-keygen -A`, as on first boot), then sshd
    enabled and started through the node's systemctl. Returns sshd's pid (in the node)."""
    node_exec(lab.stack, node.name, ["ssh-keygen", "-A"], check=True)
    node_exec(lab.stack, node.name, ["systemctl", "enable", "--quiet", "ssh"], check=True)
    node_exec(lab.stack, node.name, ["systemctl", "start", "ssh"], check=True)
    return int((node.runtime / SSHD_PID.lstrip("/")).read_text().split()[0])


def sshd_active(lab: Lab, node: LabNode) -> bool:
    return (
        node_exec(lab.stack, node.name, ["systemctl", "is-active", "--quiet", "ssh"]).returncode
        == 0
    )


# --------------------------------------------------------------------------- operator key


def ensure_operator_key(key: Path) -> bool:
    """The operator's SSH key pair; returns whether it was generated now."""
    if key.exists() and key.with_name(key.name + ".pub").exists():
        return False
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    comment = "repo-cluster-lab-operator"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    return True


# --------------------------------------------------------------------------- the mapped images


def loops_of(lab: Lab) -> list[str]:
    """Loop devices of the lab's nodes (on their rbd-fuse files). Read in each node's mount
    namespace (from the host, a file of another namespace has no full path) and from sysfs
    (``losetup --list``), which never touches the backing file: a stat of a file on a dead
    rbd-fuse could hang."""
    found = []
    for n in lab.nodes:
        mount_ns = ns_files(lab.stack, n.name)["mount"]
        if not mount_ns.exists():
            continue
        listing = ["losetup", "--list", "--noheadings", "--raw", "-O", "NAME,BACK-FILE"]
        out = run(["nsenter", f"--mount={mount_ns}", *listing], check=False)
        for line in out.stdout.splitlines():
            name, _, back = line.partition(" ")
            if back.replace("\\x20", " ").startswith(fuse_dir(lab, n) + "/"):
                found.append(name)
    return found


def unmount_volume_in(lab: Lab, node: LabNode) -> None:
    """Unmount whatever the node still has mounted on the mount point, and its rbd-fuse
    directory (before its namespace goes; its rbd-fuse is already killed, so nothing waits)."""
    files = ns_files(lab.stack, node.name)
    enter = ["nsenter", f"--mount={files['mount']}"]
    for target in (lab.settings.mount_point, fuse_dir(lab, node)):
        while run([*enter, "mountpoint", "-q", target], check=False).returncode == 0:
            if run([*enter, "umount", target], check=False, timeout=30).returncode != 0:
                run([*enter, "umount", "-l", target], check=False)
                break
