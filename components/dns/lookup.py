"""Where an update goes and what the server answers: the target, its errors, and the reads.

Queries go straight to the target server and port (never the system resolver, whose caches and
search lists would answer for some other server). Updates go over TCP, reads over UDP with a
TCP fallback. Every failure is a DnsError naming server:port, zone and what happened; the TSIG
secret is never part of a message, a log line or a repr, and dnspython's exceptions are raised
`from None` so a traceback cannot show the keyring either.

A read is a query, and a server answers a name from the most specific zone it serves: with
``50.2.10.in-addr.arpa`` and ``2.10.in-addr.arpa`` on one server, the records of a name below
the first that sit in the second are never seen. :func:`zone_of` says which zone answers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

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


def a_value(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def fqdn_value(value: str) -> str:
    return dns.name.from_text(value).canonicalize().to_text()


def server_address(target: DnsTarget) -> str:
    """The address the updates go to: dnspython wants an IP literal; a host name is looked up
    once, for the server only."""
    try:
        return str(ipaddress.ip_address(target.server))
    except ValueError:
        try:
            return socket.getaddrinfo(target.server, target.port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as e:
            raise DnsError(target, f"cannot resolve server name: {e.strerror}") from None


def exchange(target: DnsTarget, msg: dns.message.Message, what: str) -> dns.message.Message:
    """One request/response; every transport or TSIG failure becomes a DnsError."""
    where = server_address(target)
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


def _answer(target: DnsTarget, name: dns.name.Name, rdtype: str) -> dns.message.Message:
    """The server's authoritative answer to (name, rdtype); DnsError for any other."""
    what = f"the {rdtype} query for {name}"
    response = exchange(target, dns.message.make_query(name, rdtype), what)
    rcode = response.rcode()
    if rcode == dns.rcode.REFUSED:
        raise DnsError(target, f"REFUSED {what}: the server is not authoritative for the zone")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsError(target, f"{dns.rcode.to_text(rcode)} for {what}")
    if not response.flags & dns.flags.AA:
        raise DnsError(target, f"NOTAUTH: the server is not authoritative for {what}")
    return response


def read_values(target: DnsTarget, name: dns.name.Name, rdtype: str, norm: Norm) -> tuple[str, ...]:
    """The values of ``name``'s ``rdtype`` records as the server answers them, sorted."""
    response = _answer(target, name, rdtype)
    rrset = response.get_rrset(
        response.answer, name, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
    )
    return tuple(sorted(norm(r.to_text()) for r in rrset)) if rrset else ()


def zone_of(target: DnsTarget, name: dns.name.Name) -> dns.name.Name | None:
    """The zone the server answers ``name`` from: the owner of the SOA its answer to a SOA
    query carries (in the answer at a zone's apex, in the authority section below it); None
    when the answer names none."""
    response = _answer(target, name, "SOA")
    for rrset in (*response.answer, *response.authority):
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset.name
    return None


def serial(target: DnsTarget) -> int | None:
    """The serial of the target's zone (its apex is answered from the zone itself); None when
    the server does not serve that zone (any more)."""
    origin = target.origin
    response = exchange(
        target, dns.message.make_query(origin, "SOA"), f"the SOA query for {origin}"
    )
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
        return None
    rrset = response.get_rrset(response.answer, origin, dns.rdataclass.IN, dns.rdatatype.SOA)
    return int(rrset[0].serial) if rrset else None
