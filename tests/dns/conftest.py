"""DNS-tier fixtures: a throwaway BIND named, started by components.dns.server, that the RFC 2136
client (components.dns.record) updates; results are checked with `dig`, not with the client.

    pytest (root) ── UDP/TCP 127.0.0.1:<free port> ──> named -c <tmp>/named/named.conf
                                                        zones skunkworks.test,
                                                              50.18.198.in-addr.arpa
                                                        TSIG key rc-test (fresh secret)

Nothing leaves 127.0.0.1. Every fixture stops its named in a `finally`, failed test or not.
Root is required (named runs as root, like the lab); named comes from scripts/install-deps.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from components.dns import server
from components.dns.record import DnsTarget

ZONE = "skunkworks.test"
REVERSE = "50.18.198.in-addr.arpa"
KEY = "rc-test"
VIP = "198.18.50.160"


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP (named listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


@dataclass
class Named:
    """A running named and the ways to look at it independently of the client under test."""

    cfg: server.NamedConfig
    pid: int
    secret: str = field(repr=False)

    @property
    def port(self) -> int:
        return self.cfg.port

    def target(self, zone: str = ZONE, **change: Any) -> DnsTarget:
        fields: dict[str, Any] = {
            "server": "127.0.0.1",
            "port": self.port,
            "zone": zone,
            "key_name": KEY,
            "algorithm": "hmac-sha256",
            "secret": self.secret,
            "timeout": 3.0,
        }
        return DnsTarget(**(fields | change))

    def dig(self, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
        """(status, values) of `dig @127.0.0.1 -p PORT name rdtype`, e.g. ("NXDOMAIN", [])."""
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.port), "+norecurse", "+time=3", "+tries=1",
             "+noall", "+comments", "+answer", name, rdtype],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout  # fmt: skip
        status = re.search(r"status: (\w+)", out)
        assert status, f"dig printed no status:\n{out}"
        values = [
            line.split()[-1]
            for line in out.splitlines()
            if line and not line.startswith(";") and line.split()[3] == rdtype
        ]
        return status.group(1), sorted(values)

    def serial(self, zone: str = ZONE) -> int:
        """The zone's SOA serial: unchanged serial = no update was applied."""
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.port), "+short", "+time=3", "+tries=1",
             zone, "SOA"],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout.split()  # fmt: skip
        return int(out[2])

    def hand_set(self, name: str, rdtype: str, *values: str, zone: str = ZONE) -> None:
        """What an administrator does by hand (nsupdate): replace the rrset, with the right key,
        through dnspython directly (not through the client under test)."""
        msg = dns.update.UpdateMessage(
            zone,
            keyring=dns.tsigkeyring.from_text({KEY: self.secret}),
            keyname=KEY,
            keyalgorithm="hmac-sha256",
        )
        msg.replace(name.rstrip(".") + ".", 300, rdtype, *values)  # absolute: not <name>.<zone>
        response = dns.query.tcp(msg, "127.0.0.1", timeout=3, port=self.port)
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())

    def holds(self, zone: str, name: str, rdtype: str, *values: str) -> bool:
        """Whether ``zone`` itself holds exactly ``values`` (any values when none are given) as
        ``name``'s ``rdtype`` records. Asked as an update with prerequisites only, which the
        server checks against that zone's data, never another zone that answers the name's
        queries (a more specific zone on the same server does)."""
        msg = dns.update.UpdateMessage(
            zone,
            keyring=dns.tsigkeyring.from_text({KEY: self.secret}),
            keyname=KEY,
            keyalgorithm="hmac-sha256",
        )
        msg.present(name.rstrip(".") + ".", rdtype, *values)
        rcode = dns.query.tcp(msg, "127.0.0.1", timeout=3, port=self.port).rcode()
        assert rcode in (dns.rcode.NOERROR, dns.rcode.NXRRSET), dns.rcode.to_text(rcode)
        return rcode == dns.rcode.NOERROR


@pytest.fixture(scope="session")
def named_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("tests/dns run a real named as root (lab tier): run them as root")
    for tool in (server.NAMED, server.CHECKCONF, shutil.which("dig") or "/usr/bin/dig"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} not found: run scripts/install-deps (bind9, bind9-dnsutils)")


@pytest.fixture
def start_named(named_tools: None, tmp_path: Path) -> Iterator[Callable[..., Named]]:
    """Starts nameds in this test's tmp dir; every one is stopped when the test ends. ``secret``:
    the TSIG key's (default: a fresh one); ``zones``: what it serves."""
    started: list[Path] = []

    def start(
        name: str = "named", secret: str | None = None, zones: tuple[str, ...] = (ZONE, REVERSE)
    ) -> Named:
        secret = secret or server.new_tsig_secret()
        cfg = server.NamedConfig(
            workdir=tmp_path / name,
            port=free_port(),
            zones=zones,
            key_name=KEY,
            secret=secret,
        )
        started.append(cfg.workdir)
        return Named(cfg, server.start(cfg), secret)

    try:
        yield start
    finally:
        for workdir in started:
            server.stop(workdir)


@pytest.fixture(scope="module")
def named(named_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Named]:
    """One named for the module's record tests (each test uses its own names)."""
    secret = server.new_tsig_secret()
    cfg = server.NamedConfig(
        workdir=tmp_path_factory.mktemp("dns") / "named",
        port=free_port(),
        zones=(ZONE, REVERSE),
        key_name=KEY,
        secret=secret,
    )
    try:
        yield Named(cfg, server.start(cfg), secret)
    finally:
        server.stop(cfg.workdir)


@pytest.fixture
def label(request: pytest.FixtureRequest) -> str:
    """A host name of its own for each test, so tests sharing one named do not meet."""
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
