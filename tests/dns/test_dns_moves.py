"""DnsRecord updates that move the record, against real nameds: every combination of a new
server or port, zone, PTR zone, name, address and key. An update removes exactly the old
records it no longer keeps, each where it was, and never one it keeps; it signs every update
with the new inputs' TSIG secret (after a rotation the servers know only that one).

    two nameds on 127.0.0.1 (ports A and B), one TSIG key (the same secret), each serving
    skunkworks.test, other.test, 50.18.198.in-addr.arpa and its parent 18.198.in-addr.arpa

Each record is looked up in its own zone (an update with prerequisites only), so a copy left
in a zone that a more specific one hides is seen too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from components.dns import DnsError, server
from components.dns_record import DnsRecordProvider
from tests.dns.conftest import KEY, REVERSE, ZONE, Named, free_port

pytestmark = pytest.mark.lab

OTHER = "other.test"
PARENT = "18.198.in-addr.arpa"  # holds the PTRs too, but 50.18.198.in-addr.arpa answers them
ZONES = (ZONE, OTHER, REVERSE, PARENT)
STALE = "c3RhbGUgc2VjcmV0IGJlZm9yZSB0aGUgcm90YXRpb24="  # what the state kept before a rotation


class Pair:
    def __init__(self, a: Named, b: Named) -> None:
        self.a, self.b = a, b

    def by_port(self, port: int) -> Named:
        return self.a if port == self.a.port else self.b


@pytest.fixture(scope="module")
def pair(named_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    secret = server.new_tsig_secret()
    root = tmp_path_factory.mktemp("moves")
    cfgs = [
        server.NamedConfig(
            workdir=root / name, port=free_port(), zones=ZONES, key_name=KEY, secret=secret
        )
        for name in ("a", "b")
    ]
    try:
        a, b = (Named(cfg, server.start(cfg), secret) for cfg in cfgs)
        yield Pair(a, b)
    finally:
        for cfg in cfgs:
            server.stop(cfg.workdir)


def props(port: int, secret: str, name: str, address: str, **change: Any) -> dict[str, Any]:
    return {
        "server": "127.0.0.1",
        "port": port,
        "zone": ZONE,
        "ptr_zone": REVERSE,
        "key_name": KEY,
        "algorithm": "hmac-sha256",
        "tsig_secret": secret,
        "timeout": 3,
        "name": name,
        "fqdn": f"{name}.{change.get('zone', ZONE)}",
        "address": address,
        "adopt": False,
        "resolved": None,
    } | change


Held = tuple[int, str, str, str, str]


def held(p: dict[str, Any]) -> set[Held]:
    """(port, zone, owner, type, value) of every record ``p`` keeps."""
    fqdn = f"{p['name']}.{p['zone']}."
    out = {(p["port"], p["zone"], fqdn, "A", p["address"])}
    if p["ptr_zone"]:
        reverse = ipaddress.IPv4Address(p["address"]).reverse_pointer + "."
        out.add((p["port"], p["ptr_zone"], reverse, "PTR", fqdn))
    return out


def assert_exactly(pair: Pair, keep: dict[str, Any], gone: dict[str, Any]) -> None:
    """What ``keep`` keeps is there, each alone in its rrset; what only ``gone`` kept is not."""
    for port, zone, owner, rdtype, value in held(keep) | held(gone):
        wanted = (port, zone, owner, rdtype, value) in held(keep)
        there = pair.by_port(port).holds(zone, owner, rdtype, value)
        assert there == wanted, f"{rdtype} {owner} -> {value} in {zone} on :{port}: {there}"


# (id, the old inputs, the new inputs), each as a change of the base record: on named A, in
# skunkworks.test, with its PTR in 50.18.198.in-addr.arpa
MOVES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("ptr-zone-added", {"ptr_zone": None}, {}),
    ("ptr-zone-dropped", {}, {"ptr_zone": None}),
    ("ptr-zone-to-the-zone-answering-it", {"ptr_zone": PARENT}, {}),
    ("server-moved", {}, {"port": "B"}),
    ("server-moved-ptr-added", {"ptr_zone": None}, {"port": "B"}),
    ("server-moved-ptr-dropped", {}, {"port": "B", "ptr_zone": None}),
    ("server-moved-and-ptr-zone-moved", {"ptr_zone": PARENT}, {"port": "B"}),
    ("server-and-address-moved", {}, {"port": "B", "address": "+1"}),
    ("same-server-by-its-name", {}, {"server": "localhost"}),
    ("zone-changed", {}, {"zone": OTHER}),
    ("zone-changed-ptr-added", {"ptr_zone": None}, {"zone": OTHER}),
    ("name-changed", {}, {"name": "+b"}),
    ("name-changed-ptr-added", {"ptr_zone": None}, {"name": "+b"}),
    ("name-changed-ptr-dropped", {}, {"name": "+b", "ptr_zone": None}),
    ("address-changed", {}, {"address": "+1"}),
    ("address-changed-ptr-added", {"ptr_zone": None}, {"address": "+1"}),
    ("address-changed-ptr-dropped", {}, {"address": "+1", "ptr_zone": None}),
    ("address-changed-ptr-zone-moved", {"ptr_zone": PARENT}, {"address": "+1"}),
    ("everything-moved", {"ptr_zone": PARENT}, {"port": "B", "zone": OTHER, "address": "+1"}),
    ("only-the-timeout-and-adopt", {}, {"timeout": 4, "adopt": True}),
]


def _apply(pair: Pair, base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        if key == "port":
            out["port"] = pair.b.port if value == "B" else pair.a.port
        elif key == "address" and value == "+1":
            out["address"] = str(ipaddress.IPv4Address(base["address"]) + 1)
        elif key == "name" and value == "+b":
            out["name"] = base["name"] + "-b"
        else:
            out[key] = value
    out["fqdn"] = f"{out['name']}.{out['zone']}"
    return out


def assert_gone(pair: Pair, p: dict[str, Any]) -> None:
    for port, zone, owner, rdtype, _value in held(p):
        assert not pair.by_port(port).holds(zone, owner, rdtype), f"{rdtype} {owner} in {zone}"


@pytest.mark.parametrize(
    ("index", "old_change", "new_change"),
    [(i, *m[1:]) for i, m in enumerate(MOVES)],
    ids=[m[0] for m in MOVES],
)
def test_an_update_removes_only_what_it_no_longer_keeps(
    pair: Pair, index: int, old_change: dict[str, Any], new_change: dict[str, Any]
) -> None:
    name = f"mv{index}-{MOVES[index][0]}"[:40]
    address = f"198.18.50.{10 + 2 * index}"  # and the next one: each case has its own PTRs
    base = props(pair.a.port, pair.a.secret, name, address)
    old, new = _apply(pair, base, old_change), _apply(pair, base, new_change)
    p = DnsRecordProvider()
    state = seed(pair, p, old)
    assert_exactly(pair, old, old)
    p.update(state["fqdn"], state, new)
    assert_exactly(pair, new, old)
    keeper = pair.by_port(new["port"])
    assert keeper.dig(new["fqdn"]) == ("NOERROR", [new["address"]])
    if new["ptr_zone"]:
        reverse = ipaddress.IPv4Address(new["address"]).reverse_pointer
        assert keeper.dig(reverse, "PTR") == ("NOERROR", [new["fqdn"] + "."])
    p.delete(new["fqdn"], new)
    assert_gone(pair, new)


def test_a_ptr_zone_the_server_does_not_answer_from_is_refused_and_nothing_goes(
    pair: Pair,
) -> None:
    """50.18.198.in-addr.arpa answers the PTR queries: a PTR written to its parent zone would
    never be seen, and removing the old one would leave none at all."""
    p = DnsRecordProvider()
    old = props(pair.a.port, pair.a.secret, "mv-parent", "198.18.50.200")
    state = p.create(old).outs
    with pytest.raises(DnsError, match=rf"answers .* from zone {REVERSE}, not from zone {PARENT}:"):
        p.update(state["fqdn"], state, {**old, "ptr_zone": PARENT})
    assert_exactly(pair, old, {**old, "ptr_zone": PARENT})
    with pytest.raises(DnsError, match=f"from zone {REVERSE}"):
        p.create(props(pair.a.port, pair.a.secret, "mv-parent2", "198.18.50.202", ptr_zone=PARENT))
    p.delete(state["fqdn"], old)
    assert_gone(pair, old)


def test_a_ptr_zone_the_server_no_longer_serves_holds_nothing_to_remove(named: Named) -> None:
    """The state's PTR zone is gone from the server (its more specific zone serves the name
    now): the update keeps the A record, makes the PTR there, and has nothing else to do."""
    p = DnsRecordProvider()
    new = props(named.port, named.secret, "mv-gone", "198.18.50.204")
    state = {**p.create({**new, "ptr_zone": None}).outs, "ptr_zone": PARENT}
    p.update(state["fqdn"], state, new)
    assert named.dig(new["fqdn"]) == ("NOERROR", [new["address"]])
    assert named.dig("204.50.18.198.in-addr.arpa", "PTR") == ("NOERROR", [new["fqdn"] + "."])
    p.delete(new["fqdn"], new)


# --- a TSIG secret rotation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"name": "+b"}, {"address": "+1"}, {"ptr_zone": None}, {"port": "B"}],
    ids=["rename", "new-address", "ptr-dropped", "server-moved"],
)
def test_after_a_rotation_every_update_signs_with_the_new_secret(
    pair: Pair, change: dict[str, Any]
) -> None:
    """The state still holds the secret from before the rotation; the servers know only the
    new one (the new inputs'): the removals of the old records sign with it too."""
    i = 220 + 2 * ["name", "address", "ptr_zone", "port"].index(next(iter(change)))
    base = props(pair.a.port, pair.a.secret, f"rot-{i}", f"198.18.50.{i}")
    p = DnsRecordProvider()
    state = {**p.create(base).outs, "tsig_secret": STALE}
    new = _apply(pair, base, change)
    p.update(state["fqdn"], state, new)
    assert_exactly(pair, new, base)
    p.delete(new["fqdn"], new)


def test_a_rotated_secret_alone_is_an_update_so_the_state_keeps_the_new_one(pair: Pair) -> None:
    p = DnsRecordProvider()
    base = props(pair.a.port, pair.a.secret, "rot-diff", "198.18.50.240")
    assert not p.diff(base["fqdn"], {**base, "resolved": [base["address"]]}, base).changes
    stale = {**base, "resolved": [base["address"]], "tsig_secret": STALE}
    assert p.diff(base["fqdn"], stale, base).changes


def seed(pair: Pair, p: DnsRecordProvider, old: dict[str, Any]) -> dict[str, Any]:
    """The state ``old`` left. A PTR in the parent zone is one made before the server served
    the more specific zone (written by hand here: the client refuses to write where the server
    does not answer from)."""
    if old["ptr_zone"] != PARENT:
        return p.create(old).outs
    state = p.create({**old, "ptr_zone": None}).outs
    reverse = ipaddress.IPv4Address(old["address"]).reverse_pointer
    pair.by_port(old["port"]).hand_set(reverse, "PTR", old["fqdn"] + ".", zone=PARENT)
    return {**state, "ptr_zone": PARENT}
