"""What a DnsRecord update removes and how it signs, without a server: records in, removals
out (the real BIND runs them in tests/dns/test_dns_moves.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from components.dns import record
from components.dns import stack as dnsstack
from components.dns.record import DnsTarget
from components.dns.stack import StackRecord, move_record, stale

pytestmark = pytest.mark.unit

NEW_SECRET, OLD_SECRET = "bmV3IHNlY3JldA==", "b2xkIHNlY3JldA=="
ZONE, REVERSE = "skunkworks.local", "50.2.10.in-addr.arpa"


def rec(**change: Any) -> StackRecord:
    where = {k: change.pop(k) for k in ("server", "port", "secret", "key_name") if k in change}
    fields: dict[str, Any] = {
        "server": "10.2.50.10",
        "port": 53,
        "key_name": "repo-cluster-update",
        "secret": NEW_SECRET,
        "timeout": 5.0,
    } | where
    zone, ptr_zone = change.pop("zone", ZONE), change.pop("ptr_zone", REVERSE)
    name, address = change.pop("name", "repo-cluster"), change.pop("address", "10.2.50.160")
    assert not change, change
    return StackRecord(
        target=DnsTarget(zone=zone, **fields),
        ptr_target=DnsTarget(zone=ptr_zone, **fields) if ptr_zone else None,
        name=name,
        fqdn=f"{name}.{zone}",
        address=address,
        adopt=False,
    )


# (id, old, new, the removed records' log lines)
PLANS = [
    ("nothing-changed", {}, {}, []),
    ("ptr-zone-added", {"ptr_zone": None}, {}, []),
    ("ptr-zone-dropped", {}, {"ptr_zone": None}, ["PTR"]),
    ("ptr-zone-moved", {"ptr_zone": "2.10.in-addr.arpa"}, {}, ["PTR"]),
    ("server-moved", {}, {"server": "10.2.50.11"}, ["A", "PTR"]),
    ("port-moved", {}, {"port": 5353}, ["A", "PTR"]),
    ("server-moved-ptr-added", {"ptr_zone": None}, {"server": "10.2.50.11"}, ["A"]),
    ("zone-changed", {}, {"zone": "other.local"}, ["A", "PTR"]),
    ("name-changed", {}, {"name": "vip"}, ["A", "PTR"]),
    ("address-changed", {}, {"address": "10.2.50.170"}, ["A", "PTR"]),
    ("address-changed-ptr-dropped", {}, {"address": "10.2.50.170", "ptr_zone": None}, ["A", "PTR"]),
    ("name-case-and-dot", {}, {"name": "Repo-Cluster"}, []),
    ("new-key", {"key_name": "old-key", "secret": OLD_SECRET}, {}, []),
]


@pytest.mark.parametrize(
    ("old", "new", "removed"), [p[1:] for p in PLANS], ids=[p[0] for p in PLANS]
)
def test_only_records_the_new_state_does_not_keep_are_removed(
    old: dict[str, Any], new: dict[str, Any], removed: list[str]
) -> None:
    assert [h.line.split()[0] for h in stale(rec(**old), rec(**new))] == removed


def test_a_record_is_its_server_port_zone_name_type_and_value() -> None:
    a = record.identity(rec().target, "A", "repo-cluster", "10.2.50.160")
    assert a == (
        "10.2.50.10",
        53,
        "skunkworks.local.",
        "repo-cluster.skunkworks.local.",
        "A",
        "10.2.50.160",
    )
    ptr = record.identity(rec().target, "A", "REPO-cluster.skunkworks.local.", "10.2.50.160")
    assert ptr == a


class FakeServers:
    """Records by (server, zone, owner, type, value); what signed each update."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, alias: dict[str, str]) -> None:
        self.held: set[tuple[str, ...]] = set()
        self.secrets: list[str | None] = []
        self.alias = alias  # another address of the same server

        def where(t: DnsTarget) -> tuple[Any, ...]:
            self.secrets.append(t.secret)
            return (self.alias.get(t.server, t.server), t.port, t.zone)

        def ensure(t: DnsTarget, name: str, address: str, **_kw: Any) -> str:
            item = (*where(t), name.lower(), "A", address)
            found = item in self.held
            self.held.add(item)
            return "unchanged" if found else "created"

        def ensure_ptr(t: DnsTarget, address: str, fqdn: str, **_kw: Any) -> str:
            item = (*where(t), address, "PTR", fqdn.lower())
            found = item in self.held
            self.held.add(item)
            return "unchanged" if found else "created"

        def delete(t: DnsTarget, name: str, address: str) -> bool:
            item = (*where(t), name.lower(), "A", address)
            found = item in self.held
            self.held.discard(item)
            return found

        def delete_ptr(t: DnsTarget, address: str, fqdn: str) -> bool:
            item = (*where(t), address, "PTR", fqdn.lower())
            found = item in self.held
            self.held.discard(item)
            return found

        for name, fn in (
            ("ensure", ensure),
            ("ensure_ptr", ensure_ptr),
            ("delete", delete),
            ("delete_ptr", delete_ptr),
        ):
            monkeypatch.setattr(dnsstack.record, name, fn)


@pytest.mark.parametrize(
    ("old", "new", "_removed"), [p[1:] for p in PLANS], ids=[p[0] for p in PLANS]
)
def test_every_update_of_a_move_signs_with_the_new_secret(
    monkeypatch: pytest.MonkeyPatch, old: dict[str, Any], new: dict[str, Any], _removed: list[str]
) -> None:
    servers = FakeServers(monkeypatch, {})
    before = rec(**old)
    dnsstack.ensure_record(before)
    servers.secrets.clear()
    stale_state = dataclasses.replace(
        before,
        target=dataclasses.replace(before.target, secret=OLD_SECRET),
        ptr_target=before.ptr_target and dataclasses.replace(before.ptr_target, secret=OLD_SECRET),
    )
    after = rec(**new)
    move_record(stale_state, after, lambda _lines: None)
    assert servers.secrets and set(servers.secrets) == {NEW_SECRET}
    assert servers.held == kept(after)


def kept(r: StackRecord) -> set[tuple[Any, ...]]:
    t, ptr = r.target, r.ptr_target
    out: set[tuple[Any, ...]] = {(t.server, t.port, t.zone, r.name.lower(), "A", r.address)}
    if ptr is not None:
        out.add((ptr.server, ptr.port, ptr.zone, r.address, "PTR", r.fqdn.lower()))
    return out


def test_a_server_reached_by_two_addresses_keeps_its_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10.2.50.11 is another address of 10.2.50.10: no way to tell beforehand, so after the
    removals the kept records are ensured once more."""
    servers = FakeServers(monkeypatch, {"10.2.50.11": "10.2.50.10"})
    old = rec()
    dnsstack.ensure_record(old)
    lines: list[str] = []
    move_record(old, rec(server="10.2.50.11"), lines.extend)
    assert servers.held == kept(old)
    assert lines[-2:] == [
        f"A repo-cluster.{ZONE} -> 10.2.50.160: created",
        f"PTR 10.2.50.160 -> repo-cluster.{ZONE}: created",
    ]
