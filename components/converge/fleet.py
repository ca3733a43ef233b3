"""Every node at once: parallel converge, keepalived start order, cluster status.

Nodes converge in a thread pool, one Connection each. One thing is ordered across them: the
first start of keepalived. With ``state BACKUP`` + ``nopreempt`` whichever node starts first
wins MASTER, so a fresh cluster started in parallel would elect a random node. The
:class:`StartOrder` gate lets a node start keepalived only after every higher-priority node
has passed its keepalived step, and a node that starts it waits (bounded) until it is MASTER
while lower-priority nodes are still to come. Before a start, :func:`refuse_mixed` checks the
node against the running ones (components/converge/compat.py). Everything else runs fully in
parallel.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paramiko
from fabric import Connection

import components.converge.compat as compat
import components.converge.node as converge
import components.converge.rollout as rollout
import components.converge.ssh as sshconn
import components.converge.status as status
from components.bundle import PATHS, Bundle
from components.bundle.build import RELEASE_TIMING
from components.config import Node, Settings
from components.converge.ssh import Access

Report = Callable[[str], None]


class StartOrder:
    """Gate for first keepalived starts, highest priority first (see module doc)."""

    def __init__(
        self,
        nodes: Sequence[Node],
        settle: float,
        is_master: Callable[[Connection], bool],
        wait_limit: float = converge.INSTALL_TIMEOUT + 600,
        check: Callable[[Connection, str], None] | None = None,
    ) -> None:
        # ``nodes`` in Settings.start_order; a node waits for those before it
        self._order = [n.name for n in nodes]
        self._passed = {n.name: threading.Event() for n in nodes}
        self._settle = settle
        self._is_master = is_master
        self._wait_limit = wait_limit
        self._check = check  # before a start: refuse_mixed

    def _higher(self, node: str) -> list[str]:
        return self._order[: self._order.index(node)]

    def _lower(self, node: str) -> list[str]:
        return self._order[self._order.index(node) + 1 :]

    def wait_turn(self, c: Connection, node: str) -> None:
        if self._check is not None:
            self._check(c, node)
        deadline = time.monotonic() + self._wait_limit
        for other in self._higher(node):
            self._passed[other].wait(max(0.0, deadline - time.monotonic()))

    def started(self, c: Connection, node: str) -> None:
        if all(self._passed[n].is_set() for n in self._lower(node)):
            return  # nobody waits on this node's election
        deadline = time.monotonic() + self._settle
        while time.monotonic() < deadline and not self._is_master(c):
            time.sleep(0.3)

    def passed(self, node: str) -> None:
        self._passed[node].set()


def converge_cluster(
    s: Settings,
    bundles: Mapping[str, Bundle],
    access: Access,
    *,
    only: Sequence[str] | None = None,
    report: Report = print,
) -> dict[str, converge.NodeResult]:
    """Converge ``only`` (default: every node) in parallel; results by node name."""
    nodes = [n for n in s.start_order if only is None or n.name in only]

    def is_master(c: Connection) -> bool:
        return status.node_status(c, s, "").vrrp_state == "MASTER"

    gate = StartOrder(nodes, 3 * s.advert_seconds + 3, is_master, check=refuse_mixed(s, access))
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = {
            n.name: pool.submit(
                converge.converge_one,
                access.target(n.name, str(n.ip)),
                bundles[n.name],
                gate=gate,
                log=report,
            )
            for n in nodes
        }
        return {n.name: futures[n.name].result() for n in s.nodes if n.name in futures}


def node_status(s: Settings, node: Node, access: Access) -> status.NodeStatus:
    """One node's own view over a strict connection; UNREACHABLE with the reason on failure."""
    try:
        with sshconn.connect(access.target(node.name, str(node.ip), strict=True)) as c:
            return status.node_status(c, s, node.name)
    except (OSError, paramiko.SSHException, sshconn.HostKeyError) as e:
        return status.NodeStatus(node.name, str(node.ip), "UNREACHABLE", False, False, str(e))


def _with_ceph(
    s: Settings, statuses: list[status.NodeStatus], access: Access
) -> list[status.NodeStatus]:
    """Ceph's view, asked once (of the MASTER, else of the first node that answers), given
    to every node's status."""
    order = sorted(
        statuses, key=lambda st: (st.vrrp_state != "MASTER", st.vrrp_state == "UNREACHABLE")
    )
    answer = None
    for st in order:
        if st.vrrp_state == "UNREACHABLE":
            continue
        try:
            with sshconn.connect(access.target(st.name, st.ip, strict=True)) as c:
                answer = status.ask_ceph(c, s)
                break
        except (OSError, paramiko.SSHException, sshconn.HostKeyError):
            continue
    if answer is None:
        return statuses
    views = status.ceph_views([str(n.ip) for n in s.nodes], answer)
    return [dataclasses.replace(st, ceph=views.get(st.ip)) for st in statuses]


def cluster_status(s: Settings, access: Access, *, ceph: bool = True) -> list[status.NodeStatus]:
    """Every node's view, in parallel; with ``ceph``, Ceph's view of each too."""
    with ThreadPoolExecutor(max_workers=len(s.nodes)) as pool:
        statuses = list(pool.map(lambda n: node_status(s, n, access), s.nodes))
    return _with_ceph(s, statuses, access) if ceph else statuses


def wait_for_cluster(
    s: Settings, access: Access, timeout: float
) -> tuple[list[status.NodeStatus], list[str]]:
    """Poll the nodes until exactly one MASTER holds the VIP and the mount, or ``timeout``;
    then ask Ceph once. Returns the last statuses and what is still wrong (empty when
    settled)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = cluster_status(s, access, ceph=False)
        problems = status.cluster_problems(statuses)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    statuses = _with_ceph(s, statuses, access)
    return statuses, status.cluster_problems(statuses) + compat.problems_of(s, access, statuses)


def refuse_mixed(s: Settings, access: Access) -> Callable[[Connection, str], None]:
    """The check before a node's keepalived starts: StepError naming what breaks a failover
    between it and the running nodes (it does not start; they serve on)."""

    def check(c: Connection, name: str) -> None:
        peers = [st for st in cluster_status(s, access, ceph=False) if st.name != name]
        found = compat.problems_of(s, access, peers, {name: compat.node_versions(c)})
        if found:
            raise converge.StepError("keepalived", "; ".join(found) + " (keepalived not started)")

    return check


# --------------------------------------------------------------------------- whole stack


@dataclass(frozen=True)
class Outcome:
    """A stack converge: per-node results, then the cluster as the nodes report it."""

    results: dict[str, converge.NodeResult]
    statuses: list[status.NodeStatus]
    problems: list[str]
    vrrp: tuple[str, ...] = ()
    """A cluster-wide VRRP change's actions (components/converge/rollout.py), in order."""
    vrrp_error: str | None = None
    """Why the cluster-wide VRRP change was refused or stopped: then no node was converged."""

    @property
    def ok(self) -> bool:
        return (
            self.vrrp_error is None
            and not self.problems
            and all(r.error is None for r in self.results.values())
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "vrrp": {"actions": list(self.vrrp), "error": self.vrrp_error},
            "nodes": {name: r.as_dict() for name, r in self.results.items()},
            "ok": self.ok,
            "cluster_problems": list(self.problems),
        }


def settle_timeout(s: Settings) -> float:
    """How long a cluster may take to settle after a converge: the election (3 adverts), then
    the first MASTER's promotion (the fence's look at the image, the map, the mount), within
    the budget its volume check gives it."""
    return 3 * s.advert_seconds + RELEASE_TIMING.promote_budget


def converge_stack(
    s: Settings,
    bundles: Mapping[str, Bundle],
    access: Access,
    *,
    only: Sequence[str] | None = None,
    verify: bool = True,
    report: Report = print,
) -> Outcome:
    """A cluster-wide VRRP change first, if one is due (:mod:`components.converge.rollout`);
    then converge in parallel, then (``verify``) wait, bounded, for one MASTER with VIP+mount.
    A refused or failed VRRP change converges no node: a per-node reload could split them."""
    try:
        confs = {name: b.file(PATHS.keepalived_conf) for name, b in bundles.items()}
        vrrp = tuple(rollout.apply(s, confs, access, only=only, report=report))
    except rollout.RolloutError as e:
        return Outcome({}, [], [], vrrp_error=str(e))
    results = converge_cluster(s, bundles, access, only=only, report=report)
    if not verify:
        return Outcome(results, [], [], vrrp)
    statuses, problems = wait_for_cluster(s, access, timeout=settle_timeout(s))
    return Outcome(results, statuses, problems, vrrp)
