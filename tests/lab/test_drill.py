"""The HA drill on the lab: every scenario from a healthy cluster, and switchover.

    host 198.18.50.1 ── bridge ── VM repo1 198.18.50.161 (priority 101, the first MASTER)
                              └── VM repo2 198.18.50.162 (priority 100)

Each scenario test runs :func:`components.converge.drill.run` on the lab (the same code as
`fab drill`) and asserts the invariants it reports: the volume never mounted writable twice at
any sample, one VIP holder with the mount once settled, ssh on the VIP with the shared keys
before and after, every acknowledged record read back; never a wall-clock figure. The faults
are a VM's (powered off, stunned briefly and past Ceph's default blocklist lifetime, its link
lost) and a guest's (NIC down, sshd or keepalived killed, keepalived frozen, a VRRP
partition). In the scenarios where the old master keeps running mounted, the Ceph fence must
have acted: its mount is seen fenced (Ceph refuses its writes), never writable beside the new
one. A foreign client with the image open is never fenced; an image without exclusive-lock is
mounted by nobody. At the end the file system is clean (xfs_repair -n on the image as Ceph
holds it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.cli.drill import LabTarget, describe
from components.converge import drill, fleet, scenarios
from components.converge.switchover import switchover
from components.lab import Lab
from components.lab import ceph as labceph
from components.lab import secrets as labsecrets
from tests.lab.labkit import (
    ROOT,
    STACK,
    cluster_picture,
    fab,
    fresh_cluster,
    in_node,
    sh,
    xfs_clean,
)

pytestmark = pytest.mark.lab

# Under emulation a scenario costs 3-6 minutes: the tier runs one scenario per mechanism (a VM
# powered off, the old master back, a holder at demotion, the fence of a running master, a fence
# outliving the monitor's default, a foreign client, an image that cannot be locked);
# REPO_CLUSTER_DRILL=all runs every scenario, as `fab drill --stack sim` does.
PER_MECHANISM = [
    "master-crash",
    "old-master-returns",
    "open-file-on-demotion",
    "hung-master",
    "master-stunned-long",
    "foreign-watcher",
    "no-exclusive-lock",
]
ALL = [s.key for s in scenarios.SCENARIOS]
MUST_HOLD = ALL if os.environ.get("REPO_CLUSTER_DRILL") == "all" else PER_MECHANISM
# the old master keeps running, mounted, after the takeover, and the samples see it (a stunned
# VM answers nothing until it resumes, when it may release before a sample): only the fence
# stops its writes. master-stunned-long's fence is test_a_long_stunned_master_never_writes_again
FENCED = ["partition", "partition-one-way", "hung-master"]


@pytest.fixture(scope="module")
def target(sim_lab: Lab) -> Iterator[LabTarget]:
    secrets = labsecrets.load_or_create(sim_lab.settings, STACK, ROOT)
    t = LabTarget(sim_lab, secrets, say=print)
    try:
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("key", MUST_HOLD)
def test_scenario_keeps_every_invariant(target: LabTarget, key: str) -> None:
    result = drill.run(target, scenarios.BY_KEY[key])
    report = "\n".join(describe(result))
    assert result.broken == [], report
    assert result.ok, report
    assert result.recovery is not None, report
    assert result.samples > 0 and result.acked > 0, report
    if key in FENCED:
        # the old master was still mounted after the takeover: Ceph refused its writes
        assert result.fenced, report


def test_a_long_stunned_master_never_writes_again(target: LabTarget, sim_lab: Lab) -> None:
    """master-stunned-long slept past the lab monitor's default blocklist lifetime: the
    entry that fenced it lasts years, so its client is still refused."""
    entries = labceph.blocklist(sim_lab)
    assert entries, "no blocklist entry at all"
    long_ones = sh(*labceph.admin(sim_lab), "osd", "blocklist", "ls").stdout
    years = [ln for ln in long_ones.splitlines() if ln.split()[1:] and ln.split()[1] > "2030"]
    assert years, long_ones


def test_file_system_is_clean_after_the_drills(
    target: LabTarget, sim_lab: Lab, tmp_path: Path
) -> None:
    for node in ("repo1", "repo2"):
        in_node(node, "systemctl", "stop", "keepalived")
    xfs_clean(sim_lab, tmp_path)


def test_switchover_moves_the_master_role(target: LabTarget, sim_lab: Lab) -> None:
    fresh_cluster(sim_lab)  # repo1 MASTER
    out = fab("switchover", "--stack", STACK, "--json", "--watch")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert (doc["old_master"], doc["new_master"], doc["error"]) == ("repo1", "repo2", None)
    steps = [s["step"] for s in doc["steps"]]
    assert steps[0].startswith("repo1: releasing the volume"), steps
    assert cluster_picture(sim_lab) == {
        "repo1": ("BACKUP", False, False),
        "repo2": ("MASTER", True, True),
    }


def test_switchover_refuses_without_a_healthy_backup(target: LabTarget, sim_lab: Lab) -> None:
    fresh_cluster(sim_lab)  # repo1 MASTER
    in_node("repo2", "systemctl", "stop", "keepalived")
    access = target.access()
    out = switchover(sim_lab.settings, access, say=print)
    assert out.error and "refused" in out.error, out
    assert out.steps == []
    statuses = fleet.cluster_status(sim_lab.settings, access)
    assert {s.name: s.vrrp_state for s in statuses}["repo1"] == "MASTER"
    assert cluster_picture(sim_lab)["repo1"] == ("MASTER", True, True)


def test_drill_refuses_a_stack_outside_the_lab_range(lab_tools: None) -> None:
    out = fab("drill", "--stack", "lab")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not a lab stack" in out.stderr and "destructive" in out.stderr, out.stderr
