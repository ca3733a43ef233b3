"""ClusterCheck: ``pulumi up`` ends by checking the cluster, as ``fab converge`` does.

After every node's converge step, the check waits (bounded: a few VRRP adverts) until exactly
one node is MASTER, holds the VIP and has the volume mounted, every other node BACKUP with
neither; otherwise the update fails saying what each node reported. It runs again whenever a
node's VM or bundle changes (a no-op ``pulumi up`` runs nothing). Strict host keys only: the
check never trusts first contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.rerun import RerunProvider

# Inputs whose change means "check again"; not key_file (differs between machines)
WATCHED = ("config", "vm_ids", "digests", "known_host_keys")


def check(props: dict[str, Any]) -> dict[str, Any]:
    """Wait for one MASTER with VIP and mount; the statuses, or RuntimeError naming the
    problems and what each node said."""
    from components.config import load
    from components.converge import fleet
    from components.converge.ssh import Access

    s = load(dict(props["config"]))
    access = Access(s.ssh_user, str(props["key_file"]), tuple(props["known_host_keys"]))
    statuses, problems = fleet.wait_for_cluster(s, access, timeout=fleet.settle_timeout(s))
    seen = "; ".join(f"{st.name}: {st.summary}" for st in statuses)
    if problems:
        raise RuntimeError(f"cluster check failed: {'; '.join(problems)} [{seen}]")
    return {"seen": seen}


class ClusterCheckProvider(RerunProvider):
    watched = WATCHED
    resource_id = "cluster-check"

    def run(self, inputs: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
        return check(inputs)


@dataclass(frozen=True)
class ClusterCheckArgs:
    config: dict[str, Any]
    """The stack's config map without secrets (the check rebuilds its Settings from it)."""
    vm_ids: list[pulumi.Input[str]]
    digests: list[pulumi.Input[str]]
    """Every node's bundle digest: a changed bundle is checked again."""
    key_file: str
    known_host_keys: pulumi.Input[list[str]]


class ClusterCheck(Resource, module="repo-cluster", name="ClusterCheck"):
    """Exactly one MASTER holds the VIP and the mount, or the update fails."""

    seen: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterCheckArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "config": args.config,
            "vm_ids": args.vm_ids,
            "digests": args.digests,
            "key_file": args.key_file,
            "known_host_keys": args.known_host_keys,
            "seen": None,
        }
        super().__init__(ClusterCheckProvider(), name, props, opts)
