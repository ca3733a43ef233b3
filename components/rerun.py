"""What the "run again when an input changes" dynamic resources share, and their engine log.

ClusterCheck and VrrpRollout each do one piece of work over SSH (a check, a cluster-wide VRRP
change) on create and on every update whose watched inputs changed; they never replace and
keep their inputs as outputs beside the work's result. :class:`RerunProvider` is that
provider once; a subclass names what it watches, its id and the work.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


class RerunProvider(ResourceProvider):
    """Runs :meth:`run` with the inputs on create and on an update of a ``watched`` input."""

    watched: ClassVar[tuple[str, ...]]
    resource_id: ClassVar[str]

    def run(self, inputs: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
        """The work; its outputs (added to the inputs), or an exception failing the step.
        ``olds``: the previous inputs on an update (None on create)."""
        raise NotImplementedError

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.watched if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _outs(self, props: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
        inputs = {k: v for k, v in props.items() if k != "__provider"}
        return {**inputs, **self.run(inputs, olds)}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=self.resource_id, outs=self._outs(props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._outs(news, olds))


def log_info(message: str) -> None:
    """To the engine's log (shown by ``pulumi up``); printed outside an engine (tests, CLI)."""
    try:
        pulumi.log.info(message)
    except Exception:
        print(message)


def log_warn(message: str) -> None:
    """A warning in the engine's log; printed outside an engine."""
    try:
        pulumi.log.warn(message)
    except Exception:
        print(message)
