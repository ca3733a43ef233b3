"""The cluster VIP's DNS record, kept by RFC 2136 dynamic updates signed with TSIG.

Why dynamic updates and not a zone file: the zone belongs to the site's DNS server (BIND, or
Windows DNS in "secure and nonsecure" mode), not to this stack. An update touches one name and
nothing else, and its prerequisites (RFC 2136 section 2.4) make the server check, atomically,
that the name still holds what this stack last saw. So a record somebody made by hand is never
overwritten: `ensure` refuses unless the addresses there are ones this stack created (`owned`)
or the operator said to take it over (`adopt`, the stack's dnsAdopt).

Queries go straight to the target server and port (never the system resolver, whose caches and
search lists would answer for some other server). Updates go over TCP, reads over UDP with a
TCP fallback. Every failure is a DnsError naming server:port, zone and what happened; the TSIG
secret is never part of a message, a log line or a repr, and dnspython's exceptions are raised
`from None` so a traceback cannot show the keyring either.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.tsig
import dns.tsigkeyring
import dns.update

log = logging.getLogger(__name__)

_PEER_ERRORS = {
    dns.tsig.PeerBadKey: "BADKEY",
    dns.tsig.PeerBadSignature: "BADSIG",
    dns.tsig.PeerBadTime: "BADTIME",
}

Norm = Callable[[str], str]


@dataclass(frozen=True)
class DnsTarget:
    """Where and how to update: a zone on one server. key_name None sends unsigned updates."""

    server: str
    port: int
    zone: str
    key_name: str | None = None
    algorithm: str = "hmac-sha256"
    secret: str | None = field(default=None, repr=False)
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.key_name is not None and not self.secret:
            raise ValueError(f"{self.where()}: TSIG key {self.key_name} has no secret")

    def where(self) -> str:
        return f"{self.server}:{self.port} zone {self.origin.to_text(omit_final_dot=True)}"

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)


class DnsError(Exception):
    """A DNS read or update failed; the message says where and why (never the secret)."""

    def __init__(self, target: DnsTarget, what: str) -> None:
        super().__init__(f"{target.where()}: {what}")


def _a(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def _fqdn(value: str) -> str:
    return dns.name.from_text(value).canonicalize().to_text()


def _name(target: DnsTarget, name: str) -> dns.name.Name:
    """`name` relative to the zone ("vip", "@"), or absolute when it ends with a dot."""
    fqdn = dns.name.from_text(name, origin=target.origin)
    if not fqdn.is_subdomain(target.origin):
        raise DnsError(target, f"NOTZONE: {fqdn} is not in zone {target.origin}")
    return fqdn


def _address(target: DnsTarget) -> str:
    """dnspython wants an IP literal; a host name is looked up once, for the server only."""
    try:
        return str(ipaddress.ip_address(target.server))
    except ValueError:
        try:
            return socket.getaddrinfo(target.server, target.port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as e:
            raise DnsError(target, f"cannot resolve server name: {e.strerror}") from None


def _exchange(target: DnsTarget, msg: dns.message.Message, what: str) -> dns.message.Message:
    """One request/response; every transport or TSIG failure becomes a DnsError."""
    where = _address(target)
    try:
        if isinstance(msg, dns.update.UpdateMessage):
            return dns.query.tcp(msg, where, timeout=target.timeout, port=target.port)
        return dns.query.udp_with_fallback(msg, where, timeout=target.timeout, port=target.port)[0]
    except dns.exception.Timeout:
        why = f"no answer within {target.timeout:g} s (timeout) to {what}"
    except dns.tsig.PeerError as e:
        why = f"TSIG key rejected ({_PEER_ERRORS.get(type(e), 'BADTRUNC')}) for {what}: " + (
            "the clocks of this host and the server differ"
            if isinstance(e, dns.tsig.PeerBadTime)
            else f"check key {target.key_name}, its algorithm and its secret"
        )
    except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.message.UnknownTSIGKey):
        why = f"TSIG key rejected: the answer to {what} is not signed with key {target.key_name}"
    except ConnectionRefusedError:
        why = f"connection refused (nothing listens on that port) for {what}"
    except OSError as e:
        why = f"network error for {what}: {e.strerror or type(e).__name__}"
    except dns.query.BadResponse:
        why = f"the answer to {what} does not match the question"
    except dns.exception.DNSException as e:
        why = f"bad answer to {what}: {type(e).__name__}"
    raise DnsError(target, why) from None


def _read(target: DnsTarget, name: dns.name.Name, rdtype: str, norm: Norm) -> tuple[str, ...]:
    what = f"the {rdtype} query for {name}"
    response = _exchange(target, dns.message.make_query(name, rdtype), what)
    rcode = response.rcode()
    if rcode == dns.rcode.REFUSED:
        raise DnsError(target, f"REFUSED {what}: the server is not authoritative for the zone")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsError(target, f"{dns.rcode.to_text(rcode)} for {what}")
    if not response.flags & dns.flags.AA:
        raise DnsError(target, f"NOTAUTH: the server is not authoritative for {what}")
    rrset = response.get_rrset(
        response.answer, name, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
    )
    return tuple(sorted(norm(r.to_text()) for r in rrset)) if rrset else ()


def _update(target: DnsTarget) -> dns.update.UpdateMessage:
    msg = dns.update.UpdateMessage(target.origin)
    if target.key_name is not None:
        keyring = dns.tsigkeyring.from_text({target.key_name: target.secret or ""})
        msg.use_tsig(keyring, target.key_name, algorithm=target.algorithm)
    return msg


def _send(target: DnsTarget, msg: dns.update.UpdateMessage, what: str, race: str) -> None:
    """Send an update; `race` explains a failed prerequisite (somebody changed the name)."""
    rcode = _exchange(target, msg, what).rcode()
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
    current = _read(target, name, rdtype, norm)
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
    current = _read(target, name, rdtype, norm)
    if value not in current:
        return False
    msg = _update(target)
    msg.present(name, rdtype, *current)
    msg.delete(name, rdtype, value)
    race = f"the {rdtype} records of {name} changed from {', '.join(current)} meanwhile"
    _send(target, msg, f"the removal of {rdtype} {name} -> {value}", race)
    log.info("%s: removed %s %s -> %s", target.where(), rdtype, name, value)
    return True


def read(target: DnsTarget, name: str) -> tuple[str, ...]:
    """The A addresses of `name` (relative to the zone, or absolute), sorted; () if none."""
    return _read(target, _name(target, name), "A", _a)


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
    return _read(target, _ptr_name(target, address), "PTR", _fqdn)


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
