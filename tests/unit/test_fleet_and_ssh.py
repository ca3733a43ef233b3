"""Start order of keepalived across nodes, and the SSH host-key policies, without a node.

The lab tier runs both against real sshd; these pin the decisions themselves.
"""

from __future__ import annotations

import threading

import paramiko
import pytest

from components.bundle import hostkeys
from components.converge import ssh, trust
from components.converge.fleet import StartOrder
from components.converge.ssh import Access
from tests.kit import stack_settings

pytestmark = pytest.mark.unit


def test_start_order_is_highest_priority_first() -> None:
    s = stack_settings("sim")
    assert [n.name for n in s.start_order] == ["repo1", "repo2"]
    assert [n.priority for n in s.start_order] == sorted(
        (n.priority for n in s.nodes), reverse=True
    )


def test_lower_priority_waits_for_the_higher_ones() -> None:
    s = stack_settings("sim")
    gate = StartOrder(s.start_order, settle=0, is_master=lambda _c: True)
    started: list[str] = []

    def node(name: str) -> None:
        gate.wait_turn(None, name)  # type: ignore[arg-type]
        started.append(name)
        gate.passed(name)

    # the lowest priority node asks first: it must still start last
    threads = [threading.Thread(target=node, args=(n.name,)) for n in reversed(s.start_order)]
    threads[0].start()
    threads[0].join(timeout=0.3)
    assert started == [], "repo2 started before repo1 had passed"
    threads[1].start()
    for t in threads:
        t.join(timeout=10)
    assert started == ["repo1", "repo2"]


def test_first_starter_waits_until_master_only_while_others_wait() -> None:
    s = stack_settings("sim")
    answers = iter([False, False, True])
    calls: list[bool] = []

    def is_master(_c: object) -> bool:
        calls.append(next(answers))
        return calls[-1]

    gate = StartOrder(s.start_order, settle=30, is_master=is_master)
    gate.started(None, "repo1")  # type: ignore[arg-type]
    assert calls == [False, False, True]
    calls.clear()
    gate.passed("repo2")
    gate.started(None, "repo1")  # type: ignore[arg-type]
    assert calls == [], "nobody waits on repo1 any more: no MASTER wait"


def _keys() -> tuple[str, ...]:
    return tuple(k.public for k in hostkeys.generate("test"))


def test_pin_trusts_exactly_the_shared_keys() -> None:
    shared = _keys()
    access = Access("root", "/nonexistent", shared)
    c = ssh.connection(access.target("repo1", "198.18.50.161"))
    ssh.pin(c, shared, "repo1")
    known = c.client.get_host_keys().lookup("198.18.50.161")
    assert sorted(k.get_base64() for k in known.values()) == sorted(ln.split()[1] for ln in shared)
    other = ssh.parse_public_key(_keys()[0])
    with pytest.raises(ssh.HostKeyError, match=r"repo1 \(198\.18\.50\.161\) presented unknown"):
        c.client._policy.missing_host_key(c.client, "198.18.50.161", other)


def test_first_contact_accepts_only_a_node_never_seen() -> None:
    key = ssh.parse_public_key(_keys()[0])
    target = ssh.Target("repo1", "198.18.50.161", "root", "/k", _keys(), True)
    policy = ssh._Verify(target, None)
    client = paramiko.SSHClient()
    policy.missing_host_key(client, "198.18.50.161", key)
    assert (policy.verified, policy.fingerprint) == (trust.Verified.FIRST_CONTACT, key.fingerprint)
    assert client.get_host_keys().lookup("198.18.50.161")[key.get_name()] == key
    seen = trust.Seen("SHA256:somethingElse", "first contact")
    with pytest.raises(ssh.HostKeyError, match=r"repo1 \(198\.18\.50\.161\) presented"):
        ssh._Verify(target, seen).missing_host_key(paramiko.SSHClient(), "198.18.50.161", key)


def test_record_path_per_stack(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lab, real = stack_settings("sim"), stack_settings("lab")
    assert trust.record_path(lab, "sim", tmp_path) == tmp_path / ".lab/sim/first-contact.json"
    assert trust.record_path(real, "lab", tmp_path) == (
        tmp_path / "state/repo-cluster/lab/first-contact.json"
    )
    assert Access.for_stack(lab, tmp_path, (), True, stack="sim").first_contact_secrets is True
    assert Access.for_stack(real, tmp_path, (), True, stack="lab").first_contact_secrets is False


def test_strict_targets_never_trust_first_contact() -> None:
    access = Access("root", "/k", _keys(), trust_first_contact=True)
    assert access.target("repo1", "198.18.50.161").trust_first_contact is True
    assert access.target("repo1", "198.18.50.161", strict=True).trust_first_contact is False


def test_a_new_vms_node_serves_once_it_keeps_its_part_through_an_election(monkeypatch):
    """A rolling change touches the next node's VM only once this one serves: MASTER with
    VIP and mount, or BACKUP with neither, steadily (a node that just started is BACKUP
    until its election ends, and may go FAULT then)."""
    from components.converge import fleet, joining
    from components.converge.status import NodeStatus

    s = stack_settings("sim")
    backup = NodeStatus("repo2", "198.18.50.162", "BACKUP", False, False)
    fault = NodeStatus("repo2", "198.18.50.162", "FAULT", False, False)
    seen = [backup, fault, backup, backup, backup, backup]
    now = [0.0]
    monkeypatch.setattr(fleet, "node_status", lambda *_a: seen.pop(0) if seen else backup)

    def tick(dt: float) -> None:
        now[0] += dt

    args = (s, s.node("repo2"), Access("root", "/k", ()))
    ok, st = joining.wait_in_service(*args, timeout=60, steady=2, clock=lambda: now[0], sleep=tick)
    assert ok and st == backup and now[0] == 4.0  # steady from t=2 (after the FAULT) to t=4
    seen[:] = [fault] * 100
    ok, st = joining.wait_in_service(*args, timeout=5, steady=2, clock=lambda: now[0], sleep=tick)
    assert not ok and st == fault


@pytest.mark.parametrize(
    ("state", "vip", "mounted", "clients", "serves"),
    [
        ("MASTER", True, True, ("c",), True),
        ("MASTER", True, False, (), False),  # still mounting
        ("BACKUP", False, False, (), True),
        ("BACKUP", False, False, ("c",), False),  # its release has not finished
        ("BACKUP", True, False, (), False),
        ("FAULT", False, False, (), False),
        ("UNREACHABLE", False, False, (), False),
    ],
)
def test_serving_is_master_with_all_or_backup_with_nothing(state, vip, mounted, clients, serves):
    from components.converge.status import NodeStatus, serving

    st = NodeStatus("repo2", "198.18.50.162", state, vip, mounted, clients=clients)
    assert serving(st) is serves


def test_a_start_is_refused_by_the_gates_check_before_it_waits() -> None:
    """fab converge and a pulumi up step check a starting node against the running ones
    (fleet.refuse_mixed) before its keepalived starts: a StepError there, no start."""
    from components.converge.node import StepError

    s = stack_settings("sim")
    seen: list[str] = []

    def check(_c: object, name: str) -> None:
        seen.append(name)
        raise StepError("keepalived", "mixed versions (keepalived not started)")

    gate = StartOrder(s.start_order, settle=0, is_master=lambda _c: True, check=check)
    with pytest.raises(StepError, match="not started"):
        gate.wait_turn(None, "repo2")  # type: ignore[arg-type]
    assert seen == ["repo2"]
