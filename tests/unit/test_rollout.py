"""The cluster-wide VRRP change's plan: who is stopped, who keeps the VIP, when it refuses."""

from __future__ import annotations

import dataclasses

import pytest

from components.bundle import PATHS, Secrets, hostkeys, render_node, vrrp
from components.converge.rollout import Plan, RolloutError, View, plan
from tests.kit import stack_settings

pytestmark = pytest.mark.unit

NEW, OLD = "n" * 16, "o" * 16


def test_nothing_to_do_when_every_node_has_the_new_parameters():
    views = [View("repo1", True, "MASTER", NEW), View("repo2", False, "STOPPED", NEW)]
    assert plan(views, NEW) is None
    # a node without our keepalived.conf yet (a first converge): the converge writes it
    views = [View("repo1", True, "MASTER", NEW), View("repo2", False, "STOPPED", None)]
    assert plan(views, NEW) is None


def test_a_stopped_node_with_the_old_parameters_is_written_before_anyone_reloads():
    """Stopped, failed, waiting for its automatic restart or booting: it would come back on
    the old parameters beside the others (both MASTER)."""
    views = [View("repo1", True, "MASTER", NEW), View("repo2", False, "STOPPED", OLD)]
    assert plan(views, NEW) == Plan(None, (), ("repo2",))
    views = [
        View("repo1", True, "MASTER", OLD),
        View("repo2", False, "STOPPED", OLD),
        View("repo3", True, "BACKUP", OLD),
    ]
    assert plan(views, NEW) == Plan("repo1", ("repo3",), ("repo2",))


def test_a_stopped_node_with_the_old_parameters_and_an_unreachable_one_refuse():
    views = [View("repo1", False, "STOPPED", OLD), View("repo2", None, error="timed out")]
    with pytest.raises(RolloutError, match=r"repo1 differ.*repo2 cannot be reached"):
        plan(views, NEW)


def test_the_master_keeps_the_vip_and_every_other_running_node_is_stopped_first():
    views = [
        View("repo1", True, "BACKUP", OLD),
        View("repo2", True, "MASTER", OLD),
        View("repo3", True, "FAULT", NEW),
    ]
    assert plan(views, NEW) == Plan("repo2", ("repo1", "repo3"))


def test_without_a_master_the_first_running_node_in_start_order_keeps_on():
    views = [View("repo1", False, "STOPPED", OLD), View("repo2", True, "BACKUP", OLD)]
    assert plan(views, NEW) == Plan("repo2", (), ("repo1",))


def test_an_unreachable_node_refuses_the_change_naming_it():
    views = [View("repo1", True, "MASTER", OLD), View("repo2", None, error="timed out")]
    with pytest.raises(RolloutError, match=r"repo2 cannot be reached \(repo2: timed out\)"):
        plan(views, NEW)


def test_a_partial_run_refuses_a_cluster_wide_change():
    views = [View("repo1", True, "MASTER", OLD), View("repo2", True, "BACKUP", OLD)]
    with pytest.raises(RolloutError, match="every node, not a subset"):
        plan(views, NEW, complete=False)


def test_only_cluster_wide_settings_change_the_digest():
    s = stack_settings("sim")
    base = vrrp.digest(s, "pw012345")
    assert vrrp.digest(s, "pw012346") != base
    for field, value in (
        ("advert_interval", 2),
        ("virtual_router_id", 9),
        ("unicast", not s.unicast),
    ):
        assert vrrp.digest(dataclasses.replace(s, **{field: value}), "pw012345") != base
    # a node's priority is its own: same digest on every node, whatever their priorities
    secrets = Secrets.resolve(s, hostkeys.generate("t"), "pw012345")
    digests = {
        vrrp.digest_in(render_node(s, n, secrets, ("k",)).file(PATHS.keepalived_conf).content)
        for n in s.nodes
    }
    assert digests == {base}


# --------------------------------------------------------------------------- a new node


def test_adding_a_node_reloads_the_running_ones_with_their_new_peer_first():
    """Unicast VRRP: a new node changes the peer set of every running node. The new machine
    runs no keepalived of ours (not looked at, never waited for): the MASTER reloads alone,
    the BACKUP restarts on the new peers, and the new node's own converge starts it last."""
    from components.converge import rollout
    from components.converge.ssh import Access

    s = stack_settings("sim")
    views = rollout.look(s, Access("root", "/k", ()), ["repo3"], new=["repo3"])
    assert views == [View("repo3", False, "new machine")]
    views += [View("repo1", True, "MASTER", OLD), View("repo2", True, "BACKUP", OLD)]
    assert plan(views, NEW) == Plan("repo1", ("repo2",))


def test_the_rollout_step_tells_new_machines_by_the_vms_the_program_found():
    """pulumi up's VrrpRollout: a node whose VM the program did not find (added, or its VM
    gone) is a new machine; a node whose VM exists is looked at, even one about to be
    replaced (the rollout runs before any VM changes). When the program did not look
    (preflight off): the nodes the last run did not have, every node on create."""
    from components.vrrp_rollout import new_machines

    grown = {"existing": ["repo1", "repo2"], "nodes": ["repo1", "repo2", "repo3"]}
    assert new_machines(grown, None) == ["repo3"]
    first = {"existing": [], "nodes": ["repo1", "repo2"]}
    assert new_machines(first, None) == ["repo1", "repo2"]
    assert new_machines({**first, "existing": ["repo2", "repo1"]}, first) == []
    olds = {"existing": None, "nodes": ["repo1", "repo2"]}
    unlooked = {"existing": None, "nodes": ["repo1", "repo2", "repo3"]}
    assert new_machines(unlooked, olds) == ["repo3"]
    assert new_machines(unlooked, None) == ["repo1", "repo2", "repo3"]


def test_a_node_removed_from_the_stack_is_retired_before_the_change(monkeypatch):
    """pulumi up's VrrpRollout: a node the last run had and this one has not still runs (its
    VM goes at the end of the update); it is released and stopped first, named from the last
    run's config, then the cluster-wide change runs over the nodes that stay."""
    import yaml

    from components import vrrp_rollout
    from components.converge import rollout
    from tests.kit import ROOT

    config = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text(encoding="utf-8"))["config"]
    shrunk = {**config, "repo-cluster:nodes": config["repo-cluster:nodes"][1:]}
    shrunk["repo-cluster:nodes"] = [
        *shrunk["repo-cluster:nodes"],
        {"name": "repo3", "ip": "198.18.50.163", "priority": 99},
    ]
    calls: list[tuple[str, object]] = []

    def retire(old, s, access, removed, report=print):
        calls.append(("retire", (old.node("repo1").ip, [n.name for n in s.nodes], list(removed))))
        return ["repo1: released and stopped (removed from the stack)"]

    def apply(s, confs, access, *, new=(), report=print, only=None):
        calls.append(("apply", [n.name for n in s.nodes]))
        return []

    monkeypatch.setattr(rollout, "retire", retire)
    monkeypatch.setattr(rollout, "apply", apply)
    props = {"config": shrunk, "confs": {}, "key_file": "/k", "known_host_keys": []}
    out = vrrp_rollout.roll(props, [], {"config": config})
    assert calls[0] == ("retire", (config_ip(config, "repo1"), ["repo2", "repo3"], ["repo1"]))
    assert calls[1] == ("apply", ["repo2", "repo3"])
    assert out == {"actions": ["repo1: released and stopped (removed from the stack)"]}
    calls.clear()
    vrrp_rollout.roll(props, [], None)  # a first run: nothing to retire
    assert [c[0] for c in calls] == ["apply"]


def config_ip(config: dict, name: str) -> object:
    import ipaddress

    [node] = [n for n in config["repo-cluster:nodes"] if n["name"] == name]
    return ipaddress.IPv4Address(node["ip"])
