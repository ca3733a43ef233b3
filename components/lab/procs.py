"""The embedded lab's processes: each node's init (PID 1 of the node's own PID namespace),
finding every process inside a node's namespaces, and stopping them (TERM, then KILL after a
grace period); never a pid that is not the lab's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from components.lab.net import LabError, is_mountpoint, node_exec, ns_files
from components.lab.plan import Lab, LabNode


def _ns_ids(files: Iterable[Path]) -> set[tuple[int, int]]:
    ids: set[tuple[int, int]] = set()
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        # an unmounted namespace file is a plain empty file on /run: not a namespace
        if is_mountpoint(f):
            ids.add((st.st_dev, st.st_ino))
    return ids


def pids_in(files: Iterable[Path]) -> list[int]:
    """Every process inside any of the given namespaces (network, mount, UTS or PID)."""
    wanted = _ns_ids(files)
    if not wanted:
        return []
    found: list[int] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for kind in ("net", "mnt", "uts", "pid"):
            try:
                st = os.stat(f"/proc/{entry}/ns/{kind}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in wanted:
                found.append(int(entry))
                break
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def terminate(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM the processes, SIGKILL those still alive after ``grace`` seconds, and wait."""
    pids = [p for p in pids if _alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _alive(pid):
                _signal(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)


def kill_all(files: Iterable[Path], grace: float = 5.0) -> list[int]:
    """Terminate every process in the namespaces; repeat until none is found (a dying daemon
    may fork). Returns the pids signalled."""
    files = list(files)
    signalled: list[int] = []
    for _ in range(5):
        pids = pids_in(files)
        if not pids:
            return signalled
        terminate(pids, grace)
        signalled.extend(pids)
    left = [p for p in pids_in(files) if _alive(p)]
    if left:
        raise LabError(f"processes still running in the lab namespaces: {left}")
    return signalled


INIT_ARGV = ("tini", "-s", "--", "sleep", "infinity")
"""A lab node's init, PID 1 of its PID namespace: tini reaps the orphans (the daemons the
lab's systemctl double-forks), as a VM's init does; its child only keeps it running."""


def _nspid(pid: int | str) -> list[str]:
    """``pid``'s numbers from its own PID namespace up (the NSpid line); [] when gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    return next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])


def ns_init(pid_file: Path) -> int | None:
    """The host pid of the init of the PID namespace bound at ``pid_file``; None when the
    namespace has no live init (not made, or its init died: nothing can enter it then)."""
    return next((p for p in pids_in([pid_file]) if _nspid(p)[-1:] == ["1"] and _alive(p)), None)


def is_lab_init(pid: int) -> bool:
    """Whether ``pid`` is a lab node's init (tini as PID 1 of a PID namespace of its own):
    signalling it ends every process of that node, and nothing else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    nspid = _nspid(pid)
    argv = tuple(a.decode(errors="replace") for a in cmdline if a)
    return argv == INIT_ARGV and len(nspid) > 1 and nspid[-1] == "1"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- a node's init


_INIT = 'mount -t proc proc /proc && exec "$@"'


def start_init(lab: Lab, node: LabNode, timeout: float = 10.0) -> int:
    """The node's PID namespace and its init (tini, PID 1): entered with the node's network
    and UTS namespaces, bound at its ``pid`` namespace file, with the node's own /proc mounted
    in the node's mount namespace, so ps, pgrep, fuser and killall on the node see the node's
    processes only, as on a VM. Returns the init's host pid. Every later process of the node
    joins this namespace (``node_argv``); when the init dies, the whole node dies with it."""
    files = ns_files(lab.stack, node.name)
    files["pid"].touch()
    with open(node.runtime / "run/log/init.log", "ab") as log:  # the child keeps its own fd
        subprocess.Popen(
            [
                "nsenter",
                f"--net={files['net']}",
                f"--uts={files['uts']}",
                "unshare",
                f"--pid={files['pid']}",
                "--fork",
                "nsenter",
                f"--mount={files['mount']}",
                "--",
                "/bin/sh",
                "-c",
                _INIT,
                "lab-init",
                *INIT_ARGV,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = ns_init(files["pid"])
        if pid is not None and node_exec(lab.stack, node.name, ["true"]).returncode == 0:
            return pid
        time.sleep(0.05)
    raise LabError(f"{node.name}: its init did not start (see {node.runtime}/run/log/init.log)")


def init_alive(lab: Lab, node: LabNode) -> bool:
    return ns_init(ns_files(lab.stack, node.name)["pid"]) is not None
