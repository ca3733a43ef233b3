"""Running a command inside a lab VM, without its network: through the QEMU guest agent.

Why not SSH: the drill kills sshd, takes the NIC down and partitions the nodes, and the lab
must still look inside and undo it (VMware Tools' guest operations serve vSphere the same
way). Each call is ``guest-exec`` in the VM as root, then its exit status and output.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from components.lab.net import LabError
from components.lab.plan import machine_dir
from components.lab.qemu import Machine


def machine(stack: str, node: str) -> Machine:
    return Machine(name=node, run_dir=machine_dir(stack, node), disk=machine_dir(stack, node))


def node_exec(
    stack: str,
    node: str,
    argv: Sequence[str],
    *,
    check: bool = False,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``node`` of ``stack``'s lab as root; output captured as text.

    Raises LabError when the VM does not answer; with ``check=True`` also on a non-zero exit.
    """
    r = machine(stack, node).exec(argv, input=input, timeout=timeout)
    if check and r.returncode != 0:
        detail = (r.stderr or r.stdout).strip()
        raise LabError(f"{node}: `{' '.join(argv)}` exited {r.returncode}: {detail}")
    return r


def node_run(
    stack: str, node: str, script: str, *, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell script (``/bin/sh -c``) in a node."""
    return node_exec(stack, node, ["/bin/sh", "-c", script], check=check, timeout=timeout)
