"""Validation of the DNS values: the server, the zones and the TSIG key every RFC 2136 update
of the VIP's record is signed with (components/dns). Each check reports through a
:class:`~components.config.check.Check`, naming its key.
"""

from __future__ import annotations

import base64
import re

from components.config.check import Check, full
from components.config.model import Secret

TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)
# a key name as named.conf's key statement and tsig-keygen take it, and dnspython signs with
_KEY_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
NAME_CHARS = 253  # a DNS name's text without its final dot (255 octets on the wire)


def dns_values(c: Check) -> None:
    v = c.v
    c.in_range("dnsTimeout", 1, 120)
    if v["dnsServer"] is not None and not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", v["dnsServer"]):
        c.bad("dnsServer", f"{v['dnsServer']!r} is not a host name or IP address")
    if v["dnsZone"] is not None:
        c.domain("dnsZone")
    if v["dnsPtrZone"] is not None:
        c.domain("dnsPtrZone")
        if not v["dnsPtrZone"].endswith(".in-addr.arpa"):
            c.bad("dnsPtrZone", f"{v['dnsPtrZone']!r} is not a reverse zone (*.in-addr.arpa)")
    if v["dnsTsigAlgorithm"] not in TSIG_ALGORITHMS:
        c.bad(
            "dnsTsigAlgorithm",
            f"{v['dnsTsigAlgorithm']!r} is not one of {', '.join(TSIG_ALGORITHMS)}",
        )
    tsig_key(c)


def tsig_key(c: Check) -> None:
    """The key name is a DNS name; a secret needs its key name (without one the updates would
    go unsigned). Unsigned updates (Windows DNS) leave both unset; a key name whose secret is
    missing is a deploy problem (the secret may come from the lab or be encrypted here)."""
    name, secret = c.v["dnsTsigKeyName"], c.v["dnsTsigSecret"]
    if isinstance(name, str):
        text = name[:-1] if name.endswith(".") else name
        if len(text) > NAME_CHARS:
            c.bad("dnsTsigKeyName", f"is {len(text)} characters: a DNS name has at most 253")
        elif not all(_KEY_LABEL.fullmatch(label) for label in text.split(".")):
            c.bad(
                "dnsTsigKeyName",
                f"{name!r} is not a DNS name: dot-separated labels of 1-63 letters, digits, "
                "'-' or '_', as the server's key statement names it (e.g. repo-cluster-update)",
            )
    if isinstance(secret, Secret) and secret.is_set and name is None:
        c.bad(
            "dnsTsigKeyName",
            f"required when {full('dnsTsigSecret')} is set: without a key name the updates "
            "would go unsigned and the secret unused. Set it to the name of the server's key, "
            f"or unset {full('dnsTsigSecret')} too for unsigned updates (Windows DNS)",
        )
    if isinstance(secret, Secret) and secret.value is not None:
        try:
            ok = bool(base64.b64decode(secret.value, validate=True))
        except ValueError:
            ok = False
        if not ok:
            c.bad("dnsTsigSecret", "is not base64 (value hidden)")
