"""A stack's DNS record, from its settings: where to update, and what name and address.

The record is ``<dnsRecord>.<dnsZone>`` -> the VIP, optionally with the VIP's PTR in
``dnsPtrZone``; no ``dnsServer``: no record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import components.dns.record as record
from components.config import Settings
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


@dataclass(frozen=True)
class Held:
    """One record a StackRecord keeps: its log line, what identifies it on its server, and how
    to remove it from there."""

    line: str
    key: record.Identity
    remove: Callable[[], bool]


def held(rec: StackRecord) -> list[Held]:
    """The A record, then the PTR (with a ``dnsPtrZone``)."""
    t, ptr = rec.target, rec.ptr_target
    out = [
        Held(
            f"A {rec.fqdn} -> {rec.address}",
            record.identity(t, "A", rec.name, rec.address),
            lambda: record.delete(t, rec.name, rec.address),
        )
    ]
    if ptr is not None:
        out.append(
            Held(
                f"PTR {rec.address} -> {rec.fqdn}",
                record.identity(ptr, "PTR", rec.address, rec.fqdn),
                lambda: record.delete_ptr(ptr, rec.address, rec.fqdn),
            )
        )
    return out


def remove_record(rec: StackRecord) -> list[str]:
    """Remove this stack's A (and PTR) record, nothing else of the name."""
    return [f"{h.line}: removed" for h in held(rec) if h.remove()]


def signed_as(rec: StackRecord, key: StackRecord) -> StackRecord:
    """``rec``'s records, updated with ``key``'s TSIG key (name, algorithm, secret) and timeout."""

    def swap(t: DnsTarget) -> DnsTarget:
        k = key.target
        return dataclasses.replace(
            t, key_name=k.key_name, algorithm=k.algorithm, secret=k.secret, timeout=k.timeout
        )

    ptr = rec.ptr_target
    return dataclasses.replace(
        rec, target=swap(rec.target), ptr_target=None if ptr is None else swap(ptr)
    )


def stale(old: StackRecord, new: StackRecord) -> list[Held]:
    """The records ``old`` holds and ``new`` does not keep: those whose server, port, zone,
    name, type or value differ from every record of ``new``."""
    keep = {h.key for h in held(new)}
    return [h for h in held(old) if h.key not in keep]


def move_record(old: StackRecord, new: StackRecord, log: Callable[[list[str]], None]) -> None:
    """An update from ``old`` to ``new``: make the server hold ``new`` first, then remove what
    only ``old`` held, each where it was (the old server, port and zone), and never a record
    ``new`` keeps; ``log`` gets what was done, step by step. Every update is signed with
    ``new``'s key, never ``old``'s: after a TSIG rotation the servers know only the new secret
    (when the record leaves a server that rejects it, the error says so, and the new records
    are in place already)."""
    log(
        ensure_record(
            new, owned_addresses=(old.address,), owned_names=(old.fqdn.rstrip(".") + ".",)
        )
    )
    gone = [h for h in stale(signed_as(old, new), new) if h.remove()]
    log([f"{h.line}: removed" for h in gone])
    if {h.key[:2] for h in gone} - {h.key[:2] for h in held(new)}:
        # removed on "another" server: two addresses of one server look like two servers,
        # so make sure what is kept is still there
        log([line for line in ensure_record(new) if not line.endswith(": unchanged")])


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
