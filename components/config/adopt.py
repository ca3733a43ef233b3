"""The rules of ``nodes[].adopt``: one existing server, the first MASTER, read by the preflight."""

from __future__ import annotations

from collections.abc import Sequence

from components.config.model import Node


def adoption_problems(nodes: Sequence[Node], preflight: object) -> list[tuple[str, str]]:
    """(key, problem) for each rule an adoption breaks: one adopted server at most (the
    article's single repository); the top priority (it serves the volume today, so its
    keepalived starts first, MASTER); the preflight on (it reads the VM the import declares)."""
    adopted = [n for n in nodes if n.adopt]
    if not adopted:
        return []
    first = adopted[0]
    found = []
    if len(adopted) > 1:
        names = ", ".join(n.name for n in adopted)
        found.append(("nodes", f"adopt is set on {names}: one existing server can be adopted"))
    elif any(n.priority >= first.priority for n in nodes if not n.adopt):
        found.append(
            (
                "nodes",
                f"{first.name}.priority {first.priority}: the adopted server serves the volume "
                "today and must start first, as MASTER: give it the highest priority",
            )
        )
    if preflight is False:
        found.append(
            (
                "preflight",
                f"false, but {first.name} is adopted: the preflight reads its VM from vCenter, "
                "so that the import declares it as it is",
            )
        )
    return found
