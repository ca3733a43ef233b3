"""VrrpRollout: ``pulumi up``'s cluster-wide VRRP change, before any node's converge step.

Each NodeConverge converges one node; left to them, a new auth_pass or advert interval would
reach the nodes one after the other and, in between, both would be MASTER. So this resource
runs first (every NodeConverge depends on it) and hands a cluster-wide change to
components/converge/rollout.py, the code ``fab converge`` runs: the other running nodes
stopped, the MASTER reloaded alone, the others started with the new file; and before it,
the nodes removed from the stack are released and stopped (they run until their VM goes, at
the end of the update, and would take the VIP beside peers that no longer list them). When
no running node has other parameters (a first deployment, a per-node change) it only looks.
It runs whenever a node's bundle or the stack's config changes, before any VM is created,
replaced or updated (a replaced node's old VM gets the change, its new VM its converge); a
refused change (a node unreachable) fails the update before any node is touched.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.bundle import PATHS, Bundle
from components.rerun import RerunProvider, log_info

# Inputs whose change means "look again"; not key_file (differs between machines), not
# existing (the VMs found when the program ran: a VM made by the last run is no reason)
WATCHED = ("config", "digests", "known_host_keys")


def new_machines(news: dict[str, Any], olds: dict[str, Any] | None) -> list[str]:
    """The nodes with no machine yet (added to the stack, or their VM gone): a new VM is a
    fresh disk that never ran keepalived. They are the nodes the program found no VM for
    (``existing``); when it did not look (``preflight: false``), the nodes the last run did
    not have (every node on create)."""
    names = list(news.get("nodes") or [])
    existing = news.get("existing")
    if existing is not None:
        return [n for n in names if n not in set(existing)]
    seen = set(olds.get("nodes") or []) if olds else set()
    return [n for n in names if n not in seen]


def roll(
    props: dict[str, Any], new: list[str] | None = None, olds: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Retire the nodes removed from the stack, then apply a due cluster-wide change; the
    actions taken, or RuntimeError saying why not. ``new``: the nodes whose machine is new
    (:func:`new_machines`); ``olds``: the last run's inputs (their config has the removed
    nodes)."""
    from components.bundle import BundleFile
    from components.config import load
    from components.converge import rollout
    from components.converge.ssh import Access

    s = load(dict(props["config"]))
    confs = {
        name: BundleFile(PATHS.keepalived_conf, base64.b64decode(text), 0o600, secret=True)
        for name, text in dict(props["confs"]).items()
    }
    access = Access(s.ssh_user, str(props["key_file"]), tuple(props["known_host_keys"]))
    old = load(dict(olds["config"])) if olds and olds.get("config") else None
    kept = {n.name for n in s.nodes}
    removed = [n.name for n in old.nodes if n.name not in kept] if old else []
    try:
        actions = rollout.retire(old, s, access, removed, report=log_info) if old else []
        actions += rollout.apply(s, confs, access, new=new or [], report=log_info)
    except rollout.RolloutError as e:
        raise RuntimeError(str(e)) from None
    return {"actions": actions}


class VrrpRolloutProvider(RerunProvider):
    watched = WATCHED
    resource_id = "vrrp-rollout"

    def run(self, inputs: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
        return roll(inputs, new_machines(inputs, olds), olds)


@dataclass(frozen=True)
class VrrpRolloutArgs:
    config: dict[str, Any]
    """The stack's config map without secrets (the rollout rebuilds its Settings from it)."""
    existing: list[str] | None
    """The nodes whose VM existed when the program ran (None: not looked at)."""
    bundles: dict[str, pulumi.Input[Bundle]]
    """Node name -> its bundle (secret): only keepalived.conf is sent, as a secret."""
    key_file: str
    known_host_keys: pulumi.Input[list[str]]


class VrrpRollout(Resource, module="repo-cluster", name="VrrpRollout"):
    """A cluster-wide VRRP change applied so that no two nodes run different parameters."""

    actions: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: VrrpRolloutArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        names = list(args.bundles)
        bundles = pulumi.Output.all(*(args.bundles[n] for n in names))

        def confs(bs: list[Bundle]) -> dict[str, str]:
            return {
                n: base64.b64encode(b.file(PATHS.keepalived_conf).content).decode()
                for n, b in zip(names, bs, strict=True)
            }

        props = {
            "config": args.config,
            "existing": args.existing,
            "nodes": names,
            "digests": [
                pulumi.Output.unsecret(
                    pulumi.Output.from_input(args.bundles[n]).apply(lambda b: b.digest)
                )
                for n in names
            ],
            "confs": pulumi.Output.secret(bundles.apply(confs)),
            "key_file": args.key_file,
            "known_host_keys": args.known_host_keys,
            "actions": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["confs"])
        super().__init__(
            VrrpRolloutProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
