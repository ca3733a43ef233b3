"""Helpers of the lab tier: the real `fab` command, real ssh, looks inside the VMs through
their guest agent, and a check that nothing is left.

Everything is checked with the system's own tools (ip, ps, ssh, /proc, the guests' own
commands), not with the lab's bookkeeping, so a lab that lies about its state fails these tests.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from components import lab as labmod
from components.lab import Lab, LabError, LabNode, node_exec
from components.lab import ceph as labceph

ROOT = Path(__file__).resolve().parent.parent.parent
FAB = ROOT / ".venv" / "bin" / "fab"
STACK = "sim"


def sh(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def fab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The operator's command line, exactly: `.venv/bin/fab <args>` from the repo root."""
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(what: str, probe: Callable[[], object], timeout: float = 60) -> object:
    """Poll ``probe`` until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ssh_argv(lab: Lab, host: str, known_hosts: Path, command: str) -> list[str]:
    """The real OpenSSH client as root@host with the lab's operator key, trusting exactly the
    keys in ``known_hosts`` (no config files, no prompts)."""
    return [
        *("ssh", "-F", "/dev/null", "-i", str(lab.key_file), "-o", "IdentitiesOnly=yes"),
        *("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"),
        *("-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"),
        *("-o", "ConnectTimeout=20", f"root@{host}", command),
    ]


def ssh(lab: Lab, node: LabNode, known_hosts: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ssh_argv(lab, str(node.address.ip), known_hosts, command),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def in_node(node: str, *argv: str, timeout: float = 120) -> str:
    r = node_exec(STACK, node, list(argv), timeout=timeout)
    assert r.returncode == 0, f"{node}: {' '.join(argv)}: {r.stderr}"
    return r.stdout


def export_image(lab: Lab, dest: Path) -> None:
    """The stack's image as Ceph holds it, into a (sparse) file on the host."""
    s = lab.settings
    image = f"{s.rbd_pool}/{s.rbd_image}"
    r = sh(*labceph.admin(lab, "rbd"), "export", "--no-progress", image, dest, timeout=120)
    assert r.returncode == 0, r.stderr


def xfs_clean(lab: Lab, tmp_path: Path) -> None:
    """`xfs_repair -n` finds nothing wrong with the XFS on the image as Ceph holds it."""
    dump = tmp_path / "image.xfs"
    export_image(lab, dump)
    r = sh("xfs_repair", "-n", "-f", dump, timeout=300)
    assert r.returncode == 0, f"xfs_repair -n found problems:\n{r.stdout}\n{r.stderr}"


def qemu_processes() -> list[str]:
    """QEMU processes of any lab on this machine (by their command line: each VM's process
    is named after its node, qemu-<node>)."""
    out = sh("pgrep", "-af", "qemu-system").stdout.splitlines()
    return [line for line in out if "/run/repo-cluster/" in line]


def what_is_left(lab: Lab) -> list[str]:
    """Anything of the stack's lab still on this machine, found with the system's tools."""
    left: list[str] = []
    links = {
        line.split(":")[1].strip().split("@")[0]
        for line in sh("ip", "-o", "link", "show").stdout.splitlines()
    }
    left += [f"link {x}" for x in (lab.bridge, *(n.tap for n in lab.nodes)) if x in links]
    left += [f"qemu {p}" for p in qemu_processes() if f"/{lab.stack}/" in p]
    left += [f"ceph daemon {c}" for c in sh("pgrep", "-a", "ceph-").stdout.splitlines()]
    left += [
        f"host agent {c}"
        for c in sh("pgrep", "-af", "components.lab.hostd").stdout.splitlines()
        if c.rstrip().endswith(f" {lab.stack}")
    ]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    left += [f"mount {m}" for m in mounts if str(lab.runtime) in m or str(lab.dir) in m]
    left += [f"path {p}" for p in (lab.runtime, *lab.made_paths()) if p.exists()]
    return left


def node_picture(lab: Lab, name: str, timeout: float = 120) -> tuple[str, bool, bool]:
    """(VRRP state per the notify journal, holds the VIP, the volume mounted from a krbd
    device) of one running VM of ``lab``, probed with the node's own tools (LabError when the
    VM does not answer)."""
    s = lab.settings
    command = (
        "tail -n 1 /run/keepalivednotify/states 2>/dev/null | cut -d' ' -f1; echo --; "
        f"ip -4 -o addr show dev {s.interface}; echo --; "
        f"findmnt -rn -o SOURCE --mountpoint {s.mount_point}"
    )
    out = node_exec(lab.stack, name, ["sh", "-c", command], timeout=timeout).stdout
    state, addrs, src = [*out.split("--\n"), "", ""][:3]
    mounted = any(x.startswith("/dev/rbd") for x in src.split())
    return (state.strip() or "-", f" {s.vip.ip}/" in addrs, mounted)


def running_pictures(lab: Lab, names: tuple[str, ...]) -> dict[str, tuple[str, bool, bool]]:
    """node -> :func:`node_picture` for every running VM of the ``names`` (in the stack file
    or not: a removed node runs until its VM goes); ("?", False, False) for one that does not
    answer yet."""
    seen = {}
    for name in names:
        if lab.machine(name).running():
            try:
                seen[name] = node_picture(lab, name, timeout=30)
            except LabError:
                seen[name] = ("?", False, False)
    return seen


def at_most_one_holder(samples: list[dict[str, tuple[str, bool, bool]]]) -> list[str | None]:
    """Asserts that no sample has two VIP holders or two mounts; each sample's holder."""
    holders = []
    for i, seen in enumerate(samples):
        vip = [n for n, (_, v, _) in seen.items() if v]
        mounts = [n for n, (_, _, m) in seen.items() if m]
        assert len(vip) <= 1 and len(mounts) <= 1, f"sample {i}: {seen}"
        holders.append(vip[0] if vip else None)
    return holders


class Samples:
    """Pictures of a stack's nodes (:func:`running_pictures`) taken one after the other, about
    every 2 s, from entering until leaving; the lab is reloaded each time (it follows the stack
    file)."""

    def __init__(self, stack: str, names: tuple[str, ...]) -> None:
        self.stack, self.names = stack, names
        self.samples: list[dict[str, tuple[str, bool, bool]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(running_pictures(labmod.load_lab(self.stack), self.names))
            self.stop.wait(2)

    def __enter__(self) -> Samples:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def cluster_picture(lab: Lab) -> dict[str, tuple[str, bool, bool]]:
    """node -> :func:`node_picture`; ("DOWN", False, False) for a VM that is powered off."""
    return {
        n.name: node_picture(lab, n.name)
        if lab.machine(n.name).running()
        else ("DOWN", False, False)
        for n in lab.nodes
    }


def wait_for_picture(
    lab: Lab, expected: dict[str, tuple[str, bool, bool]], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    actual = cluster_picture(lab)
    while actual != expected and time.monotonic() < deadline:
        time.sleep(1)
        actual = cluster_picture(lab)
    assert actual == expected, (
        f"cluster (state, vip, mounted):\n expected {expected}\n actual   {actual}"
    )


def master_of(lab: Lab) -> str:
    """The node that is MASTER with the VIP and the volume (asserting there is exactly one)."""
    picture = cluster_picture(lab)
    masters = [n for n, (state, vip, mounted) in picture.items() if state == "MASTER"]
    assert len(masters) == 1 and picture[masters[0]][1:] == (True, True), picture
    return masters[0]


def healthy(master: str, nodes: list[str]) -> dict[str, tuple[str, bool, bool]]:
    """A converged cluster at rest: ``master`` holds the VIP and the volume."""
    return {n: ("MASTER", True, True) if n == master else ("BACKUP", False, False) for n in nodes}


# a converged cluster at rest after the first converge: repo1 (priority 101) is the MASTER
HEALTHY = healthy("repo1", ["repo1", "repo2"])


def published(lab: Lab) -> dict[str, str]:
    """Node -> the host public key its VM publishes, read from the lab's vcsim as a converge
    reads it (every node publishes one: its first boot did, first thing)."""
    from components.cli.common import published_keys

    keys = dict(published_keys(lab.settings, lab.stack, print))
    assert sorted(keys) == sorted(n.name for n in lab.nodes), keys
    return keys


def converge_lab(lab: Lab) -> None:
    """`fab converge --lab-secrets`, in-process: the lab's own secrets, the host keys the VMs
    publish; asserts it succeeded."""
    import json

    from components.bundle import authorized_keys, render_cluster
    from components.config import PROJECT_ROOT
    from components.converge import fleet
    from components.converge.ssh import Access
    from components.lab import secrets as labsecrets

    s = lab.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
    access = Access.for_stack(
        s,
        PROJECT_ROOT,
        secrets.public_host_keys,
        False,
        stack=STACK,
        published_keys=tuple(published(lab).items()),
    )
    outcome = fleet.converge_stack(s, bundles, access, report=lambda _: None)
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)


def fresh_cluster(lab: Lab) -> None:
    """Every node reset (the drill's reset: no fault left, keepalived stopped, nothing mounted
    or mapped), then converged: repo1, the highest priority, is the MASTER."""
    from components.lab.faults import LabFaults

    LabFaults(lab).reset()
    converge_lab(lab)
    wait_for_picture(lab, HEALTHY)


def blocklist(lab: Lab) -> set[str]:
    """The OSD blocklist's entries (client instances), asked with the lab's admin key."""
    r = sh(*labceph.admin(lab), "osd", "blocklist", "ls", timeout=60)
    assert r.returncode == 0, r.stderr
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def mounted_clients(lab: Lab) -> dict[str, str]:
    """node -> the client instance of the krbd mapping it has mounted (nodes with a mount)."""
    s = lab.settings
    found = {}
    for n in lab.nodes:
        if not lab.machine(n.name).running():
            continue
        out = node_exec(
            STACK,
            n.name,
            [
                "sh",
                "-c",
                f"src=$(findmnt -rn -o SOURCE --mountpoint {s.mount_point}) || exit 0; "
                'cat "/sys/bus/rbd/devices/${src#/dev/rbd}/client_addr"',
            ],
        ).stdout.strip()
        if out:
            found[n.name] = out
    return found


def writable_mounts(lab: Lab) -> list[str]:
    """Nodes with the volume mounted over a client Ceph does not refuse (not blocklisted)."""
    mounts = mounted_clients(lab)
    if len(mounts) <= 1:
        return sorted(mounts)
    fenced = blocklist(lab)
    return sorted(n for n, client in mounts.items() if client not in fenced)


def keyscan(node: LabNode | str, key_type: str = "ed25519") -> str:
    """The host key line(s) of a node (or of an address: the VIP) as `ssh-keyscan` sees them
    (198.18.x: the lab's own)."""
    address = node if isinstance(node, str) else str(node.address.ip)
    out = sh("ssh-keyscan", "-T", "20", "-t", key_type, address)
    assert out.returncode == 0 and out.stdout.strip(), f"ssh-keyscan {address}: {out.stderr}"
    return out.stdout
