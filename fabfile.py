"""Operator CLI: `.venv/bin/fab -l` lists the tasks. Each task lives in components/tasks/."""

from components.tasks.render import render

__all__ = ["render"]
