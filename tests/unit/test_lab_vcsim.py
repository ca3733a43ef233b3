"""The lab's vcsim pid file: only a vcsim the lab started is ever signalled."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.lab import vcsim

pytestmark = pytest.mark.unit


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "vcsim.pid").write_text(f"{other.pid} 127.0.0.1:8989\n")
        assert vcsim.running(tmp_path) is None
        vcsim.stop(tmp_path)
        assert other.poll() is None, "stop() killed a process that is not our vcsim"
        assert not (tmp_path / "vcsim.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_an_old_pid_file_format_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "vcsim.pid").write_text("1\n")  # pid only: init, surely not ours
    assert vcsim.running(tmp_path) is None
