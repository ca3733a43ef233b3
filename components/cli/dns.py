"""`fab dns`: the VIP's DNS record from the stack's settings, outside `pulumi up`.

The same module serves `pulumi up` (DnsRecord), `make lab` without the vSphere plugin, and
day-2 checks: `--check` compares what the server answers with the stack, changing nothing.
"""

from __future__ import annotations

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components.cli.common import load_stack, require
from components.dns import DnsError
from components.dns.stack import StackRecord, check_record, ensure_record, stack_record


def describe(rec: StackRecord) -> tuple[str, list[str]]:
    """One line saying what the name resolves to on the stack's server, and the problems."""
    try:
        problems = check_record(rec)
    except DnsError as e:
        return f"DNS {rec.fqdn}: unknown ({e})", [f"DNS: {e}"]
    where = f"on {rec.target.server}:{rec.target.port}"
    if not problems:
        return f"DNS {rec.fqdn} -> {rec.address} ({where})", []
    return f"DNS {'; '.join(problems)} ({where})", [f"DNS: {p}" for p in problems]


@task(
    positional=[],
    help={
        "stack": "Stack name.",
        "check": "Only compare the server's answer with the stack; exit 1 if they differ.",
        "lab-secrets": "Use the embedded lab's own secrets (lab stacks only).",
    },
)
def dns(c: Context, stack: str = "", check: bool = False, lab_secrets: bool = False) -> None:
    """Create or fix the VIP's A record (and PTR) by a TSIG-signed RFC 2136 update."""
    require("dns", stack=stack)
    loaded = load_stack(stack, "dns", lab_secrets)
    rec = stack_record(loaded.settings, loaded.tsig_secret)
    if rec is None:
        print(f"dns: stack {stack} sets no repo-cluster:dnsServer: no record to keep")
        return
    if check:
        line, problems = describe(rec)
        print(line)
        if problems:
            raise Exit(code=1)
        return
    try:
        for line in ensure_record(rec):
            print(f"dns: {line}")
    except DnsError as e:
        raise Exit(f"dns: {e}", code=1) from None
