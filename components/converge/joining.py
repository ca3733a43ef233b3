"""A node's ``pulumi up`` converge step beside the running nodes: its keepalived start refused
on mixed versions that break a failover (fleet.refuse_mixed), and, on a new VM, the wait until
it serves, steadily, before the step ends (a rolling change touches the next node's VM only
then: components/cluster.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import components.converge.fleet as fleet
import components.converge.status as status
from components.config import Node, Settings, load
from components.converge.ssh import Access


def wait_in_service(
    s: Settings,
    node: Node,
    access: Access,
    *,
    timeout: float,
    steady: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, status.NodeStatus]:
    """Poll ``node`` until it has been serving (:func:`status.serving`) without a break for
    ``steady`` seconds (a node that just started is BACKUP until its election ends), or
    ``timeout``; whether it serves, and its last status."""
    deadline = clock() + timeout
    since: float | None = None
    while True:
        st = fleet.node_status(s, node, access)
        now = clock()
        since = (since if since is not None else now) if status.serving(st) else None
        if since is not None and now - since >= steady:
            return True, st
        if now >= deadline:
            return False, st
        sleep(1.0)


class NotInService(RuntimeError):
    """A node just converged on a new VM does not serve (neither MASTER nor BACKUP)."""


@dataclass
class Joining:
    """A node's converge step (``pulumi up``) beside the running nodes of the stack
    ``config`` (without secrets): its keepalived start refused on mixed versions
    (:func:`fleet.refuse_mixed`), and, on a new VM, :meth:`await_service`."""

    config: Mapping[str, Any]
    name: str
    access: Access

    def __post_init__(self) -> None:
        self.s = load(dict(self.config))
        self.gate = fleet.StartOrder(
            [self.s.node(self.name)],
            0,
            lambda _c: True,
            check=fleet.refuse_mixed(self.s, self.access),
        )

    def await_service(self) -> str:
        """Wait (bounded: the settle time and a steady election) until the node, converged
        on a new VM, serves; what it reports, or NotInService saying what it reports."""
        s, node = self.s, self.s.node(self.name)
        steady = 3 * s.advert_seconds + 1  # past its election: a new node starts as BACKUP
        ok, st = wait_in_service(
            s, node, self.access, timeout=fleet.settle_timeout(s) + steady, steady=steady
        )
        if not ok:
            raise NotInService(
                f"{node.name}: converged on its new VM but not serving ({st.summary}); the "
                "nodes after it are left untouched: see `fab status`, fix it, run `pulumi up` "
                "again"
            )
        return f"{node.name}: serving on its new VM: {st.summary}"
