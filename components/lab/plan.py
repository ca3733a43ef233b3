"""The lab plan of a stack: what lab-up makes, named and placed, and the record of it.

``load_lab(stack)`` reads ``Pulumi.<stack>.yaml`` and refuses any address outside
198.18.0.0/15 before anything exists; :mod:`components.lab` builds and removes the plan.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.config import PROJECT_ROOT, Settings, load_stack_file, stack_file
from components.lab import net as labnet
from components.lab.net import LabError

REPO = PROJECT_ROOT
SECRETS_FILE = "secrets.json"  # the lab's own secrets (components/labsecrets.py)


@dataclass(frozen=True)
class LabNode:
    name: str
    address: ipaddress.IPv4Interface
    veth: str  # host-side end, on the bridge
    netns: str  # its network namespace (labnet.netns_name: scoped by the stack)
    root: Path  # .lab/<stack>/nodes/<name>: the node's own /etc/..., /root, mount point
    runtime: Path  # /run/repo-cluster/<stack>/nodes/<name>: the node's /run and /tmp


@dataclass(frozen=True)
class Lab:
    """Everything lab-up makes for one stack, named and placed."""

    stack: str
    settings: Settings
    stack_file: Path
    dir: Path
    runtime: Path
    bridge: str
    gateway: ipaddress.IPv4Interface
    key_file: Path
    nodes: tuple[LabNode, ...]

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def made_paths(self) -> list[Path]:
        """What lab-up puts in .lab/<stack>/ (lab-down removes these, then the dir if empty),
        with the lab's own secrets a converge without Pulumi state made (labsecrets.py)."""
        return [
            self.dir / "nodes",
            self.state_file,
            self.dir / SECRETS_FILE,
            self.dir / "first-contact.json",  # host keys trusted on first contact
            self.dir / "named",
        ]

    def ns_files(self) -> list[Path]:
        return [f for n in self.nodes for f in labnet.ns_files(self.stack, n.name).values()]


@dataclass
class State:
    """What lab-up made that cannot be found again by name. Saved after every step."""

    stack: str
    made_lab_root: bool = False
    made_key_dir: str | None = None
    host_paths: list[str] = field(default_factory=list)
    sshd_pids: dict[str, int] = field(default_factory=dict)
    """Each node's sshd, as the node numbers it (its own PID namespace)."""
    init_pids: dict[str, int] = field(default_factory=dict)
    """Each node's init, as the host numbers it: signalling it ends the whole node."""
    complete: bool = False

    def save(self, lab: Lab) -> None:
        lab.dir.mkdir(parents=True, exist_ok=True)
        tmp = lab.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(lab.state_file)  # a crash leaves the old state or the new, never half

    @classmethod
    def load(cls, lab: Lab) -> State | None:
        try:
            return cls(**json.loads(lab.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def lab_dir(repo: Path, stack: str) -> Path:
    """Where a stack's lab keeps its files (gitignored)."""
    return repo / ".lab" / stack


def load_lab(stack: str, repo: Path = REPO) -> Lab:
    """The lab plan of a stack; refuses any address outside 198.18.0.0/15 before anything."""
    labnet.check_stack_name(stack)
    path = stack_file(stack, repo)
    s = load_stack_file(str(path))
    outside = s.outside_test_net()
    if outside:
        raise LabError(
            f"stack {stack!r} is not a lab stack: the embedded lab uses 198.18.0.0/15 only, and "
            f"{'; '.join(outside)} lie outside it. Nothing was created."
        )
    home = lab_dir(repo, stack)
    runtime = labnet.RUNTIME_ROOT / stack
    nodes = tuple(
        LabNode(
            name=n.name,
            address=s.node_address(n),
            veth=labnet.ifname("rc", stack, n.name),
            netns=labnet.netns_name(stack, n.name),
            root=home / "nodes" / n.name,
            runtime=runtime / "nodes" / n.name,
        )
        for n in s.nodes
    )
    return Lab(
        stack=stack,
        settings=s,
        stack_file=path,
        dir=home,
        runtime=runtime,
        bridge=labnet.ifname("rc-br", stack),
        gateway=ipaddress.IPv4Interface(f"{s.gateway}/{s.vip.network.prefixlen}"),
        key_file=s.ssh_key_path(repo),
        nodes=nodes,
    )
