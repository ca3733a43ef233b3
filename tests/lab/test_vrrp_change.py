"""A cluster-wide VRRP change on a running lab cluster: never two VIPs, never two mounts.

    repo1 MASTER (VIP, volume)      repo2 BACKUP
    auth_pass and advert_int change: repo2 stopped, repo1 reloaded alone, repo2 started

A sampler (the drill's, each node's own tools through its guest agent) watches both nodes
during the converge that carries the change; at no sample may two nodes hold the VIP or have
the volume mounted, and repo1 keeps the VIP and the mount throughout (the change costs no
failover). A node the converge cannot reach refuses the change and touches nothing. The
module starts from a reset, converged cluster (repo1 MASTER) on the shared lab.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from components.bundle import PATHS, Secrets, authorized_keys, render_cluster
from components.cli.drill import lab_look
from components.config import Settings
from components.converge import fleet
from components.converge.probe import Sample, Sampler
from components.converge.ssh import Access
from components.lab import Lab, node_exec
from components.lab import secrets as labsecrets
from tests.lab.labkit import HEALTHY, ROOT, STACK, fresh_cluster, in_node, wait_for_picture

pytestmark = pytest.mark.lab

NEW_PASS = "N3wPassw"


def converge(s: Settings, secrets: Secrets) -> fleet.Outcome:
    bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
    access = Access.for_stack(s, ROOT, secrets.public_host_keys, False)
    return fleet.converge_stack(s, bundles, access, report=print)


def converge_watched(lab: Lab, s: Settings, secrets: Secrets) -> tuple[fleet.Outcome, list[Sample]]:
    """The converge that carries a change, sampled (each node's own view, every second) until
    the cluster is healthy again; the outcome (which must be ok) and the samples."""
    with Sampler(lab_look(lab), time.monotonic(), period=1.0) as sampler:
        outcome = converge(s, secrets)
        wait_for_picture(lab, HEALTHY, timeout=120)
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    return outcome, list(sampler.samples)


@pytest.fixture(scope="module")
def secrets(sim_lab: Lab) -> Iterator[Secrets]:
    fresh_cluster(sim_lab)
    yield labsecrets.load_or_create(sim_lab.settings, STACK, ROOT)


def vrrp_lines(node: str) -> list[str]:
    conf = in_node(node, "cat", PATHS.keepalived_conf)
    lines = [ln.strip() for ln in conf.splitlines()]
    return [ln for ln in lines if ln.startswith(("auth_pass", "advert_int"))]


def test_an_unreachable_node_refuses_the_change_and_nothing_moves(sim_lab, secrets):
    before = {n: vrrp_lines(n) for n in ("repo1", "repo2")}
    node_exec(STACK, "repo2", ["systemctl", "stop", "ssh"], check=True)
    try:
        outcome = converge(sim_lab.settings, dataclasses.replace(secrets, vrrp_auth_pass=NEW_PASS))
    finally:
        node_exec(STACK, "repo2", ["systemctl", "start", "ssh"], check=True)
    assert not outcome.ok
    assert outcome.vrrp_error and "repo2 cannot be reached" in outcome.vrrp_error, outcome.vrrp
    assert outcome.results == {}  # no node converged: a per-node reload could split them
    assert {n: vrrp_lines(n) for n in ("repo1", "repo2")} == before
    wait_for_picture(sim_lab, HEALTHY, timeout=120)


def test_auth_pass_and_advert_interval_change_without_a_split(sim_lab, secrets):
    s = dataclasses.replace(sim_lab.settings, advert_interval=2)
    changed = dataclasses.replace(secrets, vrrp_auth_pass=NEW_PASS)
    outcome, samples = converge_watched(sim_lab, s, changed)
    assert list(outcome.vrrp) == [
        "repo2: systemctl stop keepalived.service",
        f"repo1: write {PATHS.keepalived_conf}",
        f"repo1: keepalived -t -f {PATHS.keepalived_conf}",
        "repo1: systemctl reload keepalived.service",
        f"repo2: write {PATHS.keepalived_conf}",
        f"repo2: keepalived -t -f {PATHS.keepalived_conf}",
        "repo2: systemctl start keepalived.service",
    ]
    assert len(samples) > 10, len(samples)
    split = [x.brief() for x in samples if len(x.vip_holders()) > 1 or len(x.mounted()) > 1]
    assert split == [], split[:5]
    moved = [x.brief() for x in samples if x.vip_holders() != ["repo1"] or x.mounted() != ["repo1"]]
    assert moved == [], moved[:5]
    for n in ("repo1", "repo2"):
        assert vrrp_lines(n) == ["advert_int 2", f"auth_pass {NEW_PASS}"], n
    # converged: the next run finds nothing to change, cluster-wide or per node
    again = converge(s, changed)
    assert again.ok and again.vrrp == (), again.as_dict()
    assert {n: r.steps for n, r in again.results.items()} == {"repo1": [], "repo2": []}


def test_a_stopped_node_gets_the_change_before_the_master_reloads(sim_lab, secrets):
    """repo2's keepalived is stopped (as it is while it waits for an automatic restart or its
    VM boots): it would come back on the old parameters beside repo1. Its keepalived.conf is
    written before repo1 reloads; the converge then starts it, and it joins as BACKUP."""
    s = dataclasses.replace(sim_lab.settings, advert_interval=2)
    third = dataclasses.replace(secrets, vrrp_auth_pass="Thrd0Pas")
    in_node("repo2", "systemctl", "stop", "keepalived")
    outcome, samples = converge_watched(sim_lab, s, third)
    assert list(outcome.vrrp) == [
        "repo2: systemctl stop keepalived.service",
        f"repo2: write {PATHS.keepalived_conf}",
        f"repo1: write {PATHS.keepalived_conf}",
        f"repo1: keepalived -t -f {PATHS.keepalived_conf}",
        "repo1: systemctl reload keepalived.service",
    ]
    split = [x.brief() for x in samples if len(x.vip_holders()) > 1]
    assert split == [] and samples, split[:5]
    for n in ("repo1", "repo2"):
        assert vrrp_lines(n) == ["advert_int 2", "auth_pass Thrd0Pas"], n
