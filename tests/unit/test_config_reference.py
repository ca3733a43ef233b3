"""README.md's configuration reference is exactly what scripts/config-reference prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.config.keys import KEYS

pytestmark = pytest.mark.unit

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def generated(root: Path) -> str:
    script = root / "scripts" / "config-reference"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def readme_section(text: str) -> str:
    """The text between the markers; an AssertionError when they are missing or repeated."""
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs {START} ... {END}"
    section = text.split(START, 1)[1].split(END, 1)[0]
    return section.strip("\n") + "\n"


def test_table_has_one_row_per_key(root: Path) -> None:
    rows = [r for r in generated(root).splitlines() if r.startswith("| `")]
    names = [re.match(r"\| `([^`]+)`", r).group(1) for r in rows]  # type: ignore[union-attr]
    assert names == [k.full for k in KEYS]
    assert all(r.count(" | ") == 4 for r in rows), "five columns, no stray pipe"


def test_readme_holds_the_generated_table(root: Path) -> None:
    readme = root / "README.md"
    assert readme.is_file(), "README.md is missing"
    assert readme_section(readme.read_text(encoding="utf-8")) == generated(root)
