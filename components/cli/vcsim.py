"""`fab vcsim-up` / `fab vcsim-down`: the embedded lab's vCenter (vcsim on 127.0.0.1)."""

from __future__ import annotations

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.cli.stack_state import pulumi_cli
from components.config import ConfigError, load_stack_file, stack_file
from components.lab import LabError
from components.lab import vcsim as labvcsim

_HELP = {
    "stack": "stack whose vsphere:* and placement keys vcsim must answer (default: sim)",
    "vcsim": "vcsim binary (default: beside the pulumi CLI from scripts/bootstrap-tools)",
}


def _settings(stack: str) -> labvcsim.Settings:
    try:
        return load_stack_file(str(stack_file(stack, labvcsim.REPO)))
    except (OSError, ConfigError) as exc:
        raise Exit(f"vcsim: {exc}", code=2) from exc


@task(help=_HELP)
def vcsim_up(c: Context, stack: str = "sim", vcsim: str = "") -> None:
    """Start vcsim (if not running) and create the template the stack clones."""
    s = _settings(stack)
    binary = vcsim or str(labvcsim.Path(pulumi_cli()).with_name("vcsim"))
    try:
        started = labvcsim.start(s, binary, labvcsim.STATE)
        created = labvcsim.ensure_template(s)
    except LabError as exc:
        raise Exit(f"vcsim-up: {exc}", code=1) from None
    print(
        f"vcsim {'started' if started else 'already running'} on {s.vsphere_server}; "
        f"template {s.template!r} {'created' if created else 'present'}"
    )


@task(help={"stack": _HELP["stack"]})
def vcsim_down(c: Context, stack: str = "sim") -> None:
    """Stop vcsim (its inventory lives in memory only)."""
    try:
        labvcsim.stop(labvcsim.STATE)
    except LabError as exc:
        raise Exit(f"vcsim-down: {exc}", code=1) from None
    print("vcsim stopped")
