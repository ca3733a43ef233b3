"""`fab lab-up --stack sim` / `fab lab-down --stack sim`: the embedded lab and its VMs.

Thin tasks over :mod:`components.lab` (which draws the topology). Root only; addresses outside
198.18.0.0/15 are refused before anything is created.
"""

from __future__ import annotations

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components import lab
from components.config import ConfigError, stack_file
from components.lab.legacy import make_server

_HELP = {
    "stack": "stack whose Pulumi.<stack>.yaml describes the lab (default: sim)",
    "vms": "also make the nodes' VMs in vcsim from the rendered bundles and wait for their "
    "first boot (the path without the vSphere plugin); --no-vms leaves them to `pulumi up`",
}


def _stack_file(stack: str) -> None:
    path = stack_file(stack, lab.REPO)
    if not path.is_file():
        raise Exit(f"no stack file {path}", code=2)


@task(help=_HELP)
def lab_up(c: Context, stack: str = "sim", vms: bool = True) -> None:
    """Build the lab (bridge, Ceph, DNS, vcsim, the host agent) and its VMs; idempotent."""
    _stack_file(stack)
    try:
        lab.lab_up(stack, vms=vms)
    except (lab.LabError, ConfigError) as exc:
        raise Exit(f"lab-up: {exc}", code=1) from exc


@task(help={"stack": _HELP["stack"]})
def lab_down(c: Context, stack: str = "sim") -> None:
    """Remove every trace of the lab (VMs, taps, bridge, daemons, disks, files)."""
    _stack_file(stack)
    try:
        lab.lab_down(stack)
    except (lab.LabError, ConfigError) as exc:
        raise Exit(f"lab-down: {exc}", code=1) from exc


@task(help={"stack": _HELP["stack"], "node": "the node whose VM is the server (default: repo1)"})
def lab_legacy_server(c: Context, stack: str = "sim", node: str = "repo1") -> None:
    """Make the article's single repository server in the lab, for the stack to adopt.

    Its VM in vcsim, the volume mapped and mounted by its own unit; prints its hostKey."""
    _stack_file(stack)
    try:
        lab.lab_up(stack, vms=False)
        fingerprint = make_server(lab.load_lab(stack), node, lab.REPO)
    except (lab.LabError, ConfigError) as exc:
        raise Exit(f"lab-legacy-server: {exc}", code=1) from exc
    print(f"{node}: hostKey {fingerprint} (its own; set it with adopt: true on the node)")
