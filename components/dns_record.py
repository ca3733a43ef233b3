"""DnsRecord: the VIP's A record (and optional PTR) as a Pulumi dynamic resource.

create adds it; update moves it: the new record first (a new address replaces the old one in
place, guarded by it as prerequisite), then the old records it no longer keeps go, each from
its own server and zone, signed with the new inputs' key (:func:`move_record`);
delete removes only this stack's record; read (``pulumi refresh``) reports what the server
answers now, so a hand edit shows as drift and the next update refuses to overwrite it unless
``dnsAdopt``. Every update is an RFC 2136 dynamic update signed with the TSIG key, which is a
Pulumi secret and appears in no output, log line or error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components.config import Settings
from components.dns import record
from components.dns.record import DnsTarget
from components.dns.stack import StackRecord, ensure_record, move_record, remove_record

SECRET = "tsig_secret"
# a change of any of these is an update: they move the record, or sign its updates (a rotated
# secret goes into the state, so that a later delete signs with it)
WATCHED = ("server", "port", "zone", "ptr_zone", "key_name", "algorithm", SECRET, "name", "address")


def _record(p: dict[str, Any]) -> StackRecord:
    def target(zone: str) -> DnsTarget:
        return DnsTarget(
            server=str(p["server"]),
            port=int(p["port"]),
            zone=zone,
            key_name=p["key_name"],
            algorithm=str(p["algorithm"]),
            secret=p[SECRET],
            timeout=float(p["timeout"]),
        )

    return StackRecord(
        target=target(str(p["zone"])),
        ptr_target=target(str(p["ptr_zone"])) if p.get("ptr_zone") else None,
        name=str(p["name"]),
        fqdn=str(p["fqdn"]),
        address=str(p["address"]),
        adopt=bool(p["adopt"]),
    )


def _log(lines: list[str]) -> None:
    for line in lines:
        try:
            pulumi.log.info(f"dns: {line}")
        except Exception:  # outside an engine (tests)
            print(f"dns: {line}")


class DnsRecordProvider(ResourceProvider):
    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        inputs = {k: v for k, v in props.items() if k != "__provider"}
        rec = _record(inputs)
        return {**inputs, "resolved": list(record.read(rec.target, rec.name))}

    def create(self, props: dict[str, Any]) -> CreateResult:
        rec = _record(props)
        _log(ensure_record(rec))
        return CreateResult(id_=rec.fqdn, outs=self._outs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in WATCHED if olds.get(k) != news.get(k)]
        # a refresh that found the record changed by hand: olds' resolved differs
        drift = list(olds.get("resolved") or []) != [olds.get("address")]
        return DiffResult(
            changes=bool(changed) or drift,
            replaces=[],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # what this stack wrote before is its own; anything else there is foreign
        move_record(_record(olds), _record(news), _log)
        return UpdateResult(outs=self._outs(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _log(remove_record(_record(props)) or [f"{props['fqdn']}: already gone"])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=self._outs(props))


@dataclass(frozen=True)
class DnsRecordArgs:
    settings: Settings
    """The stack settings (dnsServer set)."""
    tsig_secret: pulumi.Input[str] | None
    """The TSIG key (``dnsTsigSecret``), a secret."""


class DnsRecord(Resource, module="repo-cluster", name="DnsRecord"):
    """``<dnsRecord>.<dnsZone>`` -> the VIP on ``dnsServer``, kept by dynamic updates."""

    fqdn: pulumi.Output[str]
    address: pulumi.Output[str]
    resolved: pulumi.Output[list[str]]
    """What the server answered for the name at the last create, update or refresh."""

    def __init__(
        self, name: str, args: DnsRecordArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        s = args.settings
        secret = pulumi.Output.secret(args.tsig_secret) if args.tsig_secret is not None else None
        props: dict[str, Any] = {
            "server": s.dns_server,
            "port": s.dns_port,
            "zone": s.dns_zone,
            "ptr_zone": s.dns_ptr_zone,
            "key_name": s.dns_tsig_key_name,
            "algorithm": s.dns_tsig_algorithm,
            SECRET: secret,
            "timeout": s.dns_timeout,
            "name": s.dns_record,
            "fqdn": s.dns_fqdn,
            "address": str(s.vip.ip),
            "adopt": s.dns_adopt,
            "resolved": None,
        }
        hide = pulumi.ResourceOptions(additional_secret_outputs=[SECRET])
        super().__init__(DnsRecordProvider(), name, props, pulumi.ResourceOptions.merge(opts, hide))
