"""Helpers every tier shares (fixtures stay in each tier's conftest.py)."""

from __future__ import annotations

from pathlib import Path

from components.bundle.hostkeys import HostKey, generate
from components.config import Settings, load_stack_file

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("lab", "sim")


def write_operator_key(folder: Path, comment: str) -> Path:
    """An operator key pair (``operator`` + ``operator.pub``) in ``folder``: the program refuses
    to build nodes nobody can log in to. Returns the private key's path (sshKeyFile)."""
    key = next(k for k in generate(comment) if k.type == "ed25519")
    (folder / "operator").write_text(key.private)
    (folder / "operator.pub").write_text(key.public + "\n")
    return folder / "operator"


def vm_host_key(comment: str) -> HostKey:
    """An ed25519 host key as a VM makes its own at first boot (ssh-keygen's job there)."""
    return next(k for k in generate(comment) if k.type == "ed25519")


def stack_settings(stack: str) -> Settings:
    return load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
