"""Shared fixtures. Tier fixtures live beside their tests (tests/<tier>/conftest.py); shared
helpers in tests/kit.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit import ROOT


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
