"""Operator CLI: `.venv/bin/fab -l` lists the tasks. Each task lives in components/tasks/."""

from components.tasks.converge import converge, status
from components.tasks.lab import lab_down, lab_up
from components.tasks.render import render
from components.tasks.vcsim import vcsim_down, vcsim_up

__all__ = ["converge", "lab_down", "lab_up", "render", "status", "vcsim_down", "vcsim_up"]
