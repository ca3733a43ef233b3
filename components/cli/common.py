"""What every task shares: flags the operator must give, and loading a stack's settings
and secrets from wherever they are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from invoke.exceptions import Exit

import components.cli.stack_state as stack_state
from components.bundle import Secrets
from components.bundle.guestinfo import stack_marker
from components.config import PROJECT_ROOT, ConfigError, Settings, load_stack_file, stack_file
from components.lab import deploy
from components.lab import secrets as labsecrets
from components.vcenter import published


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


def published_keys(
    s: Settings, stack: str, report: Callable[[str], None]
) -> tuple[tuple[str, str], ...]:
    """(node, host public key its VM publishes) read from vCenter (components/vcenter/
    published.py); none, reported, when vCenter cannot be read: a converged node needs only
    the shared keys."""
    stack_id = stack_marker(deploy.PROJECT_NAME, stack)
    try:
        keys = published.read(published.VCenter.of(s), stack_id, [n.name for n in s.nodes])
    except Exception as e:  # unreachable, a login refused, a vSphere fault: say which
        report(
            f"host keys the VMs publish not read from {s.vsphere_server}: {type(e).__name__}: {e}"
        )
        return ()
    return tuple(sorted(keys.items()))


def _lab_stack(stack: str) -> Settings | None:
    """The settings of a lab stack (``lab: true``), else None."""
    try:
        s = load_stack_file(stack_file(stack, PROJECT_ROOT))
    except (OSError, ConfigError):
        return None
    return s if s.lab else None


def load_stack(stack: str, task: str, lab_secrets: bool = False) -> Loaded:
    """Settings and secrets of ``stack``: from its Pulumi state; for a lab stack, from the
    lab's Pulumi state when ``make lab`` deployed it, else (or with ``lab_secrets``) from the
    lab's own secrets. Exit 2 naming the problem."""
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
            )
        if lab is not None:
            where, env = deploy.project_dir(stack), deploy.environment()
            source = "the lab's Pulumi state (.lab/pulumi)"
        else:
            where, env, source = PROJECT_ROOT, None, "the stack's Pulumi state"
        s, host_keys, auth_pass = stack_state.load(stack, where, env)
    except (stack_state.StackStateError, labsecrets.LabSecretsError, ConfigError, OSError) as e:
        raise Exit(f"{task}: {e}", code=2) from None
    secrets = Secrets.resolve(s, host_keys=host_keys, vrrp_auth_pass=auth_pass)
    return Loaded(s, secrets, s.dns_tsig_secret.value, source)
