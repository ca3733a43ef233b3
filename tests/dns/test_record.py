"""The VIP's DNS record against a real BIND: what components.dns.record does is checked with
`dig` (and the zone's SOA serial), what components.dns.server leaves behind with /proc."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from components.dns import record, server
from components.dns.record import DnsError
from tests.dns.conftest import REVERSE, VIP, ZONE, Named

pytestmark = pytest.mark.lab

OTHER = "198.18.50.99"
NEW = "198.18.50.170"


def fqdn(label: str) -> str:
    return f"{label}.{ZONE}"


def named_pids(conf: Path) -> list[int]:
    """Processes whose cmdline is a named with this config (read from /proc, independently)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode()).name == "named" and str(conf).encode() in argv:
            found.append(int(proc.name))
    return found


# --- the A record ------------------------------------------------------------------------


def test_create_unchanged_replace_delete(named: Named, label: str) -> None:
    target = named.target()
    assert named.dig(fqdn(label)) == ("NXDOMAIN", [])
    assert record.read(target, label) == ()

    assert record.ensure(target, label, VIP) == "created"
    assert named.dig(fqdn(label)) == ("NOERROR", [VIP])
    assert record.read(target, label) == (VIP,)

    serial = named.serial()
    assert record.ensure(target, label, VIP) == "unchanged"
    assert named.dig(fqdn(label)) == ("NOERROR", [VIP])
    assert named.serial() == serial, "an unchanged record must not send an update"

    assert record.ensure(target, label, NEW, owned=(VIP,)) == "replaced"
    assert named.dig(fqdn(label)) == ("NOERROR", [NEW])

    assert record.delete(target, label, NEW) is True
    assert named.dig(fqdn(label)) == ("NXDOMAIN", [])
    assert record.read(target, label) == ()
    assert record.delete(target, label, NEW) is False


def test_absolute_names_and_names_outside_the_zone(named: Named, label: str) -> None:
    target = named.target()
    assert record.ensure(target, fqdn(label) + ".", VIP) == "created"
    assert named.dig(fqdn(label)) == ("NOERROR", [VIP])
    assert record.read(target, label) == (VIP,)
    with pytest.raises(DnsError, match=r"NOTZONE: vip\.other\.test\. is not in zone"):
        record.ensure(target, "vip.other.test.", VIP)


def test_a_record_changed_by_hand_is_not_overwritten(named: Named, label: str) -> None:
    target = named.target()
    assert record.ensure(target, label, VIP) == "created"
    named.hand_set(fqdn(label), "A", OTHER)
    serial = named.serial()

    with pytest.raises(DnsError) as failed:
        record.ensure(target, label, VIP, owned=(VIP,))
    message = str(failed.value)
    assert OTHER in message
    assert fqdn(label) in message
    assert "dnsAdopt" in message
    assert f"127.0.0.1:{named.port}" in message
    assert named.dig(fqdn(label)) == ("NOERROR", [OTHER])
    assert named.serial() == serial

    assert record.ensure(target, label, VIP, owned=(VIP,), adopt=True) == "replaced"
    assert named.dig(fqdn(label)) == ("NOERROR", [VIP])


def test_delete_touches_only_its_own_address(named: Named, label: str) -> None:
    target = named.target()
    named.hand_set(fqdn(label), "A", OTHER)
    assert record.delete(target, label, VIP) is False
    assert named.dig(fqdn(label)) == ("NOERROR", [OTHER])

    named.hand_set(fqdn(label), "A", OTHER, VIP)
    assert record.read(target, label) == tuple(sorted((OTHER, VIP)))
    assert record.delete(target, label, VIP) is True
    assert named.dig(fqdn(label)) == ("NOERROR", [OTHER])


def test_two_addresses_one_of_them_foreign_are_refused(named: Named, label: str) -> None:
    target = named.target()
    named.hand_set(fqdn(label), "A", OTHER, VIP)
    with pytest.raises(DnsError, match=OTHER.replace(".", r"\.")):
        record.ensure(target, label, VIP, owned=(VIP,))
    assert named.dig(fqdn(label)) == ("NOERROR", sorted([OTHER, VIP]))
    assert record.ensure(target, label, VIP, owned=(VIP, OTHER)) == "replaced"
    assert named.dig(fqdn(label)) == ("NOERROR", [VIP])


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret": server.new_tsig_secret()}, "TSIG key rejected (BADSIG)"),
        ({"key_name": "nosuch-key"}, "TSIG key rejected (BADKEY)"),
        ({"key_name": None, "secret": None}, "REFUSED"),
    ],
    ids=["wrong-secret", "unknown-key", "unsigned"],
)
def test_an_update_the_server_rejects_changes_nothing(
    named: Named, label: str, change: dict[str, str | None], expected: str
) -> None:
    target = named.target(**change)
    serial = named.serial()
    with pytest.raises(DnsError) as failed:
        record.ensure(target, label, VIP)
    message = str(failed.value)
    assert expected in message
    assert f"127.0.0.1:{named.port} zone {ZONE}" in message
    assert named.secret not in message
    if target.secret:
        assert target.secret not in message
    assert named.dig(fqdn(label)) == ("NXDOMAIN", [])
    assert named.serial() == serial


def test_a_zone_the_server_does_not_serve(named: Named) -> None:
    target = named.target(zone="nosuch.test")
    for attempt in (
        lambda: record.read(target, "vip"),
        lambda: record.ensure(target, "vip", VIP),
        lambda: record.delete(target, "vip", VIP),
    ):
        with pytest.raises(DnsError, match="not authoritative") as failed:
            attempt()
        assert "zone nosuch.test" in str(failed.value)


def test_a_server_that_does_not_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries vanish
        port = silent.getsockname()[1]
        target = record.DnsTarget(server="127.0.0.1", port=port, zone=ZONE, timeout=1.0)
        for attempt in (
            lambda: record.read(target, "vip"),
            lambda: record.ensure(target, "vip", VIP),
            lambda: record.delete(target, "vip", VIP),
        ):
            began = time.monotonic()
            with pytest.raises(DnsError) as failed:
                attempt()
            elapsed = time.monotonic() - began
            message = str(failed.value)
            assert f"127.0.0.1:{port}" in message
            assert "no answer within 1 s (timeout)" in message
            assert elapsed < 1.0 + 5, f"took {elapsed:.1f} s for a 1 s timeout"


def test_the_secret_never_shows(named: Named, label: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = named.target()
    bad = named.target(secret=server.new_tsig_secret())
    silent = named.target(port=1, timeout=0.5)  # nothing listens on 127.0.0.1:1
    errors: list[DnsError] = []
    assert record.ensure(good, label, NEW) == "created"
    for attempt in (
        lambda: record.ensure(bad, label, VIP, owned=(NEW,)),
        lambda: record.ensure(silent, label, VIP),
        lambda: record.ensure(good, label, VIP),  # NEW is not in owned: foreign
    ):
        with pytest.raises(DnsError) as failed:
            attempt()
        errors.append(failed.value)
    assert len(errors) == 3
    shown = [repr(good), str(good), repr(bad), repr(named.cfg), caplog.text]
    for e in errors:
        assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__)
        shown += [str(e), repr(e), "".join(traceback.format_exception(e))]
    assert caplog.text, "the client logs what it changes"
    for text in shown:
        assert named.secret not in text
        assert bad.secret is not None and bad.secret not in text


# --- PTR -----------------------------------------------------------------------------------


def test_ptr_create_read_replace_delete(named: Named) -> None:
    reverse = named.target(zone=REVERSE)
    address, name = "198.18.50.161", f"repo1.{ZONE}"
    assert record.read_ptr(reverse, address) == ()

    assert record.ensure_ptr(reverse, address, name) == "created"
    assert named.dig(f"161.{REVERSE}", "PTR") == ("NOERROR", [f"{name}."])
    assert record.read_ptr(reverse, address) == (f"{name}.",)
    assert record.ensure_ptr(reverse, address, name.upper() + ".") == "unchanged"

    named.hand_set(f"161.{REVERSE}.", "PTR", f"mail.{ZONE}.", zone=REVERSE)
    with pytest.raises(DnsError, match=rf"points to mail\.{ZONE}\., which this stack did not"):
        record.ensure_ptr(reverse, address, name, owned=(name,))
    assert named.dig(f"161.{REVERSE}", "PTR") == ("NOERROR", [f"mail.{ZONE}."])
    assert record.ensure_ptr(reverse, address, name, adopt=True) == "replaced"
    assert named.dig(f"161.{REVERSE}", "PTR") == ("NOERROR", [f"{name}."])

    assert record.delete_ptr(reverse, address, f"mail.{ZONE}") is False
    assert record.delete_ptr(reverse, address, name) is True
    assert named.dig(f"161.{REVERSE}", "PTR") == ("NXDOMAIN", [])
    assert record.delete_ptr(reverse, address, name) is False


def test_ptr_of_an_address_outside_the_reverse_zone(named: Named) -> None:
    with pytest.raises(DnsError, match="NOTZONE"):
        record.ensure_ptr(named.target(zone=REVERSE), "10.0.0.1", f"vip.{ZONE}")


# --- the server -----------------------------------------------------------------------------


def test_stop_leaves_no_named_and_no_workdir(start_named: Callable[..., Named]) -> None:
    lab = start_named()
    assert named_pids(lab.cfg.conf) == [lab.pid]
    assert (lab.cfg.workdir / "named.pid").read_text().strip() == str(lab.pid)
    assert lab.cfg.conf.stat().st_mode & 0o777 == 0o600
    assert lab.secret not in repr(lab.cfg)

    assert server.stop(lab.cfg.workdir) is True
    assert named_pids(lab.cfg.conf) == []
    assert not Path(f"/proc/{lab.pid}").exists(), "named's process (or its zombie) is left"
    assert not lab.cfg.workdir.exists()
    assert server.stop(lab.cfg.workdir) is False


def test_stop_spares_a_process_named_by_a_stale_pid_file(tmp_path: Path) -> None:
    workdir = tmp_path / "named"
    workdir.mkdir()
    cfg = server.NamedConfig(
        workdir=workdir, port=5353, zones=(ZONE,), key_name="k", secret=server.new_tsig_secret()
    )
    (workdir / "named.conf").write_text(server.render_conf(cfg))
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (workdir / "named.pid").write_text(f"{bystander.pid}\n")
        assert server.stop(workdir) is False
        assert bystander.poll() is None, "stop() signalled a process that is not its named"
        assert not workdir.exists()
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_stop_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    with pytest.raises(server.NamedError, match="not a named work directory"):
        server.stop(tmp_path)
    assert (tmp_path / "precious").read_text() == "keep me"


@pytest.mark.parametrize("listen", ["0.0.0.0", "10.1.2.3", "192.168.1.1", "::1", "198.20.0.1"])
def test_named_listens_only_on_loopback_or_the_lab_net(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ValueError, match=re.escape("may listen on 127.0.0.1 or in 198.18.0.0/15")):
        server.NamedConfig(
            workdir=tmp_path, listen=listen, port=53, zones=(ZONE,), key_name="k",
            secret=server.new_tsig_secret(),
        )  # fmt: skip
    ok = server.NamedConfig(
        workdir=tmp_path, listen="198.19.255.1", port=53, zones=(ZONE,), key_name="k",
        secret=server.new_tsig_secret(),
    )  # fmt: skip
    assert "listen-on port 53 { 198.19.255.1; };" in server.render_conf(ok)


def test_under_apparmor_named_runs_from_a_copy(
    start_named: Callable[..., Named], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where AppArmor confines /usr/sbin/named (not on this kernel), the copy must work."""
    monkeypatch.setattr(server, "_apparmor_enforces_named", lambda: True)
    lab = start_named()
    assert Path(f"/proc/{lab.pid}/exe").resolve() == lab.cfg.workdir / "named"
    assert record.ensure(lab.target(), "vip", VIP) == "created"
    assert lab.dig(fqdn("vip")) == ("NOERROR", [VIP])
    assert server.stop(lab.cfg.workdir) is True
    assert named_pids(lab.cfg.conf) == []


def test_a_named_that_cannot_listen_is_reported_and_not_left(
    named_tools: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "READY_SECONDS", 2.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cfg = server.NamedConfig(
            workdir=tmp_path / "named", port=port, zones=(ZONE,), key_name="k",
            secret=server.new_tsig_secret(),
        )  # fmt: skip
        try:
            with pytest.raises(server.NamedError) as failed:
                server.start(cfg)
            message = str(failed.value)
            assert f"127.0.0.1:{port}" in message
            assert "expected: an SOA answer" in message and "actual:" in message
            assert "named.log" in message
            assert named_pids(cfg.conf) == []
        finally:
            server.stop(cfg.workdir)
