"""DNS for the cluster VIP: RFC 2136 dynamic updates signed with TSIG (record; its target, reads
and transport in lookup; the stack's record and its moves in stack), and a throwaway
BIND named for the embedded lab and the tests (server)."""

from components.dns.record import (
    DnsError,
    DnsTarget,
    delete,
    delete_ptr,
    ensure,
    ensure_ptr,
    read,
    read_ptr,
)

__all__ = [
    "DnsError",
    "DnsTarget",
    "delete",
    "delete_ptr",
    "ensure",
    "ensure_ptr",
    "read",
    "read_ptr",
]
