"""`fab vcsim-up` / `fab vcsim-down`: the embedded lab's vCenter (vcsim on 127.0.0.1)."""

from __future__ import annotations

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components import labvcsim
from components.settings import ConfigError, load_stack_file, stack_file
from components.stack_secrets import pulumi_cli

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
    started = labvcsim.start(s, binary, labvcsim.STATE)
    created = labvcsim.ensure_template(s)
    print(
        f"vcsim {'started' if started else 'already running'} on {s.vsphere_server}; "
        f"template {s.template!r} {'created' if created else 'present'}"
    )


@task(help={"stack": _HELP["stack"]})
def vcsim_down(c: Context, stack: str = "sim") -> None:
    """Stop vcsim (its inventory lives in memory only)."""
    labvcsim.stop(labvcsim.STATE)
    print("vcsim stopped")
