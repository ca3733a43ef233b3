"""The nodes' VMs when the lab makes them itself (no vSphere plugin, so no ``pulumi up``), and
waiting for a VM's first boot, whoever made it.

The VMs are made in vcsim exactly as RepoNode makes them: the same guestinfo (the user-data
and meta-data of the same bundles, here rendered with the lab's own secrets) and the stack's
size; the lab's host agent then boots them like any powered-on VM of the stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import components.lab.secrets as labsecrets
import components.lab.vcsim as labvcsim
from components.bundle import authorized_keys, render_cluster
from components.bundle.guestinfo import guestinfo
from components.lab.net import LabError
from components.lab.plan import Lab, hostd_log, stack_id
from components.lab.vmexec import node_exec

BOOT_TIMEOUT = 900.0  # a first boot under emulation takes 2-3 min; a loaded CI machine: more
Say = Callable[[str], None]


def make_node_vms(lab: Lab, repo: Path, say: Say) -> None:
    """The nodes' VMs in vcsim, powered on; then wait for their first boot."""
    s = lab.settings
    secrets = labsecrets.load_or_create(s, lab.stack, repo)
    bundles = render_cluster(s, secrets, authorized_keys(s, repo, required=True))
    started = time.monotonic()
    for n in lab.nodes:
        b = bundles[n.name]
        if labvcsim.ensure_vm(s, n.name, guestinfo(b.user_data, b.meta_data, stack_id(lab))):
            say(f"lab {lab.stack}: VM {n.name} created in vcsim and powered on")
    wait_booted(lab, [n.name for n in lab.nodes], say, started)


def wait_booted(
    lab: Lab, names: list[str], say: Say, started: float, timeout: float = BOOT_TIMEOUT
) -> None:
    """Until every named VM's guest agent answers and cloud-init is done (its first boot
    included); raises LabError naming what did not come, or a cloud-init that failed."""
    pending = list(names)
    deadline = started + timeout
    while pending:
        for name in list(pending):
            machine = lab.machine(name)
            if not machine.running() or not machine.guest_ready():
                continue
            left = max(5.0, deadline - time.monotonic())
            r = node_exec(lab.stack, name, ["cloud-init", "status", "--wait"], timeout=left)
            state = (r.stdout.strip().splitlines() or ["?"])[-1]
            elapsed = time.monotonic() - started
            say(f"lab {lab.stack}: {name} booted, cloud-init {state} ({elapsed:.0f}s)")
            if "done" not in state:
                detail = node_exec(lab.stack, name, ["cloud-init", "status", "--long"]).stdout
                raise LabError(f"{name}: cloud-init did not finish cleanly:\n{detail}")
            pending.remove(name)
        if pending and time.monotonic() > deadline:
            raise LabError(
                f"lab {lab.stack}: {', '.join(pending)} did not boot within {timeout:.0f}s "
                f"(see {hostd_log(lab)} and {lab.machine(pending[0]).console})"
            )
        if pending:
            time.sleep(1)
