"""Operations: desired state (the bundle) + facts -> the commands that close the gap.

Pure functions, pyinfra style: no I/O, so every decision is unit-tested as
``(bundle, facts) -> commands``, and a node that already matches yields no command at all.
:mod:`components.converge` gathers the facts and runs what these return.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping

from components.bundle import PATHS, BundleFile
from components.bundle.packages import DEBIAN_LIKE
from components.converge.facts import UnitState

# the file writes live in writes.py; the converge reaches them through here
from components.converge.writes import DAEMON_RELOAD as DAEMON_RELOAD
from components.converge.writes import KEEPALIVED as KEEPALIVED
from components.converge.writes import SSHD as SSHD
from components.converge.writes import UNIT_DIRS
from components.converge.writes import FileChange as FileChange
from components.converge.writes import check_files_script as check_files_script
from components.converge.writes import clear_owed as clear_owed
from components.converge.writes import config_test as config_test
from components.converge.writes import file_changes as file_changes
from components.converge.writes import reloads_owed as reloads_owed
from components.converge.writes import write_files_script as write_files_script

q = shlex.quote
# `systemctl is-enabled` words that mean "nothing to enable".
ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient")


# --------------------------------------------------------------------------- sysctl


def is_package_source(path: str) -> bool:
    """Repository definitions: written before packages are installed, so the install uses them
    (on an adopted EL7 server the shipped mirrorlists are dead)."""
    return path.startswith(("/etc/yum.repos.d/", "/etc/apt/sources.list.d/"))


def is_sysctl_file(path: str) -> bool:
    return path == "/etc/sysctl.conf" or (
        path.startswith("/etc/sysctl.d/") and path.endswith(".conf")
    )


def sysctl_settings(content: bytes) -> dict[str, str]:
    """``key = value`` lines of a sysctl file (comments and blanks skipped)."""
    settings: dict[str, str] = {}
    for raw in content.decode().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.lstrip("-").partition("=")
        if sep:
            settings[key.strip().replace("/", ".")] = " ".join(value.split())
    return settings


def apply_sysctl(
    files: Iterable[BundleFile], changed: Iterable[str], live: Mapping[str, str]
) -> list[str]:
    """``sysctl -p <file>`` for each sysctl file that changed or whose live values differ."""
    changed = set(changed)
    commands = []
    for f in files:
        if not is_sysctl_file(f.path):
            continue
        wanted = sysctl_settings(f.content)
        if f.path in changed or any(live.get(k) != v for k, v in wanted.items()):
            commands.append(f"sysctl -p {q(f.path)}")
    return commands


# --------------------------------------------------------------------------- units


def daemon_reload(changed: Iterable[str], owed: Iterable[str] = ()) -> list[str]:
    """After a unit file changed, or when an earlier run wrote one and stopped before this."""
    needed = any(p.startswith(UNIT_DIRS) for p in changed) or DAEMON_RELOAD in owed
    return ["systemctl daemon-reload"] if needed else []


def enable_services(services: Iterable[str], states: Mapping[str, UnitState]) -> list[str]:
    return [
        f"systemctl enable {q(s)}"
        for s in services
        if states.get(s, UnitState("unknown", "unknown")).enabled not in ENABLED
    ]


def start_services(services: Iterable[str], states: Mapping[str, UnitState]) -> list[str]:
    """Start what is not running, keepalived aside (:func:`keepalived` owns it).

    A changed unit is not restarted: restarting the rbd unit would unmap the device under the
    MASTER's mount; the new unit takes effect at its next start.
    """
    return [
        f"systemctl start {q(s)}"
        for s in services
        if s != PATHS.keepalived_unit
        and states.get(s, UnitState("unknown", "unknown")).active != "active"
    ]


def retire_boot_units(units: Iterable[str], states: Mapping[str, UnitState]) -> list[str]:
    """Units an earlier bundle enabled at boot and this one starts on demand only (the rbd
    unit: only the MASTER maps). Never stopped here: on the MASTER it carries the mounted
    volume; the notify script unmaps it when the node stops being MASTER."""
    retire = [
        u for u in units if states.get(u, UnitState("unknown", "unknown")).enabled == "enabled"
    ]
    if not retire:
        return []
    links = " ".join(q(f"/etc/systemd/system/multi-user.target.wants/{u}") for u in retire)
    return [f"rm -f {links}", "systemctl daemon-reload"]


def image_feature_problem(image: str, rbd_info: str | None) -> str | None:
    """Why the image cannot be fenced (no exclusive-lock feature), or None. ``rbd_info``:
    what ``rbd info`` printed, None when it failed (Ceph unreachable, no such image)."""
    if rbd_info is None:
        return f"image {image}: `rbd info` failed: the node cannot reach it as its Ceph client"
    for line in rbd_info.splitlines():
        if line.strip().startswith("features:"):
            features = line.split(":", 1)[1].replace(" ", "").split(",")
            if "exclusive-lock" in features:
                return None
            return (
                f"image {image} lacks the exclusive-lock feature (it has: {','.join(features)}): "
                "without it nothing fences a second writer, and the nodes refuse to mount it. "
                f"Enable it on the Ceph cluster: rbd feature enable {image} exclusive-lock"
            )
    return f"image {image}: `rbd info` printed no features line"


# --------------------------------------------------------------------------- daemons


def sshd_unit(family: str) -> str:
    return "ssh.service" if family in DEBIAN_LIKE else "sshd.service"


def host_keys_changed(changed: Iterable[str]) -> bool:
    return any(PATHS.is_host_key(p) for p in changed)


def restart_sshd(
    family: str, changed: Iterable[str], presents_shared_key: bool, owed: Iterable[str] = ()
) -> list[str]:
    """Restart sshd when the host keys changed, or when it still serves other keys (a converge
    that installed them but stopped before the restart), or a restart is owed. ``sshd -t``
    first: a config or key sshd cannot load would lock us out after the restart. Then publish
    the key sshd now serves (components/vcenter/published.py).
    """
    if presents_shared_key and not host_keys_changed(changed) and SSHD not in owed:
        return []
    # then the node publishes the key it now serves in its guestinfo (not its first-boot one)
    publish = f"systemctl restart {q(PATHS.publish_host_key_unit)}"
    return ["sshd -t", f"systemctl restart {sshd_unit(family)}", publish]


def keepalived(
    family: str, changed: Iterable[str], active: str, owed: Iterable[str] = ()
) -> list[str]:
    """Validate then reload on a config/notify change (or one an earlier run wrote and did not
    reload: ``owed``); start when not running. A keepalived.conf this converge writes was
    checked before it was installed (:func:`write_files_script`); the check here guards the
    reload of a file installed before (an older converge, or by hand).

    A running keepalived is reloaded (SIGHUP re-reads the config and keeps the VRRP state),
    never restarted: a restart of the MASTER's keepalived gives the VIP and the volume away,
    killing the Veeam data movers working on it. keepalived 1.3.5 (el7) has no
    ``--config-test`` (added in 2.0.4): there the reload/start is the test.
    """
    touched = KEEPALIVED in owed or any(
        p in (PATHS.keepalived_conf, PATHS.notify_script) for p in changed
    )
    running = active == "active"
    if running and not touched:
        return []
    validate = (
        [f"keepalived -t -f {q(PATHS.keepalived_conf)}"] if touched and family != "el7" else []
    )
    return [*validate, f"systemctl {'reload' if running else 'start'} {PATHS.keepalived_unit}"]


def release_before_start() -> str:
    """Before keepalived starts on a node: release whatever holds the volume there without it,
    with the notify script's own STOP (a no-op where nothing is mounted or mapped). The server
    being adopted has the volume mapped and mounted by the article's unit; only keepalived's
    MASTER may hold it, mapped exclusively after the fence, so it goes first: one unmount,
    then the MASTER's mount (README, Adopting the existing repository server)."""
    return f"{q(PATHS.notify_script)} INSTANCE converge-first-start STOP"


def release_command() -> str:
    """Release the volume first, with the notify script's own STOP (under its lock: holders
    killed, only the labelled volume unmounted, never lazily), and stop keepalived (which hands
    the VIP to the peer) only once that succeeded: if the release fails, keepalived keeps
    running so the peer never mounts while this node may still have the volume."""
    notify = q(PATHS.notify_script)
    return (
        f"if [ -x {notify} ]; then {notify} INSTANCE pulumi-delete STOP || "
        "{ echo 'volume not released: keepalived left running' >&2; exit 1; }; fi; "
        f"systemctl stop {q(PATHS.keepalived_unit)}"
    )
