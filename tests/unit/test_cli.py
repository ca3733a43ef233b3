"""The operator CLI behaves as Invoke users expect: `fab TASK --help` is help, `fab -l`
shows whole first lines, a missing required flag is a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fabfile

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")
TASKS = sorted(name.replace("_", "-") for name in fabfile.__all__)


def fab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("task", TASKS)
def test_task_help_is_help(task: str) -> None:
    r = fab(task, "--help")
    assert r.returncode == 0, r.stderr
    assert f"fab [--core-opts] {task} [--options]" in r.stdout
    assert "--stack" in r.stdout


@pytest.mark.parametrize("task", TASKS)
def test_first_docstring_line_is_a_whole_sentence(task: str) -> None:
    doc = getattr(fabfile, task.replace("-", "_")).__doc__
    first = doc.strip().splitlines()[0]
    assert first.endswith("."), f"{task}: `fab -l` would cut {first!r}"


@pytest.mark.parametrize(("task", "missing"), [("status", "--stack"), ("render", "--stack, --out")])
def test_missing_flag_is_named(task: str, missing: str) -> None:
    r = fab(task)
    assert r.returncode == 2
    assert f"{task}: {missing} required" in r.stderr
