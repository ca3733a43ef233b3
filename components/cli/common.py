"""What every task shares: flags the operator must give."""

from __future__ import annotations

from invoke.exceptions import Exit


def require(task: str, **flags: str) -> None:
    """Every flag named here was given (tasks take flags only, never positionals, so
    ``fab TASK --help`` is always help, never a value)."""
    missing = [f"--{name.replace('_', '-')}" for name, value in flags.items() if not value]
    if missing:
        raise Exit(f"{task}: {', '.join(missing)} required (see `fab {task} --help`)", code=2)
