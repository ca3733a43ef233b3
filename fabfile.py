"""Operator CLI: `.venv/bin/fab -l` lists the tasks. Each task lives in components/cli/."""

from components.cli.converge import converge, status
from components.cli.dns import dns
from components.cli.drill import drill
from components.cli.lab import lab_down, lab_legacy_server, lab_up
from components.cli.render import render
from components.cli.switchover import switchover
from components.cli.unfence import unfence
from components.cli.vcsim import vcsim_down, vcsim_up

__all__ = [
    "converge",
    "dns",
    "drill",
    "lab_down",
    "lab_legacy_server",
    "lab_up",
    "render",
    "status",
    "switchover",
    "unfence",
    "vcsim_down",
    "vcsim_up",
]
