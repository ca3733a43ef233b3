"""Operator CLI: `.venv/bin/fab -l` lists the tasks. Each task lives in components/tasks/."""

from components.cli.converge import converge, status
from components.cli.lab import lab_down, lab_up
from components.cli.render import render
from components.cli.vcsim import vcsim_down, vcsim_up

__all__ = ["converge", "lab_down", "lab_up", "render", "status", "vcsim_down", "vcsim_up"]
