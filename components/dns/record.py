"""The cluster VIP's DNS record, kept by RFC 2136 dynamic updates signed with TSIG.

Why dynamic updates and not a zone file: the zone belongs to the site's DNS server (BIND, or
Windows DNS in "secure and nonsecure" mode), not to this stack. An update touches one name and
nothing else, and its prerequisites (RFC 2136 section 2.4) make the server check, atomically,
that the name still holds what this stack last saw. So a record somebody made by hand is never
overwritten: `ensure` refuses unless the addresses there are ones this stack created (`owned`)
or the operator said to take it over (`adopt`, the stack's dnsAdopt).

An update goes only to a zone the server answers the name from (:func:`lookup.zone_of`): a
record written to a zone that a more specific one on the same server hides would never be seen.
The transport, the target and the reads are in :mod:`components.dns.lookup`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dns.name
import dns.rcode
import dns.reversename
import dns.tsigkeyring
import dns.update

import components.dns.lookup as lookup
from components.dns.lookup import DnsError, DnsTarget, Norm

__all__ = ["DnsError", "DnsTarget"]

log = logging.getLogger(__name__)
_a, _fqdn = lookup.a_value, lookup.fqdn_value
Identity = tuple[str, int, str, str, str, str]
"""A record as its server holds it: (server address, port, zone, owner name, type, value)."""


def _name(target: DnsTarget, name: str) -> dns.name.Name:
    """`name` relative to the zone ("vip", "@"), or absolute when it ends with a dot."""
    fqdn = dns.name.from_text(name, origin=target.origin)
    if not fqdn.is_subdomain(target.origin):
        raise DnsError(target, f"NOTZONE: {fqdn} is not in zone {target.origin}")
    return fqdn


def _answering_zone(target: DnsTarget, name: dns.name.Name) -> dns.name.Name:
    """The zone the server answers ``name`` from (the target's own when it does not say)."""
    return lookup.zone_of(target, name) or target.origin


def _update(target: DnsTarget) -> dns.update.UpdateMessage:
    msg = dns.update.UpdateMessage(target.origin)
    if target.key_name is not None:
        keyring = dns.tsigkeyring.from_text({target.key_name: target.secret or ""})
        msg.use_tsig(keyring, target.key_name, algorithm=target.algorithm)
    return msg


def _send(target: DnsTarget, msg: dns.update.UpdateMessage, what: str, race: str) -> None:
    """Send an update; `race` explains a failed prerequisite (somebody changed the name)."""
    rcode = lookup.exchange(target, msg, what).rcode()
    name = dns.rcode.to_text(rcode)
    if rcode == dns.rcode.NOERROR:
        return
    if rcode in (dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN):
        raise DnsError(target, f"{name}: {race}: nothing changed")
    reasons = {
        dns.rcode.REFUSED: "the server refused the update (key not granted, or unsigned "
        "updates not allowed)",
        dns.rcode.NOTAUTH: "the server is not authoritative for the zone (or rejected the key)",
        dns.rcode.NOTZONE: "the name is not in the zone",
        dns.rcode.SERVFAIL: "the server failed to apply it (see the server's log)",
    }
    raise DnsError(target, f"{name} for {what}: {reasons.get(rcode, 'update failed')}")


def _ensure(
    target: DnsTarget,
    name: dns.name.Name,
    rdtype: str,
    value: str,
    *,
    owned: Iterable[str],
    adopt: bool,
    ttl: int,
    norm: Norm,
) -> str:
    value = norm(value)
    current = lookup.read_values(target, name, rdtype, norm)
    zone = _answering_zone(target, name)
    if zone != target.origin:
        here, there = (z.to_text(omit_final_dot=True) for z in (target.origin, zone))
        raise DnsError(
            target,
            f"the server answers {name} from zone {there}, not from zone {here}: a {rdtype} "
            f"record written to {here} would never be seen (use zone {there})",
        )
    if current == (value,):
        return "unchanged"
    what = f"the update of {rdtype} {name} -> {value}"
    msg = _update(target)
    if not current:
        msg.absent(name, rdtype)
        race = f"{rdtype} records for {name} appeared meanwhile; refusing to replace them"
        done = "created"
    else:
        mine = {norm(o) for o in owned} | {value}
        foreign = [c for c in current if c not in mine]
        if foreign and not adopt:
            raise DnsError(
                target,
                f"the {rdtype} record of {name} points to {', '.join(foreign)}, which this stack "
                "did not create: refusing to replace it (set dnsAdopt to take it over)",
            )
        msg.present(name, rdtype, *current)
        msg.delete(name, rdtype)
        race = f"the {rdtype} records of {name} changed from {', '.join(current)} meanwhile"
        done = "replaced"
    msg.add(name, ttl, rdtype, value)
    _send(target, msg, what, race)
    log.info("%s: %s %s %s -> %s", target.where(), done, rdtype, name, value)
    return done


def _delete(target: DnsTarget, name: dns.name.Name, rdtype: str, value: str, norm: Norm) -> bool:
    value = norm(value)
    if _answering_zone(target, name) != target.origin:
        return _delete_hidden(target, name, rdtype, value)
    current = lookup.read_values(target, name, rdtype, norm)
    if value not in current:
        return False
    msg = _update(target)
    msg.present(name, rdtype, *current)
    msg.delete(name, rdtype, value)
    race = f"the {rdtype} records of {name} changed from {', '.join(current)} meanwhile"
    _send(target, msg, f"the removal of {rdtype} {name} -> {value}", race)
    log.info("%s: removed %s %s -> %s", target.where(), rdtype, name, value)
    return True


def _delete_hidden(target: DnsTarget, name: dns.name.Name, rdtype: str, value: str) -> bool:
    """Remove a record that a more specific zone hides (made before the server served that
    zone): no query shows it, so the removal goes unconditionally (removing one absent record
    is a no-op) and the zone's serial tells whether anything went. A zone the server no
    longer serves holds nothing to remove."""
    before = lookup.serial(target)
    if before is None:
        return False
    msg = _update(target)
    msg.delete(name, rdtype, value)
    _send(target, msg, f"the removal of {rdtype} {name} -> {value}", "")
    if lookup.serial(target) == before:
        return False
    log.info("%s: removed hidden %s %s -> %s", target.where(), rdtype, name, value)
    return True


def read(target: DnsTarget, name: str) -> tuple[str, ...]:
    """The A addresses of `name` (relative to the zone, or absolute), sorted; () if none."""
    return lookup.read_values(target, _name(target, name), "A", _a)


def ensure(
    target: DnsTarget,
    name: str,
    address: str,
    *,
    owned: Iterable[str] = (),
    adopt: bool = False,
    ttl: int = 300,
) -> str:
    """Make `name` have exactly one A record, `address`: "created", "unchanged" or "replaced".
    Addresses there that are not in `owned` are foreign: DnsError unless `adopt`. An existing
    record with the right address keeps its TTL; a malformed address is a ValueError."""
    fqdn = _name(target, name)
    return _ensure(target, fqdn, "A", address, owned=owned, adopt=adopt, ttl=ttl, norm=_a)


def delete(target: DnsTarget, name: str, address: str) -> bool:
    """Remove the A record `name` -> `address` only; False if it is not there."""
    return _delete(target, _name(target, name), "A", address, _a)


def _ptr_name(target: DnsTarget, address: str) -> dns.name.Name:
    return _name(target, dns.reversename.from_address(_a(address)).to_text())


def read_ptr(target: DnsTarget, address: str) -> tuple[str, ...]:
    """The names (absolute, lower case) the PTR records of `address` point to."""
    return lookup.read_values(target, _ptr_name(target, address), "PTR", _fqdn)


def ensure_ptr(
    target: DnsTarget,
    address: str,
    fqdn: str,
    *,
    owned: Iterable[str] = (),
    adopt: bool = False,
    ttl: int = 300,
) -> str:
    """Make the reverse name of `address` point to `fqdn` only; `owned` are names this stack
    made the PTR point to earlier. Same answers and refusals as `ensure`."""
    ptr = _ptr_name(target, address)
    return _ensure(target, ptr, "PTR", fqdn, owned=owned, adopt=adopt, ttl=ttl, norm=_fqdn)


def delete_ptr(target: DnsTarget, address: str, fqdn: str) -> bool:
    """Remove the PTR record `address` -> `fqdn` only; False if it is not there."""
    return _delete(target, _ptr_name(target, address), "PTR", fqdn, _fqdn)


def identity(target: DnsTarget, rdtype: str, owner: str, value: str) -> Identity:
    """What tells one record from another: the address and port its updates go to (a server's
    name and its address are one server), the zone, the owner name, the type and the value,
    each normalised. ``owner``: the name (A, as for :func:`ensure`) or the address (PTR)."""
    if rdtype == "A":
        name, norm = _name(target, owner), _a
    else:
        name, norm = _ptr_name(target, owner), _fqdn
    zone = target.origin.canonicalize().to_text()
    where = (lookup.server_address(target), target.port, zone)
    return (*where, name.canonicalize().to_text(), rdtype, norm(value))
