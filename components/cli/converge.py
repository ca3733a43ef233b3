"""`fab converge` and `fab status`: a deployed stack's nodes, over SSH with strict host keys.

Settings, secrets and the shared host keys come from the stack itself (Pulumi config and
state, components/stack_secrets.py): the CLI converges to exactly what ``pulumi up`` rendered.
"""

from __future__ import annotations

import json as _json
import sys

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.bundle import Secrets, authorized_keys, render_cluster
from components.cli.common import Loaded, load_stack, published_keys, require
from components.cli.dns import describe
from components.config import PROJECT_ROOT, Settings
from components.converge import compat, fleet
from components.converge.ssh import Access
from components.converge.status import NodeStatus, cluster_problems
from components.dns.stack import stack_record

ROOT = PROJECT_ROOT


def access_for(
    s: Settings,
    secrets: Secrets,
    trust_first_contact: bool,
    stack: str | None = None,
    published_keys: tuple[tuple[str, str], ...] = (),
) -> Access:
    """``stack``: record the host keys seen (components/converge/trust.py);
    ``published_keys``: the host keys the nodes' VMs publish (common.published_keys)."""
    return Access.for_stack(
        s,
        ROOT,
        secrets.public_host_keys,
        trust_first_contact,
        stack=stack,
        published_keys=published_keys,
    )


def _load(stack: str, task_name: str, lab_secrets: bool) -> Loaded:
    loaded = load_stack(stack, task_name, lab_secrets)
    _stderr(f"{task_name}: secrets from {loaded.source}")
    return loaded


_LAB_SECRETS_HELP = (
    "Use the embedded lab's own secrets (.lab/<stack>/secrets.json) even when the lab's Pulumi "
    "state exists (a lab stack not deployed by pulumi up uses them anyway); lab stacks only."
)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_outcome(outcome: fleet.Outcome) -> None:
    if outcome.vrrp_error:
        print(f"VRRP change refused or stopped, no node converged: {outcome.vrrp_error}")
    elif outcome.vrrp:
        print("cluster-wide VRRP change, one node at a time:")
        for action in outcome.vrrp:
            print(f"    {action}")
    for name, r in outcome.results.items():
        if r.error:
            print(f"{name}: FAILED after {r.count} change(s): {r.error}")
        elif r.count or r.actions:
            print(f"{name}: {r.count} change(s), {len(r.actions)} action(s)")
        else:
            print(f"{name}: up to date")
        for path in r.changed:
            print(f"    {path}")
        for action in r.actions:
            print(f"    ran {action}")
    print_status(outcome.statuses, outcome.problems)


def _flag(value: bool | None) -> str:
    return "?" if value is None else "yes" if value else "-"


def print_status(statuses: list[NodeStatus], problems: list[str]) -> None:
    if statuses:
        print(
            f"{'node':<12} {'ip':<16} {'vrrp':<12} {'vip':<5} {'mounted':<8} {'mapped':<7} "
            f"{'ceph-client':<12} {'lock':<5} blocklisted"
        )
        for st in statuses:
            ceph = st.ceph
            client, lock = (ceph.client, ceph.holds_lock) if ceph else (None, None)
            fenced = "?" if ceph is None or ceph.blocklisted is None else str(ceph.blocklisted)
            print(
                f"{st.name:<12} {st.ip:<16} {st.vrrp_state:<12} "
                f"{'yes' if st.holds_vip else '-':<5} {'yes' if st.mounted else '-':<8} "
                f"{'yes' if st.clients else '-':<7} {_flag(client):<12} {_flag(lock):<5} {fenced}"
                + (f"  ({st.error})" if st.error else "")
            )
        view = next((st.ceph for st in statuses if st.ceph and st.ceph.health), None)
        if view is None:
            print("ceph: not reached")
        else:
            entries = "?" if view.entries is None else str(view.entries)
            print(f"ceph: {view.health}; blocklist: {entries} entries")
            if view.foreign_lock:
                print(f"ceph: the image's lock is held by {view.foreign_lock} (not a node)")
            for entry in view.short_entries:
                print(f"ceph: {entry} is fenced for less than a year (an entry added before ours)")
    for p in problems:
        print(f"cluster: {p}")


@task(
    positional=[],
    help={
        "stack": "Stack name (its deployed state holds the shared host keys).",
        "json": "Print one JSON object instead of the summary.",
        "trust-first-contact": "Accept the own host key of a node never seen before (a fresh lab "
        "node, a server being adopted); its fingerprint is printed and recorded (.lab/<stack>/"
        "first-contact.json, else ~/.local/state/repo-cluster/<stack>/). A node seen before "
        "with another key is refused; outside a lab stack such a node gets no secret file.",
        "lab-secrets": _LAB_SECRETS_HELP,
    },
)
def converge(
    c: Context,
    stack: str = "",
    json: bool = False,
    trust_first_contact: bool = False,
    lab_secrets: bool = False,
) -> None:
    """Make every node match its bundle, in parallel; exit non-zero if any node fails."""
    require("converge", stack=stack)
    loaded = _load(stack, "converge", lab_secrets)
    s, secrets = loaded.settings, loaded.secrets
    if secrets.placeholders:
        _stderr(f"converge: placeholders in the bundles: {', '.join(secrets.placeholders)}")
    bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
    report = _stderr if json else print
    keys = published_keys(s, stack, _stderr)
    access = access_for(s, secrets, trust_first_contact, stack, keys)
    outcome = fleet.converge_stack(s, bundles, access, report=report)
    if json:
        print(_json.dumps(outcome.as_dict(), indent=2))
    else:
        print_outcome(outcome)
    if not outcome.ok:
        raise Exit(code=1)


@task(
    positional=[],
    help={
        "stack": "Stack name (its deployed state holds the shared host keys).",
        "json": "Print one JSON object instead of the table.",
        "lab-secrets": _LAB_SECRETS_HELP,
    },
)
def status(c: Context, stack: str = "", json: bool = False, lab_secrets: bool = False) -> None:
    """Show each node's VRRP state, VIP and mount; exit 1 unless one MASTER holds both.

    Exactly one node must be MASTER, hold the VIP and have the volume mounted; every other
    node must be BACKUP with neither; and no two nodes may run versions that break a failover
    between them (keepalived's unicast VRRPv3 checksum, XFS features a kernel cannot mount).
    """
    require("status", stack=stack)
    loaded = load_stack(stack, "status", lab_secrets)
    _stderr(f"status: secrets from {loaded.source}")
    s, secrets = loaded.settings, loaded.secrets
    access = access_for(s, secrets, False)
    statuses = fleet.cluster_status(s, access)
    problems = cluster_problems(statuses) + compat.problems_of(s, access, statuses)
    rec = stack_record(s, loaded.tsig_secret)
    dns_line, dns_problems = describe(rec) if rec else (None, [])
    problems += dns_problems
    if json:
        doc = {
            "nodes": [st.as_dict() for st in statuses],
            "vip": str(s.vip.ip),
            "dns": dns_line,
            "problems": problems,
        }
        print(_json.dumps(doc, indent=2))
    else:
        print(f"VIP {s.vip.ip}")
        if dns_line:
            print(dns_line)
        print_status(statuses, problems)
    if problems:
        raise Exit(code=1)
