"""Host-key trust of the converge against a real SSH server (paramiko's, on 127.0.0.1): first
contact means first (recorded, one connection), a changed key is refused naming both
fingerprints, the key a VM publishes is trusted for that VM (the record notwithstanding), and
the secret files go only to a proven host (or, on a lab stack, to one trusted on first
contact)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from components.bundle import Secrets, hostkeys, render_node
from components.converge import node as converge
from components.converge import ssh, trust
from components.converge.facts import UnitState
from components.converge.trust import Verified
from tests.kit import stack_settings, vm_host_key, write_operator_key

pytestmark = pytest.mark.unit


def pkey(key: hostkeys.HostKey) -> paramiko.PKey:
    from io import StringIO

    return paramiko.Ed25519Key.from_private_key(StringIO(key.private))


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL


class Sshd:
    """An SSH server on 127.0.0.1 presenting ``key`` (settable); counts TCP connections."""

    def __init__(self, key: hostkeys.HostKey) -> None:
        self.key = key
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = paramiko.Transport(conn)
            t.add_server_key(pkey(self.key))
            self.transports.append(t)
            try:
                t.start_server(server=_Server())
            except (paramiko.SSHException, EOFError, OSError):
                t.close()

    def close(self) -> None:
        self.sock.close()
        for t in self.transports:
            t.close()


@pytest.fixture
def sshd() -> Iterator[Sshd]:
    server = Sshd(vm_host_key("own"))
    yield server
    server.close()


SHARED = hostkeys.generate("shared")
SHARED_ED = next(k for k in SHARED if k.type == "ed25519")


def target(tmp_path: Path, sshd: Sshd, **over: Any) -> ssh.Target:
    key_file = tmp_path / "operator"
    if not key_file.exists():
        write_operator_key(tmp_path, "operator@test")
    base: dict[str, Any] = {
        "name": "repo1",
        "host": "127.0.0.1",
        "user": "root",
        "key_file": str(key_file),
        "known_keys": tuple(k.public for k in SHARED),
        "port": sshd.port,
        "record": str(tmp_path / "first-contact.json"),
        "connect_timeout": 5.0,
    }
    return ssh.Target(**{**base, **over})


def connect(t: ssh.Target) -> tuple[Verified, list[str]]:
    reports: list[str] = []
    c, how = ssh.connect_verified(t, reports.append)
    c.close()
    return how, reports


def test_first_contact_is_one_connection_recorded_then_a_changed_key_is_refused(tmp_path, sshd):
    own = sshd.key.fingerprint
    how, reports = connect(target(tmp_path, sshd, trust_first_contact=True))
    assert how is Verified.FIRST_CONTACT
    assert reports == [f"repo1 (127.0.0.1): first contact, trusted host key {own}"]
    assert sshd.connections == 1, "first contact must decide on the connection it uses"
    record = json.loads((tmp_path / "first-contact.json").read_text())
    assert record == {"repo1": {"fingerprint": own, "via": "first contact"}}
    # the same key again: recorded, not a new first contact
    assert connect(target(tmp_path, sshd, trust_first_contact=True))[0] is Verified.RECORDED
    # another key at the same node: refused, whatever the flag says
    sshd.key = vm_host_key("intruder")
    with pytest.raises(ssh.HostKeyError) as e:
        connect(target(tmp_path, sshd, trust_first_contact=True))
    assert own in str(e.value) and sshd.key.fingerprint in str(e.value)
    assert "changed host key" in str(e.value)


def test_a_converged_node_never_gets_first_contact_again(tmp_path, sshd):
    sshd.key = SHARED_ED
    assert connect(target(tmp_path, sshd))[0] is Verified.SHARED
    assert json.loads((tmp_path / "first-contact.json").read_text())["repo1"]["via"] == "shared"
    sshd.key = vm_host_key("reinstalled or a man in the middle")
    with pytest.raises(ssh.HostKeyError, match="changed host key"):
        connect(target(tmp_path, sshd, trust_first_contact=True))


def test_a_key_other_than_the_shared_one_is_refused_naming_both(tmp_path, sshd):
    with pytest.raises(ssh.HostKeyError) as e:
        connect(target(tmp_path, sshd, record=None))
    assert sshd.key.fingerprint in str(e.value) and SHARED_ED.fingerprint in str(e.value)
    assert "refused" in str(e.value)
    with pytest.raises(ssh.HostKeyError, match="--trust-first-contact"):
        connect(target(tmp_path, sshd, published_key=vm_host_key("x").public))


def test_the_published_key_is_trusted_for_the_vm_that_publishes_it(tmp_path, sshd):
    made_at_boot = sshd.key
    published = made_at_boot.public
    assert connect(target(tmp_path, sshd, published_key=published))[0] is Verified.PUBLISHED
    sshd.key = SHARED_ED  # the converge installed the shared keys; the VM publishes that now
    shared = SHARED_ED.public
    assert connect(target(tmp_path, sshd, published_key=shared))[0] is Verified.SHARED
    # its first-boot key, from an old copy of its disk: neither shared nor published now
    sshd.key = made_at_boot
    with pytest.raises(ssh.HostKeyError, match="changed host key"):
        connect(target(tmp_path, sshd, published_key=shared))
    # a new VM behind the node's name publishes its own key: trusted, whatever the record
    sshd.key = vm_host_key("the replacement VM")
    new = sshd.key.public
    assert connect(target(tmp_path, sshd, published_key=new))[0] is Verified.PUBLISHED


def test_a_key_confirmed_out_of_band_is_trusted_as_proven(tmp_path, sshd):
    """An adopted server publishes no key: the fingerprint its operator read on its console
    (nodes[].hostKey) lets the converge in, proven (the secrets may follow), and no other."""
    confirmed = sshd.key.fingerprint
    assert connect(target(tmp_path, sshd, confirmed_key=confirmed))[0] is Verified.CONFIRMED
    assert trust.proven(Verified.CONFIRMED)
    other = vm_host_key("someone else at that address").fingerprint
    with pytest.raises(ssh.HostKeyError, match="refused"):
        connect(target(tmp_path, sshd, record=None, confirmed_key=other))


def test_the_stack_s_host_key_fingerprints_reach_each_node_s_target() -> None:
    s = stack_settings("sim")
    node = s.nodes[0]
    fp = vm_host_key("k").fingerprint
    s = s.__class__(
        **{
            **s.__dict__,
            "nodes": (node.__class__(node.name, node.ip, node.priority, fp), *s.nodes[1:]),
        }
    )
    access = ssh.Access.for_stack(s, Path("/r"), (), False)
    assert access.target(node.name, str(node.ip)).confirmed_key == fp
    assert access.target(s.nodes[1].name, str(s.nodes[1].ip)).confirmed_key is None
    assert access.target(node.name, str(node.ip), strict=True).confirmed_key is None


class FakeConn:
    """Stands in for a Connection: the converge's facts and writes are monkeypatched."""

    def __init__(self, key: hostkeys.HostKey) -> None:
        k = ssh.parse_public_key(key.public)
        transport = type("T", (), {"get_remote_server_key": lambda _self: k})()
        self.client = type("C", (), {"get_transport": lambda _self: transport})()
        self.host = "127.0.0.1"


@pytest.fixture
def node_facts(monkeypatch) -> list[list[str]]:
    """A bare node; returns the paths each write (``feed``) carried, in order."""
    fed: list[list[str]] = []
    monkeypatch.setattr(converge.facts, "cloud_init_status", lambda c: "done")
    monkeypatch.setattr(converge.facts, "os_family", lambda c: "debian")
    monkeypatch.setattr(converge.facts, "file_states", lambda c, paths: {})
    monkeypatch.setattr(converge.facts, "reloads_owed", lambda c: [])
    monkeypatch.setattr(converge.facts, "missing_packages", lambda c, fam, pkgs: [])
    monkeypatch.setattr(converge.facts, "sysctl_values", lambda c, keys: {})
    monkeypatch.setattr(
        converge.facts,
        "image_info",
        lambda c, image, user: "\tfeatures: layering, exclusive-lock\n",
    )
    monkeypatch.setattr(
        converge.facts, "unit_states", lambda c, units: dict.fromkeys(units, UnitState("", ""))
    )
    monkeypatch.setattr(converge, "run", lambda c, step, cmd, timeout=0: "")
    monkeypatch.setattr(converge, "_reconnect", lambda c, shared, name: None)

    def feed(c: Any, step: str, command: str, data: bytes, timeout: float) -> None:
        fed.append([ln.split()[-1] for ln in data.decode().splitlines() if ln.startswith("mv ")])

    monkeypatch.setattr(converge, "feed", feed)
    return fed


def sim_bundle():
    s = stack_settings("sim")
    return render_node(s, s.nodes[0], Secrets.resolve(s, SHARED, "t3stPw0r"), ("k",))


@pytest.mark.parametrize(
    ("how", "lab", "sent"),
    [
        (Verified.FIRST_CONTACT, False, False),
        (Verified.RECORDED, False, False),
        (Verified.FIRST_CONTACT, True, True),
        (Verified.PUBLISHED, False, True),
        (Verified.CONFIRMED, False, True),
        (Verified.SHARED, False, True),
    ],
)
def test_secret_files_go_only_to_a_proven_host(node_facts, how, lab, sent):
    bundle = sim_bundle()
    secret = {f.path for f in bundle.files if f.secret}
    own = vm_host_key("own")
    result = converge.converge_node(FakeConn(own), bundle, verified=how, first_contact_secrets=lab)  # type: ignore[arg-type]
    written = [p for batch in node_facts for p in batch]
    assert not (secret & set(written)) if not sent else secret <= set(written)
    if sent:
        assert result.error is None, result.error
        # every other file first, the secret ones after, in a write of their own
        assert set(node_facts[-1]) == secret
    else:
        assert result.error is not None and ": secrets: withheld" in result.error
        assert own.fingerprint in result.error
        assert set(written) == {f.path for f in bundle.files} - secret


def test_a_published_key_counts_only_from_a_vm_of_this_stack() -> None:
    """The extraConfig of a VM named like the node: its published ed25519 key counts only
    when the VM carries this stack's marker; anything else published is no key."""
    from components.bundle.guestinfo import STACK_MARKER
    from components.bundle.paths import PATHS
    from components.vcenter.published import published_in

    def opt(key: str, value: str) -> Any:
        return type("Opt", (), {"key": key, "value": value})()

    key = vm_host_key("made at boot").public
    ours = opt(STACK_MARKER, "repo-cluster/sim")
    fields = " ".join(key.split()[:2])
    assert published_in([ours, opt(PATHS.host_key_guestinfo, key)], "repo-cluster/sim") == fields
    assert published_in([ours, opt(PATHS.host_key_guestinfo, key)], "repo-cluster/lab") is None
    assert published_in([opt(PATHS.host_key_guestinfo, key)], "repo-cluster/sim") is None
    assert published_in([ours], "repo-cluster/sim") is None
    rsa = opt(PATHS.host_key_guestinfo, "ssh-rsa AAAAB3Nza")
    assert published_in([ours, rsa], "repo-cluster/sim") is None
    assert (
        published_in([ours, opt(PATHS.host_key_guestinfo, "ssh-ed25519")], "repo-cluster/sim")
        is None
    )
