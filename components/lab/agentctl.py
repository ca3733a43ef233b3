"""Starting and stopping the lab's host agent (components/lab/hostd.py), a process of its own.

Its pid file is checked against the process's command line: a stale pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from components.lab.net import LabError
from components.lab.plan import REPO, Lab, hostd_log


def _pid_file(lab: Lab) -> Path:
    return lab.runtime / "hostd.pid"


def pid(lab: Lab) -> int | None:
    """The lab's host agent, only while that process is this stack's agent."""
    with suppress(OSError, ValueError):
        found = int(_pid_file(lab).read_text().split()[0])
        argv = Path(f"/proc/{found}/cmdline").read_bytes().split(b"\0")
        if b"components.lab.hostd" in argv and lab.stack.encode() in argv:
            return found
    return None


def start(lab: Lab, wait: float = 30.0) -> int:
    """Start the agent; returns its pid once it serves (or raises naming its log)."""
    lab.runtime.mkdir(parents=True, exist_ok=True)
    lab.dir.mkdir(parents=True, exist_ok=True)
    log = hostd_log(lab)
    start_at = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "components.lab.hostd", lab.stack],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )
    _pid_file(lab).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + wait
    while "agent up" not in log.read_text(errors="replace")[start_at:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"the lab's host agent did not start (see {log})")
        time.sleep(0.2)
    return proc.pid


def stop(lab: Lab) -> bool:
    """Stop the agent (the VMs run on); whether one ran."""
    found = pid(lab)
    if found is None:
        return False
    os.kill(found, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid(lab) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(found, signal.SIGKILL)
    _pid_file(lab).unlink(missing_ok=True)
    return True
