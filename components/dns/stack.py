"""A stack's DNS record, from its settings: where to update, and what name and address.

The record is ``<dnsRecord>.<dnsZone>`` -> the VIP, optionally with the VIP's PTR in
``dnsPtrZone``; no ``dnsServer``: no record.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config import Settings
from components.dns import record
from components.dns.record import DnsTarget


@dataclass(frozen=True)
class StackRecord:
    """Everything an update needs; ``secret`` is the TSIG key (never shown)."""

    target: DnsTarget
    ptr_target: DnsTarget | None
    name: str
    """Relative to the zone (``repo-cluster``)."""
    fqdn: str
    address: str
    adopt: bool


def stack_record(s: Settings, tsig_secret: str | None) -> StackRecord | None:
    """The stack's record, or None when the stack has no ``dnsServer``. ``tsig_secret``: the
    plain ``dnsTsigSecret`` (from the settings, the Pulumi config or the lab's secrets)."""
    if not s.dns_server:
        return None

    def target(zone: str) -> DnsTarget:
        return DnsTarget(
            server=s.dns_server or "",
            port=s.dns_port,
            zone=zone,
            key_name=s.dns_tsig_key_name,
            algorithm=s.dns_tsig_algorithm,
            secret=tsig_secret,
            timeout=float(s.dns_timeout),
        )

    return StackRecord(
        target=target(s.dns_zone),
        ptr_target=target(s.dns_ptr_zone) if s.dns_ptr_zone else None,
        name=s.dns_record,
        fqdn=s.dns_fqdn,
        address=str(s.vip.ip),
        adopt=s.dns_adopt,
    )


def ensure_record(
    rec: StackRecord, *, owned_addresses: tuple[str, ...] = (), owned_names: tuple[str, ...] = ()
) -> list[str]:
    """Create or fix the A (and PTR) record; what was done, one line per record."""
    done = [
        f"A {rec.fqdn} -> {rec.address}: "
        + record.ensure(rec.target, rec.name, rec.address, owned=owned_addresses, adopt=rec.adopt)
    ]
    if rec.ptr_target is not None:
        result = record.ensure_ptr(
            rec.ptr_target, rec.address, rec.fqdn, owned=owned_names, adopt=rec.adopt
        )
        done.append(f"PTR {rec.address} -> {rec.fqdn}: {result}")
    return done


def remove_record(rec: StackRecord) -> list[str]:
    """Remove this stack's A (and PTR) record, nothing else of the name."""
    done = []
    if record.delete(rec.target, rec.name, rec.address):
        done.append(f"A {rec.fqdn} -> {rec.address}: removed")
    if rec.ptr_target is not None and record.delete_ptr(rec.ptr_target, rec.address, rec.fqdn):
        done.append(f"PTR {rec.address} -> {rec.fqdn}: removed")
    return done


def check_record(rec: StackRecord) -> list[str]:
    """What differs between the server and the stack (empty: the record is as it should be)."""
    problems = []
    found = record.read(rec.target, rec.name)
    if found != (rec.address,):
        problems.append(
            f"{rec.fqdn} resolves to {', '.join(found) or 'nothing'}, want {rec.address}"
        )
    if rec.ptr_target is not None:
        names = record.read_ptr(rec.ptr_target, rec.address)
        want = rec.fqdn.rstrip(".").lower() + "."
        if names != (want,):
            problems.append(f"PTR of {rec.address} is {', '.join(names) or 'missing'}, want {want}")
    return problems
