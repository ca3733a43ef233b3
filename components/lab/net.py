"""The embedded lab's plumbing: commands, the bridge and the VMs' taps.

Plain functions over names, used by :mod:`components.lab` (which draws the topology). Every
address handled here was checked to be in 198.18.0.0/15 before anything is created. The
bridge has no port but the lab's taps, and forwards nothing: a packet a VM sends reaches
another VM or the host's own address on the bridge, and goes no further.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

RUNTIME_ROOT = Path("/run/repo-cluster")
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


def check_stack_name(stack: str) -> None:
    if not _STACK.match(stack):
        raise LabError(f"stack name {stack!r} must be 1-31 characters a-z, 0-9, '-'")


def ifname(kind: str, *parts: str) -> str:
    """``kind.part.part`` when it fits Linux's 15 characters, else ``kind`` and a digest of the
    same string: unambiguous either way (no stack or node name holds a dot)."""
    name = ".".join((kind, *parts))
    if len(name) <= 15:
        return name
    return f"{kind}{hashlib.sha1(name.encode()).hexdigest()[: 15 - len(kind)]}"


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links_of(bridge: str) -> list[str]:
    """The ports of a bridge."""
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def _sysctl(path: str, value: str) -> None:
    f = Path("/proc/sys/net", path)
    if f.exists():
        f.write_text(value + "\n")


def make_bridge(bridge: str, gateway: ipaddress.IPv4Interface) -> None:
    """The lab's bridge with the host's leg (the gateway address): IPv6 off before link-up,
    and nothing received on it forwarded anywhere."""
    run(["ip", "link", "add", bridge, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])
    _sysctl(f"ipv6/conf/{bridge}/disable_ipv6", "1")
    _sysctl(f"ipv4/conf/{bridge}/forwarding", "0")
    run(["ip", "addr", "add", str(gateway), "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def ensure_tap(tap: str, bridge: str) -> bool:
    """A tap on the bridge for a VM's NIC; whether it was made now."""
    if link_exists(tap):
        return False
    run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    _sysctl(f"ipv6/conf/{tap}/disable_ipv6", "1")
    run(["ip", "link", "set", tap, "master", bridge, "up"])
    return True


def delete_link(name: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while link_exists(name):
        out = run(["ip", "link", "del", name], check=False)
        if out.returncode != 0 and link_exists(name) and time.monotonic() > deadline:
            raise LabError(f"`ip link del {name}` exited {out.returncode}: {out.stderr.strip()}")
        time.sleep(0.05)
