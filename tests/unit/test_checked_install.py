"""keepalived.conf is checked before it is installed: written to a private temp file beside it,
`keepalived -t -f <temp>`, and moved into place only when keepalived accepts it (el7's
keepalived 1.3.5 has no -t: installed as before). A rejected file leaves the previous one, no
temp file and no reload owed, and the step error carries keepalived's words. The same holds in
the cluster-wide VRRP rollout, which checks every node's new config before stopping any peer.

Facts in, commands out; the write script also runs for real under sh, its paths moved into a
scratch directory and a stand-in `keepalived` on PATH (the real one: tests/render)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.bundle import PATHS, BundleFile, Secrets, hostkeys, render_node
from components.converge import node as converge
from components.converge import operations as ops
from components.converge import rollout, ssh
from components.converge.facts import UnitState
from components.converge.node import StepError
from components.converge.rollout import Plan, RolloutError, View
from components.converge.trust import Verified
from tests.kit import stack_settings

pytestmark = pytest.mark.unit

CONF = BundleFile(PATHS.keepalived_conf, b"vrrp_instance NEW {}\n", 0o600, secret=True)
HOSTKEY = BundleFile("/etc/ssh/ssh_host_ed25519_key", b"-----BEGIN...\n", 0o600, secret=True)
NOTIFY = BundleFile(PATHS.notify_script, b"#!/bin/bash\n", 0o755)
# a keepalived that rejects a config holding BROKEN, the way 2.x words it (twice, as it does)
FAKE_KEEPALIVED = """#!/bin/sh
[ "$1" = -t ] && [ "$2" = -f ] || exit 64
if grep -q BROKEN "$3"; then
    for i in 1 2; do echo "($3: Line 1) Unknown keyword 'BROKEN'"; done >&2
    exit 5
fi
"""


def lines(script: str) -> list[str]:
    return script.splitlines()


def index(script: str, start: str) -> int:
    return next(i for i, ln in enumerate(lines(script)) if ln.startswith(start))


@pytest.mark.parametrize("family", ["debian", "ubuntu", "el8", "el9"])
def test_the_config_is_checked_before_it_moves_and_owes_a_reload_only_then(family: str) -> None:
    script = ops.write_files_script([ops.FileChange(CONF, True)], family)
    check = index(script, 'if ! out=$(keepalived -t -f "$t0"')
    assert index(script, "t0=$(mktemp /etc/keepalived/.keepalived.conf.XXXXXX)") < check
    assert check < index(script, "touch /var/lib/repo-cluster/pending/keepalived")
    assert check < index(script, 'mv -f "$t0" /etc/keepalived/keepalived.conf')
    assert "trap 'rm -f -- \"$t0\"' EXIT" in lines(script)


def test_el7_has_no_config_test_and_installs_as_before() -> None:
    """keepalived 1.3.5 has no -t: the reload (or start) that follows is the test."""
    script = ops.write_files_script([ops.FileChange(CONF, True)], "el7")
    assert "keepalived -t" not in script
    assert index(script, "touch ") < index(script, 'mv -f "$t0" /etc/keepalived/keepalived.conf')
    assert ops.check_files_script([CONF], "el7") is None


class Node:
    """A scratch tree standing in for a node: the script's absolute paths moved below it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "keepalived").write_text(FAKE_KEEPALIVED)
        (self.bin / "keepalived").chmod(0o755)
        for d in ("etc/keepalived", "etc/ssh"):
            (root / d).mkdir(parents=True)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        for top in ("/etc/", "/var/lib/repo-cluster"):
            script = script.replace(f" {top}", f" {self.root}{top}")
            script = script.replace(f"'{top}", f"'{self.root}{top}")
        env = {"PATH": f"{self.bin}:/usr/bin:/bin"}
        return subprocess.run(["sh", "-s"], input=script, env=env, capture_output=True, text=True)

    def leftovers(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob(".*.*"))


@pytest.fixture
def node(tmp_path: Path) -> Node:
    me = Node(tmp_path)
    me.path(PATHS.keepalived_conf).write_bytes(b"vrrp_instance OLD {}\n")
    return me


def test_a_rejected_config_is_not_installed_and_leaves_nothing_behind(node: Node) -> None:
    broken = BundleFile(PATHS.keepalived_conf, b"BROKEN {\n", 0o600, secret=True)
    script = ops.write_files_script([ops.FileChange(broken, True), ops.FileChange(HOSTKEY, True)])
    r = node.run(script)
    assert r.returncode == 1
    assert "Unknown keyword 'BROKEN'" in r.stderr  # keepalived's words, once
    assert r.stderr.count("Unknown keyword") == 1
    assert "keepalived.conf (keepalived -t -f <the new file>): not installed" in r.stderr
    assert node.path(PATHS.keepalived_conf).read_bytes() == b"vrrp_instance OLD {}\n"
    assert node.leftovers() == []
    # the file that needs no check went in, with the reload it owes; keepalived owes none
    assert node.path(HOSTKEY.path).read_bytes() == HOSTKEY.content
    assert sorted(p.name for p in node.path(PATHS.pending_dir).iterdir()) == ["sshd"]


def test_an_accepted_config_is_installed(node: Node) -> None:
    r = node.run(ops.write_files_script([ops.FileChange(CONF, True)], "debian"))
    assert r.returncode == 0, r.stderr
    installed = node.path(PATHS.keepalived_conf)
    assert installed.read_bytes() == CONF.content and installed.stat().st_mode & 0o777 == 0o600
    assert node.leftovers() == []
    assert [p.name for p in node.path(PATHS.pending_dir).iterdir()] == ["keepalived"]


def test_the_check_alone_installs_nothing(node: Node) -> None:
    script = ops.check_files_script([CONF], "debian")
    assert script is not None and "mv " not in script and "touch" not in script
    assert node.run(script).returncode == 0
    broken = BundleFile(PATHS.keepalived_conf, b"BROKEN\n", 0o600, secret=True)
    r = node.run(ops.check_files_script([broken], "debian") or "")
    assert r.returncode == 1 and "Unknown keyword 'BROKEN'" in r.stderr
    assert node.path(PATHS.keepalived_conf).read_bytes() == b"vrrp_instance OLD {}\n"
    assert node.leftovers() == [] and not node.path(PATHS.pending_dir).exists()


# --------------------------------------------------------------------------- the converge

SHARED = hostkeys.generate("shared")


class FakeConn:
    def __init__(self) -> None:
        key = ssh.parse_public_key(next(k for k in SHARED if k.type == "ed25519").public)
        transport = type("T", (), {"get_remote_server_key": lambda _self: key})()
        self.client = type("C", (), {"get_transport": lambda _self: transport})()
        self.host = "127.0.0.1"


def fake_node(monkeypatch: pytest.MonkeyPatch, stack: str, units: UnitState) -> Any:
    """The first node's bundle of ``stack``, and facts of a node that has none of it yet (every
    unit in state ``units``): what converge_node then does needs no node."""
    s = stack_settings(stack)
    bundle = render_node(s, s.nodes[0], Secrets.resolve(s, SHARED, "t3stPw0r"), ("k",))
    for fact, value in (
        ("cloud_init_status", "done"),
        ("os_family", bundle.os_family),
        ("file_states", {}),
        ("reloads_owed", []),
        ("missing_packages", []),
        ("sysctl_values", {}),
        ("image_info", "\tfeatures: layering, exclusive-lock\n"),
    ):
        monkeypatch.setattr(converge.facts, fact, lambda *_a, v=value: v)
    monkeypatch.setattr(converge.facts, "unit_states", lambda c, names: dict.fromkeys(names, units))
    monkeypatch.setattr(converge, "_reconnect", lambda c, shared, name: None)
    return bundle


@pytest.mark.parametrize("stack", ["sim", "lab"])
def test_the_converge_checks_keepalived_conf_before_installing_it(
    monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    bundle = fake_node(monkeypatch, stack, UnitState("", ""))
    s = stack_settings(stack)
    ran: list[str] = []
    monkeypatch.setattr(converge, "run", lambda c, step, cmd, timeout=0: ran.append(cmd) or "")

    def feed(c: Any, step: str, command: str, data: bytes, timeout: float) -> None:
        script = data.decode()
        if PATHS.keepalived_conf in script and "keepalived -t" in script:
            raise StepError(step, "`sh -s` exited 1: (x: Line 3) Unknown keyword 'bogus'")

    monkeypatch.setattr(converge, "feed", feed)
    result = converge.converge_node(FakeConn(), bundle, verified=Verified.SHARED)  # type: ignore[arg-type]
    if bundle.os_family == "el7":  # no -t: installed, and the reload is the test
        assert result.error is None, result.error
        assert any(cmd.startswith("systemctl start keepalived") for cmd in ran)
    else:
        assert result.error == (
            f"{s.nodes[0].name}: secrets: `sh -s` exited 1: (x: Line 3) Unknown keyword 'bogus'"
        )
        assert not any("keepalived" in cmd for cmd in ran)  # no reload, no start


# --------------------------------------------------------------------------- the rollout


def test_the_rollout_checks_every_node_before_stopping_any(monkeypatch: pytest.MonkeyPatch) -> None:
    s = stack_settings("sim")
    secrets = Secrets.resolve(s, SHARED, "n3wPw0rd")
    confs = {
        n.name: render_node(s, n, secrets, ("k",)).file(PATHS.keepalived_conf) for n in s.nodes
    }
    keeper, peer = (n.name for n in s.start_order)
    views = [View(keeper, True, "MASTER", "old"), View(peer, True, "BACKUP", "old")]
    monkeypatch.setattr(rollout, "look", lambda *_a: views)
    monkeypatch.setattr(rollout, "plan", lambda *_a, **_k: Plan(keeper, (peer,)))
    done: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def connect(target: Any) -> Iterator[str]:
        yield target.name

    def feed(c: str, step: str, command: str, data: bytes, timeout: float) -> None:
        kind = "check" if "mv " not in data.decode() else "write"
        done.append((c, kind))
        if c == peer and kind == "check":
            raise StepError(step, "`sh -s` exited 1: Unknown keyword 'bogus'")

    monkeypatch.setattr(rollout.sshconn, "connect", connect)
    monkeypatch.setattr(rollout, "feed", feed)
    monkeypatch.setattr(rollout, "run", lambda c, step, cmd, timeout=0: done.append((c, cmd)))
    access = ssh.Access(user="root", key_file="k", known_keys=())
    with pytest.raises(RolloutError, match=r"Unknown keyword 'bogus' \(done so far: \[\]\)"):
        rollout.apply(s, confs, access, report=lambda _m: None)
    assert done == [(keeper, "check"), (peer, "check")]  # nobody stopped, nothing written


@pytest.mark.parametrize("active", [False, True])
def test_what_holds_the_volume_without_keepalived_goes_before_its_first_start(
    monkeypatch: pytest.MonkeyPatch, active: bool
) -> None:
    """A server being adopted has the volume mounted by the article's unit: the notify script's
    STOP releases it right before keepalived's first start (after the start gate); a node whose
    keepalived runs is only reloaded, nothing released."""
    state = UnitState("enabled", "active") if active else UnitState("", "")
    bundle = fake_node(monkeypatch, "sim", state)
    monkeypatch.setattr(converge, "feed", lambda *_a, **_k: None)
    ran: list[str] = []
    monkeypatch.setattr(converge, "run", lambda c, step, cmd, timeout=0: ran.append(cmd) or "")
    gate = type(
        "Gate",
        (),
        {
            "wait_turn": lambda _self, c, node: ran.append("(turn)"),
            "started": lambda _self, c, node: None,
            "passed": lambda _self, node: None,
        },
    )()
    result = converge.converge_node(FakeConn(), bundle, gate=gate, verified=Verified.SHARED)  # type: ignore[arg-type]
    assert result.error is None, result.error
    release = f"{PATHS.notify_script} INSTANCE converge-first-start STOP"
    if active:
        assert release not in ran and "(turn)" not in ran
        return
    start = next(i for i, cmd in enumerate(ran) if cmd.startswith("systemctl start keepalived"))
    assert ran.index("(turn)") < ran.index(release) < start
    assert f"keepalived: {release}" in result.steps
