"""The lab plan of a stack: what lab-up makes, named and placed.

``load_lab(stack)`` reads ``Pulumi.<stack>.yaml`` and refuses any address outside
198.18.0.0/15 before anything exists; :mod:`components.lab` builds and removes the plan.
Names never collide across stacks: a stack's files live under its own directories, and its
links are named ``<kind>.<stack>.<node>`` (``.`` is in no stack or node name) or, past
Linux's 15 characters, by a digest of the same string.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from components.bundle.guestinfo import stack_marker
from components.config import PROJECT_ROOT, Settings, load_stack_file, stack_file
from components.config.keys import NAMESPACE
from components.lab.net import RUNTIME_ROOT, LabError, check_stack_name, ifname
from components.lab.qemu import Machine

REPO = PROJECT_ROOT
SECRETS_FILE = "secrets.json"  # the lab's own secrets (components/lab/secrets.py)
APT_PORT = 8008  # the lab's package source, on the bridge's address (components/lab/hostd.py)


@dataclass(frozen=True)
class LabNode:
    name: str
    address: ipaddress.IPv4Interface
    tap: str
    """The host side of its NIC, on the lab bridge."""
    mac: str
    """Its NIC's MAC when vcsim gives none (a locally administered address from the names)."""


@dataclass(frozen=True)
class Lab:
    """Everything lab-up makes for one stack, named and placed."""

    stack: str
    settings: Settings
    stack_file: Path
    dir: Path
    """``.lab/<stack>``: Ceph, DNS, the VMs' disks, logs, the lab's secrets."""
    runtime: Path
    """``/run/repo-cluster/<stack>``: the VMs' sockets and pids, daemons' pid files."""
    bridge: str
    gateway: ipaddress.IPv4Interface
    key_file: Path
    nodes: tuple[LabNode, ...]

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"lab {self.stack}: no node {name!r}")

    def machine(self, name: str, uuid: str = "") -> Machine:
        """The VM of node ``name``; ``uuid``: the vcsim VM it runs (its disk's name)."""
        return Machine(
            name=name,
            run_dir=machine_dir(self.stack, name),
            disk=self.dir / "vms" / f"{uuid or 'none'}.qcow2",
        )

    def vm_disks(self) -> list[Path]:
        return sorted((self.dir / "vms").glob("*.qcow2"))

    @property
    def apt_url(self) -> str:
        return f"http://{self.gateway.ip}:{APT_PORT}/"

    @property
    def image_file(self) -> Path:
        """Names the guest image lab-up chose: the lab's VMs boot from it for the lab's life
        (their disks are overlays on it), whatever the recipe says meanwhile."""
        return self.dir / "image"

    @property
    def secrets_file(self) -> Path:
        return self.dir / SECRETS_FILE

    def made_paths(self) -> list[Path]:
        """What lab-up puts in .lab/<stack>/ (lab-down removes these, then the dir if empty)."""
        return [
            self.dir / "vms",
            self.dir / "hostd.log",
            self.dir / "image",
            self.secrets_file,
            self.dir / "first-contact.json",  # host keys trusted on first contact
            self.dir / "named",
            self.dir / "ceph",
        ]


def machine_dir(stack: str, node: str) -> Path:
    return RUNTIME_ROOT / stack / "vms" / node


def lab_dir(repo: Path, stack: str) -> Path:
    """Where a stack's lab keeps its files (gitignored)."""
    return repo / ".lab" / stack


def _mac(stack: str, node: str) -> str:
    digest = hashlib.sha256(f"{stack}.{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def load_lab(stack: str, repo: Path = REPO) -> Lab:
    """The lab plan of a stack; refuses any address outside 198.18.0.0/15 before anything."""
    check_stack_name(stack)
    path = stack_file(stack, repo)
    s = load_stack_file(str(path))
    if not s.lab:
        raise LabError(
            f"stack {stack!r} is not a lab stack: its Pulumi.{stack}.yaml does not set "
            "repo-cluster:lab: true. Nothing was created."
        )
    outside = s.outside_test_net()
    if outside:
        raise LabError(
            f"stack {stack!r} is not a lab stack: the embedded lab uses 198.18.0.0/15 only, and "
            f"{'; '.join(outside)} lie outside it. Nothing was created."
        )
    nodes = tuple(
        LabNode(
            name=n.name,
            address=s.node_address(n),
            tap=ifname("t", stack, n.name),
            mac=_mac(stack, n.name),
        )
        for n in s.nodes
    )
    return Lab(
        stack=stack,
        settings=s,
        stack_file=path,
        dir=lab_dir(repo, stack),
        runtime=RUNTIME_ROOT / stack,
        bridge=ifname("br", stack),
        gateway=ipaddress.IPv4Interface(f"{s.gateway}/{s.vip.network.prefixlen}"),
        key_file=s.ssh_key_path(repo),
        nodes=nodes,
    )


def stack_id(lab: Lab) -> str:
    """The marker a VM of this lab's stack carries (RepoNode sets it; so does lab-up)."""
    return stack_marker(NAMESPACE, lab.stack)  # the project is named as its config namespace


def hostd_log(lab: Lab) -> Path:
    """The lab's host agent's log (components/lab/hostd.py)."""
    return lab.dir / "hostd.log"
