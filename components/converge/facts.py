"""Facts: read-only probes of a node over a fabric Connection.

Each probe is one round trip (``warn=True, hide=True``) and a pure parser, so the parsers are
unit-tested without a node. Nothing here changes the node.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from fabric import Connection

from components.bundle import PATHS

# cloud-init states with nothing left to wait for; "not run"/"disabled": never ran (lab nodes).
CLOUD_INIT_SETTLED = ("done", "error", "degraded done", "not run", "disabled", "")


class FactError(RuntimeError):
    """A probe could not run or its output made no sense."""


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int
    owner: str
    group: str


def _run(c: Connection, command: str, timeout: float | None = 60) -> str:
    r = c.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    if not r.ok:
        raise FactError(f"`{command[:80]}` exited {r.exited}: {r.stderr.strip()[-300:]}")
    return r.stdout


# --------------------------------------------------------------------------- cloud-init


def parse_cloud_init_status(stdout: str) -> str:
    """``status: running`` -> ``running`` (``cloud-init status`` output)."""
    for line in stdout.splitlines():
        if line.startswith("status:"):
            return line.split(":", 1)[1].strip()
    return ""


def cloud_init_status(c: Connection) -> str | None:
    """None when cloud-init is not installed, else its status word."""
    r = c.run(
        "command -v cloud-init >/dev/null 2>&1 || exit 100; cloud-init status",
        hide=True,
        warn=True,
        in_stream=False,
        timeout=60,
    )
    if r.exited == 100:
        return None
    # cloud-init status exits 1 on error and 2 on "degraded": the word is what matters.
    return parse_cloud_init_status(r.stdout)


# --------------------------------------------------------------------------- OS family


def parse_os_release(text: str) -> str:
    """/etc/os-release -> el7, el8, el9, debian or ubuntu."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    ident = fields.get("ID", "")
    like = fields.get("ID_LIKE", "").split()
    major = fields.get("VERSION_ID", "").split(".")[0]
    if ident in ("debian", "ubuntu"):
        return ident
    el = ident in ("rhel", "centos", "rocky", "almalinux", "ol") or "rhel" in like
    if el and major in ("7", "8", "9"):
        return f"el{major}"
    raise FactError(
        f"unsupported OS: ID={ident!r} VERSION_ID={fields.get('VERSION_ID', '')!r} "
        f"(supported: EL 7/8/9, Debian, Ubuntu)"
    )


def os_family(c: Connection) -> str:
    return parse_os_release(_run(c, "cat /etc/os-release"))


# --------------------------------------------------------------------------- packages


def missing_packages_command(family: str, packages: Sequence[str]) -> str:
    names = " ".join(shlex.quote(p) for p in packages)
    if family in ("debian", "ubuntu"):
        return f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {names} 2>/dev/null; true"
    return f"rpm -q --qf '%{{NAME}} installed\\n' {names}; true"


def parse_missing_packages(family: str, packages: Sequence[str], stdout: str) -> list[str]:
    installed: set[str] = set()
    for line in stdout.splitlines():
        fields = line.split()
        if family in ("debian", "ubuntu"):
            # "keepalived install ok installed"
            if len(fields) >= 4 and fields[-1] == "installed" and fields[-2] == "ok":
                installed.add(fields[0].split(":")[0])
        elif len(fields) == 2 and fields[1] == "installed":
            installed.add(fields[0])
    return [p for p in packages if p not in installed]


def missing_packages(c: Connection, family: str, packages: Sequence[str]) -> list[str]:
    if not packages:
        return []
    out = _run(c, missing_packages_command(family, packages))
    return parse_missing_packages(family, packages, out)


# --------------------------------------------------------------------------- files


def file_states_command(paths: Sequence[str]) -> str:
    """One command printing ``sha256 mode owner group`` per path, ``-`` when absent."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f"for p in {quoted}; do "
        'if [ -f "$p" ]; then h=$(sha256sum < "$p") && '
        'printf \'%s %s\\n\' "${h%% *}" "$(stat -c \'%a %U %G\' -- "$p")" '
        "|| echo '? ? ? ?'; "
        "else echo '- - - -'; fi; done"
    )


def parse_file_states(paths: Sequence[str], stdout: str) -> dict[str, FileState | None]:
    lines = stdout.splitlines()
    if len(lines) != len(paths):
        raise FactError(f"file states: expected {len(paths)} lines, got {len(lines)}")
    states: dict[str, FileState | None] = {}
    for path, line in zip(paths, lines, strict=True):
        digest, mode, owner, group = line.split()
        if digest in ("-", "?"):
            states[path] = None
        else:
            states[path] = FileState(digest, int(mode, 8), owner, group)
    return states


def file_states(c: Connection, paths: Sequence[str]) -> dict[str, FileState | None]:
    if not paths:
        return {}
    return parse_file_states(paths, _run(c, file_states_command(paths)))


def reloads_owed(c: Connection) -> list[str]:
    """The reload markers an earlier converge left (it wrote files, then stopped before the
    reload): see operations.write_files_script."""
    out = _run(c, f"ls -1 {shlex.quote(PATHS.pending_dir)} 2>/dev/null || true")
    return sorted(ln.strip() for ln in out.splitlines() if ln.strip())


# --------------------------------------------------------------------------- sysctl, units


def sysctl_values(c: Connection, keys: Sequence[str]) -> dict[str, str]:
    """Live values, whitespace-normalized; a key the kernel lacks maps to ``""``."""
    if not keys:
        return {}
    quoted = " ".join(shlex.quote(k) for k in keys)
    out = _run(c, f'for k in {quoted}; do echo "$(sysctl -n "$k" 2>/dev/null)"; done')
    values = [" ".join(v.split()) for v in out.splitlines()]
    return dict(zip(keys, values, strict=True))


@dataclass(frozen=True)
class UnitState:
    enabled: str  # systemctl is-enabled word ("enabled", "disabled", "static", ...)
    active: str  # systemctl is-active word ("active", "inactive", "failed", ...)


def unit_states_command(units: Sequence[str]) -> str:
    quoted = " ".join(shlex.quote(u) for u in units)
    return (
        f"for u in {quoted}; do "
        'e=$(systemctl is-enabled "$u" 2>/dev/null); a=$(systemctl is-active "$u" 2>/dev/null); '
        'echo "${e:-unknown} ${a:-unknown}"; done'
    )


def parse_unit_states(units: Sequence[str], stdout: str) -> dict[str, UnitState]:
    lines = stdout.splitlines()
    if len(lines) != len(units):
        raise FactError(f"unit states: expected {len(units)} lines, got {len(lines)}")
    states = {}
    for unit, line in zip(units, lines, strict=True):
        words = line.split()
        states[unit] = UnitState(words[0], words[-1])
    return states


def unit_states(c: Connection, units: Sequence[str]) -> dict[str, UnitState]:
    if not units:
        return {}
    return parse_unit_states(units, _run(c, unit_states_command(units)))


def image_info(c: Connection, image: str, ceph_user: str) -> str | None:
    """What ``rbd info`` says of the image, asked as the node's own Ceph client; None when it
    failed."""
    r = c.run(
        f"timeout 60 rbd --id {shlex.quote(ceph_user)} info {shlex.quote(image)}",
        hide=True,
        warn=True,
        in_stream=False,
        timeout=90,
    )
    return r.stdout if r.ok else None


# --------------------------------------------------------------------------- VRRP, VIP, mount


def parse_holds_vip(ip_addr_stdout: str, vip: str) -> bool:
    """``ip -o addr show`` lists ``inet <vip>/<len>`` on the node holding the VIP."""
    return re.search(rf"\binet {re.escape(vip)}/\d+\b", ip_addr_stdout) is not None


def unescape_mount_field(field: str) -> str:
    """A field of /proc/self/mounts as it is: the kernel writes space, tab, newline and
    backslash as octal escapes (\\040, \\011, \\012, \\134)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounted(mounts: str, mount_point: str, devices: set[str]) -> bool:
    """Whether the volume (one of ``devices``, the block devices carrying its label) is what is
    mounted on ``mount_point``, per /proc/self/mounts (octal escapes decoded). The topmost
    mount there counts: anything else on the mount point (a bind mount of a directory, another
    file system) is not the volume."""
    target = mount_point.rstrip("/") or "/"
    top = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 2 and unescape_mount_field(fields[1]) == target:
            top = unescape_mount_field(fields[0])
    return top is not None and top in devices
