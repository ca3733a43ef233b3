"""The room the notify script's rank needs above the nodes' priorities.

A MASTER that fenced its peers advertises a priority above every priority they may still
advertise (a MASTER stunned past the takeover wakes up with its old one): up to the top
priority plus one per node (:attr:`Settings.rank_ceiling`), and VRRP's highest is 254."""

from __future__ import annotations

from collections.abc import Sequence

from components.config.model import Node


def rank_problems(nodes: Sequence[Node]) -> list[tuple[str, str]]:
    """(key, problem) for each node whose priority leaves the rank no room."""
    room = 254 - len(nodes)
    return [
        (
            "nodes",
            f"{n.name}.priority {n.priority} must be at most {room} (254 minus one per node): "
            "a MASTER that fenced a stale one takes a priority above all of them",
        )
        for n in nodes
        if n.priority > room
    ]
