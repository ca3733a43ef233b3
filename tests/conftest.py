"""Shared fixtures. Tier fixtures live beside their tests (tests/<tier>/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import settings
from components.hostkeys import generate

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("lab", "sim")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def write_operator_key(folder: Path, comment: str) -> Path:
    """An operator key pair (``operator`` + ``operator.pub``) in ``folder``: the program refuses
    to build nodes nobody can log in to. Returns the private key's path (sshKeyFile)."""
    key = next(k for k in generate(comment) if k.type == "ed25519")
    (folder / "operator").write_text(key.private)
    (folder / "operator.pub").write_text(key.public + "\n")
    return folder / "operator"


def stack_settings(stack: str) -> settings.Settings:
    return settings.load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))
