"""`fab unfence`: remove a node's entries from Ceph's OSD blocklist after a repair.

Why a task: the fence (the notify script's ``fence_before_map``) blocklists every other node's
client instance of the image, for years, before a node maps it. A node that maps afresh gets
a new instance and needs no entry removed, so the entries only pile up (one per failover).
This removes a node's entries of instances that provably no longer exist: the node is
reachable, holds neither the VIP nor the volume, and none of its current mappings is that
instance. An entry of a live instance stays: that client could write again. Removing entries
needs more than the nodes' ``profile rbd`` key (which may add entries, never remove them):
the cluster's admin key, or a key with ``mon 'allow command "osd blocklist"'``, on the
operator's machine. A lab stack uses the lab Ceph's admin key.
"""

from __future__ import annotations

import subprocess

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.cli.common import load_stack, require
from components.config import PROJECT_ROOT, Settings
from components.converge import fleet
from components.converge.ssh import Access


def _ceph_argv(s: Settings, stack: str, conf: str, keyring: str, user: str) -> list[str]:
    if not conf and s.lab:
        from components.lab import ceph as labceph
        from components.lab.plan import load_lab

        lab = load_lab(stack)
        conf, keyring = str(labceph.conf(lab)), str(labceph.admin_keyring(lab))
    if not conf:
        raise Exit("unfence: --ceph-conf is needed (a ceph.conf naming the monitors)", code=2)
    argv = ["ceph", "-c", conf, "--id", user, "--connect-timeout", "15"]
    return [*argv, "-k", keyring] if keyring else argv


def _ceph(argv: list[str], *args: str) -> str:
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise Exit(f"unfence: ceph {' '.join(args)}: {r.stderr.strip()[-300:]}", code=1)
    return r.stdout


@task(
    positional=[],
    help={
        "stack": "Stack name.",
        "node": "The node whose blocklist entries go (by its address).",
        "ceph-conf": "ceph.conf on this machine (default for a lab stack: the lab Ceph's).",
        "keyring": "Keyring of --ceph-user (default: Ceph's own search).",
        "ceph-user": "Ceph user allowed to remove blocklist entries (default admin).",
    },
)
def unfence(
    c: Context,
    stack: str = "",
    node: str = "",
    ceph_conf: str = "",
    keyring: str = "",
    ceph_user: str = "admin",
) -> None:
    """Remove a repaired node's entries from Ceph's OSD blocklist (never while it can write)."""
    require("unfence", stack=stack, node=node)
    loaded = load_stack(stack, "unfence")
    s = loaded.settings
    names = [n.name for n in s.nodes]
    if node not in names:
        raise Exit(f"unfence: no node {node!r} in stack {stack} (nodes: {names})", code=2)
    ip = str(s.node(node).ip)
    access = Access.for_stack(s, PROJECT_ROOT, loaded.secrets.public_host_keys, False)
    st = fleet.node_status(s, s.node(node), access)
    if st.vrrp_state in ("UNREACHABLE", "UNKNOWN") or st.holds_vip or st.mounted:
        raise Exit(
            f"unfence: refused: {node} is {st.vrrp_state}, VIP {'here' if st.holds_vip else '-'}"
            f", volume {'mounted' if st.mounted else '-'}: unfence only a node that cannot write "
            "(not holding the VIP or the volume, and reachable to prove it)",
            code=1,
        )
    argv = _ceph_argv(s, stack, ceph_conf, keyring, ceph_user)
    entries = [
        line.split()[0]
        for line in _ceph(argv, "osd", "blocklist", "ls").splitlines()
        if line.strip() and line.split(":", 1)[0] == ip
    ]
    # an entry of an instance the node still maps is not removed: that client could write
    live = [e for e in entries if e in st.clients]
    for entry in live:
        print(f"unfence: kept {entry}: {node} still maps the image with that client")
    entries = [e for e in entries if e not in live]
    if not entries:
        print(f"unfence: no blocklist entry of a gone instance of {node} ({ip}): nothing to do")
        return
    for entry in entries:
        _ceph(argv, "osd", "blocklist", "rm", entry)
        print(f"unfence: removed {entry} ({node}) from the OSD blocklist")
