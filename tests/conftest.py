"""Shared fixtures. Tier fixtures live beside their tests (tests/<tier>/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import settings

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("lab", "sim")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def stack_settings(stack: str) -> settings.Settings:
    return settings.load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))
