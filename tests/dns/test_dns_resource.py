"""The DnsRecord dynamic resource's provider against a real named: what `pulumi up`,
`pulumi refresh` and `pulumi destroy` do with the record (create, drift, update, delete).
The engine's side (registration, secrets) is in tests/unit/test_program.py."""

from __future__ import annotations

from typing import Any

import pytest

from components.dns import DnsError
from components.dns_record import DnsRecordProvider
from tests.dns.conftest import KEY, REVERSE, VIP, ZONE, Named

pytestmark = pytest.mark.lab


def props(named: Named, name: str, address: str = VIP, **change: Any) -> dict[str, Any]:
    return {
        "server": "127.0.0.1",
        "port": named.port,
        "zone": ZONE,
        "ptr_zone": REVERSE,
        "key_name": KEY,
        "algorithm": "hmac-sha256",
        "tsig_secret": named.secret,
        "timeout": 3,
        "name": name,
        "fqdn": f"{name}.{ZONE}",
        "address": address,
        "adopt": False,
        "resolved": None,
    } | change


def test_create_refresh_update_delete(named: Named, label: str) -> None:
    p = DnsRecordProvider()
    fqdn = f"{label}.{ZONE}"
    created = p.create(props(named, label))
    assert created.id == fqdn and created.outs["resolved"] == [VIP]
    assert named.dig(fqdn) == ("NOERROR", [VIP])
    assert named.dig("160.50.18.198.in-addr.arpa", "PTR") == ("NOERROR", [f"{fqdn}."])
    state = created.outs

    # refresh with nothing changed: no drift, no update
    read = p.read(fqdn, state)
    assert read.outs["resolved"] == [VIP]
    assert not p.diff(fqdn, read.outs, props(named, label)).changes

    # a new VIP: the stack's own record is replaced in place, the old address is gone
    moved = p.update(fqdn, state, props(named, label, "198.18.50.170"))
    assert named.dig(fqdn) == ("NOERROR", ["198.18.50.170"])
    assert named.dig("170.50.18.198.in-addr.arpa", "PTR") == ("NOERROR", [f"{fqdn}."])
    assert named.dig("160.50.18.198.in-addr.arpa", "PTR")[1] == []  # the old PTR went too
    state = moved.outs

    # a hand edit: refresh shows it as drift, and the next up refuses to overwrite it
    named.hand_set(fqdn, "A", "198.18.50.99")
    drifted = p.read(fqdn, state).outs
    assert drifted["resolved"] == ["198.18.50.99"]
    assert p.diff(fqdn, drifted, props(named, label, "198.18.50.170")).changes
    with pytest.raises(DnsError, match=r"points to 198\.18\.50\.99.*dnsAdopt"):
        p.update(fqdn, drifted, props(named, label, "198.18.50.170"))
    assert named.dig(fqdn) == ("NOERROR", ["198.18.50.99"])
    # dnsAdopt takes it back
    p.update(fqdn, drifted, props(named, label, "198.18.50.170", adopt=True))
    assert named.dig(fqdn) == ("NOERROR", ["198.18.50.170"])

    # destroy removes the stack's record only
    p.delete(fqdn, props(named, label, "198.18.50.170"))
    assert named.dig(fqdn)[1] == []
    assert named.dig("170.50.18.198.in-addr.arpa", "PTR")[1] == []


def test_a_new_name_moves_the_record(named: Named, label: str) -> None:
    p = DnsRecordProvider()
    old, new = f"{label}-a", f"{label}-b"
    state = p.create(props(named, old)).outs
    p.update(f"{old}.{ZONE}", state, props(named, new))
    assert named.dig(f"{new}.{ZONE}") == ("NOERROR", [VIP])
    assert named.dig(f"{old}.{ZONE}")[1] == []
    p.delete(f"{new}.{ZONE}", props(named, new))


def test_a_foreign_record_is_refused_and_left_alone(named: Named, label: str) -> None:
    fqdn = f"{label}.{ZONE}"
    named.hand_set(fqdn, "A", "198.18.50.44")
    with pytest.raises(DnsError, match=r"198\.18\.50\.44"):
        DnsRecordProvider().create(props(named, label))
    assert named.dig(fqdn) == ("NOERROR", ["198.18.50.44"])


def test_no_secret_in_errors(named: Named, label: str) -> None:
    wrong = props(named, label, tsig_secret="d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==")
    with pytest.raises(DnsError) as err:
        DnsRecordProvider().create(wrong)
    assert "d3Jvbmcgc2VjcmV0" not in str(err.value) and named.secret not in str(err.value)
    assert "TSIG key" in str(err.value) or "BADSIG" in str(err.value) or "NOTAUTH" in str(err.value)
