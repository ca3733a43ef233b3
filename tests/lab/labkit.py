"""Helpers of the lab tier: the real `fab` command, real ssh, and a check that nothing is left.

Everything is checked with the system's own tools (ip, losetup, ssh, /proc), not with the lab's
bookkeeping, so a lab that lies about its state fails these tests.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from components.lab import Lab, LabNode, node_exec
from components.lab import ceph as labceph

ROOT = Path(__file__).resolve().parent.parent.parent
FAB = ROOT / ".venv" / "bin" / "fab"
STACK = "sim"
# marks the lab's own daemons on the command line (host daemons, if any, lack them)
LAB_SSHD = "PidFile=/run/sshd.pid"
LAB_KEEPALIVED = "/run/keepalived/keepalived.pid"


def sh(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def fab(*args: str) -> subprocess.CompletedProcess[str]:
    """The operator's command line, exactly: `.venv/bin/fab <args>` from the repo root."""
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def wait_for(what: str, probe: Callable[[], object], timeout: float = 20) -> object:
    """Poll ``probe`` until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ssh_argv(lab: Lab, host: str, known_hosts: Path, command: str) -> list[str]:
    """The real OpenSSH client as root@host with the lab's operator key, trusting exactly the
    keys in ``known_hosts`` (no config files, no prompts)."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.key_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        f"root@{host}",
        command,
    ]


def ssh(lab: Lab, node: LabNode, known_hosts: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ssh_argv(lab, str(node.address.ip), known_hosts, command),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def keyscan(node: LabNode, key_type: str = "ed25519") -> str:
    """The node's host key line(s) as `ssh-keyscan` sees them (198.18.x: the lab's own)."""
    out = sh("ssh-keyscan", "-T", "5", "-t", key_type, str(node.address.ip))
    assert out.returncode == 0 and out.stdout.strip(), f"ssh-keyscan {node.name}: {out.stderr}"
    return out.stdout


def ip_addrs(node: str, dev: str) -> str:
    return sh("ip", "-n", node, "-4", "-o", "addr", "show", "dev", dev).stdout


def node_pid_alive(node: str, pid: int) -> bool:
    """Whether ``pid`` (as ``node`` numbers it: its own PID namespace) runs in ``node``."""
    r = node_exec(STACK, node, ["cat", f"/proc/{pid}/stat"])
    return r.returncode == 0 and r.stdout.rsplit(")", 1)[1].split()[0] != "Z"


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lab_daemons() -> list[str]:
    """Running sshd/keepalived processes that the lab started (by their command-line marks)."""
    found = []
    for name, mark in (("sshd", LAB_SSHD), ("keepalived", LAB_KEEPALIVED)):
        out = sh("pgrep", "-a", name).stdout
        found += [line for line in out.splitlines() if mark in line]
    return found


def rbd_unit(lab: Lab) -> tuple[str, str]:
    """The rbd unit's name and a body whose ExecStart maps the stack's image, as rendered."""
    s = lab.settings
    body = (
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart=/usr/bin/rbd map {s.rbd_pool}/{s.rbd_image} --id {s.ceph_user}\n"
    )
    return f"rbd-{s.rbd_image}.service", body


def write_ceph_client(lab: Lab, node: str) -> None:
    """What the converge gives a node for its Ceph client: ceph.conf and the client keyring,
    with the lab Ceph's monitor and key."""
    s = lab.settings
    key = labceph.client_key(lab)
    assert key, "the lab's Ceph has no client key"
    conf = f"[global]\nmon_host = {labceph.monitor(lab)}\n"
    keyring = f"[client.{s.ceph_user}]\n\tkey = {key}\n"
    node_exec(STACK, node, ["tee", "/etc/ceph/ceph.conf"], input=conf, check=True)
    path = f"/etc/ceph/ceph.client.{s.ceph_user}.keyring"
    node_exec(STACK, node, ["tee", path], input=keyring, check=True)


def export_image(lab: Lab, dest: Path) -> None:
    """The stack's image as Ceph holds it, into a (sparse) file on the host."""
    s = lab.settings
    image = f"{s.rbd_pool}/{s.rbd_image}"
    r = sh(*labceph.admin(lab, "rbd"), "export", "--no-progress", image, dest, timeout=120)
    assert r.returncode == 0, r.stderr


def what_is_left(lab: Lab) -> list[str]:
    """Anything of the stack's lab still on this machine, found with the system's tools."""
    left: list[str] = []
    netns = {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line}
    left += [f"netns {n.name}" for n in lab.nodes if n.name in netns]
    links = {
        line.split(":")[1].strip().split("@")[0]
        for line in sh("ip", "-o", "link", "show").stdout.splitlines()
    }
    left += [f"link {x}" for x in (lab.bridge, *(n.veth for n in lab.nodes)) if x in links]
    left += [
        f"loop {line}"
        for line in sh("losetup", "-a").stdout.splitlines()
        if f"/run/lab/rbd/{lab.stack}." in line
    ]
    left += [f"ceph daemon {c}" for c in sh("pgrep", "-a", "ceph-").stdout.splitlines()]
    left += [f"rbd-fuse {c}" for c in sh("pgrep", "-a", "rbd-fuse").stdout.splitlines()]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    left += [f"mount {m}" for m in mounts if str(lab.runtime) in m or str(lab.dir) in m]
    left += [f"path {p}" for p in (lab.runtime, *lab.made_paths()) if p.exists()]
    left += [f"process {d}" for d in lab_daemons()]
    return left


KEEPALIVED_CONF = """\
global_defs {{
    router_id lab_test_{name}
}}

vrrp_instance VI_TEST {{
    state BACKUP
    interface {nic}
    virtual_router_id 51
    priority 100
    advert_int 1
    unicast_src_ip {ip}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip} dev {nic}
    }}
}}
"""


def keepalived_conf(lab: Lab, node: LabNode, peer: LabNode) -> str:
    """A minimal valid keepalived.conf: unicast VRRP, so every packet stays on 198.18.x."""
    s = lab.settings
    return KEEPALIVED_CONF.format(
        name=node.name, nic=s.interface, ip=node.address.ip, peer=peer.address.ip, vip=s.vip
    )


def in_node(node: str, *argv: str) -> str:
    r = node_exec(STACK, node, list(argv))
    assert r.returncode == 0, f"{node}: {' '.join(argv)}: {r.stderr}"
    return r.stdout


def cluster_picture(lab: Lab) -> dict[str, tuple[str, bool, bool]]:
    """node -> (VRRP state per the notify journal, holds the VIP, volume mounted), probed with
    the node's own tools."""
    s = lab.settings
    picture = {}
    for n in lab.nodes:
        journal = node_exec(STACK, n.name, ["tail", "-n", "1", "/run/keepalivednotify/states"])
        state = (journal.stdout.split() or ["-"])[0]
        addrs = node_exec(STACK, n.name, ["ip", "-4", "-o", "addr", "show", "dev", s.interface])
        vip = f" {s.vip.ip}/" in addrs.stdout
        src = node_exec(
            STACK, n.name, ["findmnt", "-rn", "-o", "SOURCE", "--mountpoint", s.mount_point]
        ).stdout.split()
        mounted = bool(src) and src[-1].startswith("/dev/loop")
        picture[n.name] = (state, vip, mounted)
    return picture


def wait_for_picture(lab: Lab, expected: dict[str, tuple[str, bool, bool]], timeout: float = 20):
    deadline = time.monotonic() + timeout
    actual = cluster_picture(lab)
    while actual != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        actual = cluster_picture(lab)
    assert actual == expected, (
        f"cluster (state, vip, mounted):\n expected {expected}\n actual   {actual}"
    )


# a converged cluster at rest: node -> (VRRP state, holds the VIP, volume mounted)
HEALTHY = {"repo1": ("MASTER", True, True), "repo2": ("BACKUP", False, False)}
