"""What a node's converge did: the files it changed, every action it ran, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeResult:
    node: str
    changed: list[str] = field(default_factory=list)
    """Bundle paths written or re-owned/re-moded."""
    steps: list[str] = field(default_factory=list)
    """``step: command`` for every change made, in order."""
    error: str | None = None
    """``<node>: <step>: <message>`` when the converge stopped early."""
    first_contact_fingerprint: str | None = None
    """The node's own host key, accepted on first contact (None: it had the shared key)."""
    verified: str | None = None
    """How the first connection's host key was trusted (:class:`Verified` value)."""
    host_key: str | None = None
    """The fingerprint of the host key the first connection was shown."""

    @property
    def count(self) -> int:
        return len(self.changed)

    @property
    def actions(self) -> list[str]:
        """The commands run besides the file writes (a restart, a reload, an install...)."""
        writes = ("sources: ", "files: ", "secrets: ")
        return [s for s in self.steps if not s.startswith(writes)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": list(self.changed),
            "count": self.count,
            "actions": self.actions,
            "error": self.error,
        }
