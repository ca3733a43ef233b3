"""`fab switchover`: planned move of the MASTER role to the peer, on any stack.

Why a task: maintenance on the active node should cost a few seconds of SSH on the VIP, not a
failover's detection time, and the order (release the volume, then let the peer mount) must not
depend on the operator's memory. The work is components/converge/switchover.py; this module
loads the stack, optionally watches the VIP over SSH every 100 ms, and prints what happened.
"""

from __future__ import annotations

import json as _json
import sys
import time

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.cli.common import load_stack, require
from components.config import PROJECT_ROOT
from components.converge.probe import VipProber, VipSsh
from components.converge.ssh import Access
from components.converge.switchover import switchover as do_switchover


@task(
    positional=[],
    help={
        "stack": "Stack name (its deployed state holds the shared host keys).",
        "json": "Print one JSON object instead of the step list.",
        "watch": "Probe ssh on the VIP every 100 ms meanwhile and report the longest outage.",
    },
)
def switchover(c: Context, stack: str = "", json: bool = False, watch: bool = False) -> None:
    """Move the MASTER role to the healthy BACKUP, releasing the volume before the peer mounts.

    Releases the volume on the MASTER (the keepalived drop-in's ExecStop), stops keepalived
    there, waits until the peer is MASTER with the VIP and the volume, and starts keepalived
    again on the old MASTER, which stays BACKUP (nopreempt). Refused unless the cluster is
    healthy and the peer a healthy BACKUP.
    """
    require("switchover", stack=stack)
    loaded = load_stack(stack, "switchover")
    s, secrets = loaded.settings, loaded.secrets
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if json else print
    say(f"switchover: secrets from {loaded.source}")
    access = Access.for_stack(s, PROJECT_ROOT, secrets.public_host_keys, False)
    key = str(s.ssh_key_path(PROJECT_ROOT))
    ssh = VipSsh.make(str(s.vip.ip), s.ssh_user, key, secrets.public_host_keys, login=10.0)
    outage = None
    try:
        if watch:
            with VipProber(ssh, time.monotonic()) as prober:
                time.sleep(0.5)
                result = do_switchover(s, access, say=say)
                time.sleep(1.0)
            outage = prober.outage()
        else:
            result = do_switchover(s, access, say=say)
    finally:
        ssh.close()
    if json:
        doc = result.as_dict()
        doc["ssh_outage_s"] = None if outage is None else round(outage, 2)
        print(_json.dumps(doc, indent=2))
    elif result.error:
        print(f"switchover: FAILED: {result.error}")
    else:
        print(f"switchover: MASTER moved {result.old} -> {result.new} in {result.total:.2f}s")
        if outage is not None:
            print(f"switchover: longest ssh outage on the VIP (probe every 100 ms): {outage:.2f}s")
    if result.error:
        raise Exit(code=1)
