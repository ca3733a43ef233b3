"""What every task shares: flags the operator must give, and loading a stack's settings
and secrets from wherever they are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

import components.cli.stack_state as stack_state
from components.bundle import Secrets
from components.config import PROJECT_ROOT, ConfigError, Settings, load_stack_file, stack_file
from components.lab import deploy
from components.lab import secrets as labsecrets


def require(task: str, **flags: str) -> None:
    """Every flag named here was given (tasks take flags only, never positionals, so
    ``fab TASK --help`` is always help, never a value)."""
    missing = [f"--{name.replace('_', '-')}" for name, value in flags.items() if not value]
    if missing:
        raise Exit(f"{task}: {', '.join(missing)} required (see `fab {task} --help`)", code=2)


@dataclass(frozen=True)
class Loaded:
    """A stack's settings and secrets, and where the secrets came from."""

    settings: Settings
    secrets: Secrets
    tsig_secret: str | None = field(repr=False)
    source: str
    one_time_keys: tuple[tuple[str, str], ...] = ()
    """(node, one-time host public key) of the nodes the state has not converged yet."""


ONE_TIME_TYPE = "pulumi-python:dynamic/repo-cluster:OneTimeHostKey"
CONVERGE_TYPE = "pulumi-python:dynamic/repo-cluster:NodeConverge"


def one_time_keys(export: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The one-time host public keys in a state export, of the nodes no NodeConverge of the
    state has converged (a converged node no longer serves it: trusting it would only help
    whoever read it from the VM's guestinfo)."""
    resources = (export.get("deployment") or {}).get("resources") or []
    converged = {
        (r.get("outputs") or {}).get("node") for r in resources if r.get("type") == CONVERGE_TYPE
    }
    keys = []
    for r in resources:
        out = r.get("outputs") or {}
        mine = r.get("type") == ONE_TIME_TYPE and out.get("node") not in converged
        if mine and isinstance(out.get("public_key"), str):
            keys.append((str(out["node"]), out["public_key"]))
    return tuple(sorted(keys))


def _state_one_time_keys(stack: str, where: Path, env: Mapping[str, str] | None) -> Any:
    """Read without --show-secrets: the public halves are plain in the state."""
    export = stack_state._pulumi_json(["stack", "export", "--stack", stack], where, env)
    return one_time_keys(export or {})


def _lab_stack(stack: str) -> Settings | None:
    """The settings of a lab stack (``lab: true``), else None."""
    try:
        s = load_stack_file(stack_file(stack, PROJECT_ROOT))
    except (OSError, ConfigError):
        return None
    return s if s.lab else None


def load_stack(
    stack: str, task: str, lab_secrets: bool = False, *, one_time: bool = False
) -> Loaded:
    """Settings and secrets of ``stack``: from its Pulumi state; for a lab stack, from the
    lab's Pulumi state when ``make lab`` deployed it, else (or with ``lab_secrets``) from the
    lab's own secrets. ``one_time``: also the one-time host public keys of the nodes the
    state has not converged (a second, secret-free ``pulumi stack export``). Exit 2 naming
    the problem."""
    try:
        lab = _lab_stack(stack)
        if lab_secrets or (lab is not None and not deploy.deployed(stack)):
            s = lab or load_stack_file(stack_file(stack, PROJECT_ROOT))
            secrets = labsecrets.load_or_create(s, stack, PROJECT_ROOT)
            return Loaded(
                s,
                secrets,
                labsecrets.dns_tsig_secret(s, stack, PROJECT_ROOT),
                f"the lab's own secrets (.lab/{stack}/secrets.json)",
                tuple((n, k.public) for n, k in secrets.one_time_keys),
            )
        if lab is not None:
            where, env = deploy.project_dir(stack), deploy.environment()
            source = "the lab's Pulumi state (.lab/pulumi)"
        else:
            where, env, source = PROJECT_ROOT, None, "the stack's Pulumi state"
        s, host_keys, auth_pass = stack_state.load(stack, where, env)
        keys = _state_one_time_keys(stack, where, env) if one_time else ()
    except (stack_state.StackStateError, labsecrets.LabSecretsError, ConfigError, OSError) as e:
        raise Exit(f"{task}: {e}", code=2) from None
    secrets = Secrets.resolve(s, host_keys=host_keys, vrrp_auth_pass=auth_pass)
    return Loaded(s, secrets, s.dns_tsig_secret.value, source, keys)
