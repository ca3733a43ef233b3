"""The embedded lab's plumbing: commands, node namespaces and links.

Plain functions over names and paths, used by :mod:`components.lab` (which draws the topology).
Every address handled here was checked to be in 198.18.0.0/15 before anything is created.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

RUNTIME_ROOT = Path("/run/repo-cluster")
NETNS_DIR = Path("/run/netns")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_STACK = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; on failure raise LabError quoting its stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` exited {proc.returncode}: {detail}")
    return proc


# --------------------------------------------------------------------------- entering a node


def check_stack_name(stack: str) -> None:
    if not _STACK.match(stack):
        raise LabError(f"stack name {stack!r} must be 1-31 characters a-z, 0-9, '-'")


def ns_dir(stack: str) -> Path:
    """Private bind mount holding the nodes' persistent mount and UTS namespace files."""
    return RUNTIME_ROOT / stack / "ns"


SIM_STACK = "sim"


def netns_name(stack: str, node: str) -> str:
    """A node's network namespace name, scoped by its stack (``lab-down`` of one stack never
    touches another's nodes of the same name). The sim stack keeps the bare node names: the
    README's ``ip netns exec repo1 ...`` and every operator habit rely on them."""
    return node if stack == SIM_STACK else f"{stack}-{node}"


def ns_files(stack: str, node: str) -> dict[str, Path]:
    """The namespace files of a node, keyed by nsenter's option names."""
    return {
        "net": NETNS_DIR / netns_name(stack, node),
        "mount": ns_dir(stack) / f"mnt-{node}",
        "uts": ns_dir(stack) / f"uts-{node}",
        "pid": ns_dir(stack) / f"pid-{node}",
    }


def node_argv(stack: str, node: str, argv: Sequence[str]) -> list[str]:
    """The host command that runs ``argv`` inside a node: its network, mount, UTS and PID
    namespaces (nsenter forks into the PID one; the node's /proc shows its processes only)."""
    files = ns_files(stack, node)
    return [
        "nsenter",
        f"--net={files['net']}",
        f"--mount={files['mount']}",
        f"--uts={files['uts']}",
        f"--pid={files['pid']}",
        "--",
        *argv,
    ]


def node_env() -> dict[str, str]:
    """A clean root login environment for commands run in a node."""
    return {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root"}


def node_exec(
    stack: str,
    node: str,
    argv: Sequence[str],
    *,
    check: bool = False,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``node`` of ``stack``'s lab; output captured as text.

    With ``check=True`` a non-zero exit raises :class:`LabError`.
    """
    return run(
        node_argv(stack, node, argv), check=check, input=input, timeout=timeout, env=node_env()
    )


def node_run(
    stack: str, node: str, script: str, *, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell script (``/bin/sh -c``) inside a node."""
    return node_exec(stack, node, ["/bin/sh", "-c", script], check=check, timeout=timeout)


# --------------------------------------------------------------------------- names


def ifname(prefix: str, *parts: str) -> str:
    """``prefix-part-part`` when it fits Linux's 15 characters, else prefix + a stable digest."""
    import hashlib

    name = "-".join((prefix, *parts))
    if len(name) <= 15:
        return name
    digest = hashlib.sha1("/".join(parts).encode()).hexdigest()
    return f"{prefix}-{digest[: 14 - len(prefix)]}"


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def is_mountpoint(path: Path) -> bool:
    """Whether ``path`` is a mount point in the host's mount namespace."""
    target = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point == target:
                return True
    return False


# --------------------------------------------------------------------------- network


def _host_disable_ipv6(link: str) -> None:
    conf = Path("/proc/sys/net/ipv6/conf", link, "disable_ipv6")
    if conf.exists():
        conf.write_text("1\n")


def make_bridge(bridge: str, gateway: ipaddress.IPv4Interface) -> None:
    """The lab's bridge, with the host's leg (the gateway address). IPv6 off before link-up."""
    run(["ip", "link", "add", bridge, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])
    _host_disable_ipv6(bridge)
    run(["ip", "addr", "add", str(gateway), "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def make_netns(netns: str) -> None:
    """A node's network namespace: IPv6 disabled (no ND/MLD ever), loopback up, no routes."""
    run(["ip", "netns", "add", netns])
    if Path("/proc/sys/net/ipv6").exists():
        run(
            [
                "nsenter",
                f"--net={NETNS_DIR / netns}",
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]
        )
    run(["ip", "-n", netns, "link", "set", "lo", "up"])


def plug_node(
    netns: str, nic: str, address: ipaddress.IPv4Interface, veth: str, bridge: str
) -> None:
    """A veth pair: ``nic`` inside the node with its address, ``veth`` on the bridge.

    No default route inside the node: nothing it sends can leave 198.18.0.0/15's bridge.
    """
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", nic, "netns", netns])
    _host_disable_ipv6(veth)
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", netns, "addr", "add", str(address), "dev", nic])
    run(["ip", "-n", netns, "link", "set", nic, "up"])


def delete_link(name: str, timeout: float = 5.0) -> None:
    """Delete a link; a veth may also be vanishing on its own (its peer's namespace went)."""
    deadline = time.monotonic() + timeout
    while link_exists(name):
        out = run(["ip", "link", "del", name], check=False)
        if out.returncode != 0 and link_exists(name) and time.monotonic() > deadline:
            raise LabError(f"`ip link del {name}` exited {out.returncode}: {out.stderr.strip()}")
        time.sleep(0.05)


def delete_netns(netns: str) -> None:
    if netns_exists(netns):
        run(["ip", "netns", "del", netns])
