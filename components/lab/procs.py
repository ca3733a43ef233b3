"""The embedded lab's processes: finding every process inside a node's namespaces, and
stopping them (TERM, then KILL after a grace period); never a pid that is not the lab's."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from components.lab.net import LabError, is_mountpoint


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
    """Every process inside any of the given namespaces (network, mount or UTS)."""
    wanted = _ns_ids(files)
    if not wanted:
        return []
    found: list[int] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for kind in ("net", "mnt", "uts"):
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


def is_lab_daemon(pid: int) -> bool:
    """Whether ``pid`` is an sshd or keepalived the lab started (marked by its pid file option:
    host daemons, if any, lack it)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    marks = {"sshd": "PidFile=/run/sshd.pid", "keepalived": "/run/keepalived/keepalived.pid"}
    return comm in marks and marks[comm] in cmdline


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
