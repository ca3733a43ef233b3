"""The HA drill on the lab: every scenario from a freshly converged cluster, and switchover.

    host 198.18.50.1 ── bridge ── repo1 198.18.50.161 (priority 101, the first MASTER)
                              └── repo2 198.18.50.162 (priority 100)

Each scenario test runs :func:`components.converge.drill.run` on the lab (the same code as
`fab drill`) and asserts the invariants it reports: the volume never mounted twice at any
sample, one VIP holder with the mount once settled, ssh on the VIP with the shared keys
before and after, every acknowledged record read back; never a wall-clock figure. In the
scenarios where the old master keeps running (SIGKILLed keepalived, partitions, a frozen
keepalived) the Ceph fence must have acted: the old master's mount is seen fenced (Ceph
refuses its writes), never writable beside the new one. The fence scenarios run twice in a
row; at the end the file system is clean (xfs_repair -n on the image as Ceph holds it). The
module fixture removes the lab, failed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.cli.drill import LabTarget, describe
from components.converge import drill, fleet, scenarios
from components.converge.switchover import switchover
from components.lab import Lab
from components.lab import secrets as labsecrets
from tests.lab.labkit import (
    HEALTHY,
    ROOT,
    STACK,
    cluster_picture,
    export_image,
    fab,
    in_node,
    sh,
    wait_for_picture,
)

pytestmark = pytest.mark.lab

MUST_HOLD = [s.key for s in scenarios.SCENARIOS]
# the old master keeps running, mounted, after the takeover: only the fence stops its writes
FENCED = ["partition", "partition-one-way", "hung-master", "master-crash"]
# and where keepalived's ExecStopPost (the lab's systemctl honours it) releases first
FENCE_DRILLS = [*FENCED, "master-keepalived-sigkill"]


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


@pytest.mark.parametrize("key", FENCE_DRILLS)
def test_fence_drill_again(target: LabTarget, key: str) -> None:
    """The second run in a row of each fence drill; where the old master keeps running, its
    mount was seen fenced (so the invariant held because of the fence, not by luck)."""
    result = drill.run(target, scenarios.BY_KEY[key])
    report = "\n".join(describe(result))
    assert result.broken == [] and result.ok, report
    master = "repo1"  # a fresh cluster's first MASTER
    if key in FENCED:
        assert result.fenced == [master], report


def test_file_system_is_clean_after_the_drills(
    target: LabTarget, sim_lab: Lab, tmp_path: Path
) -> None:
    for node in ("repo1", "repo2"):
        in_node(node, "systemctl", "stop", "keepalived")
    image = tmp_path / "image.xfs"
    export_image(sim_lab, image)
    check = sh("xfs_repair", "-n", image, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_switchover_moves_the_master_role(target: LabTarget, sim_lab: Lab) -> None:
    assert target.prepare() is None
    wait_for_picture(sim_lab, HEALTHY)
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
    assert target.prepare() is None
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
