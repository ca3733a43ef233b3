"""Day 2: a third node joins a running cluster, as a user does it: `nodes` grows from 2 to 3 in
the stack file and `make lab` runs again (with the plugin: `pulumi up`; without it, lab-up and
`fab converge`); then the MASTER leaves it (with the plugin: `pulumi up` deletes its VM); then
an OS upgrade: the stack names a new template and `pulumi up` replaces both VMs, one at a time.

    before   repo1 MASTER (VIP, volume)   repo2 BACKUP
    grown    repo1 MASTER (VIP, volume)   repo2 BACKUP   repo3 BACKUP (priority 99)
    shrunk                                repo2 MASTER   repo3 BACKUP
    switched                              repo2 BACKUP   repo3 MASTER   (fab switchover)
    rolled                                repo2 MASTER   repo3 BACKUP   (both on new VMs)

With unicast VRRP the new node changes every running node's peer set: a cluster-wide VRRP
change. The new machine runs no keepalived of ours, so the rollout reloads the running nodes
with their new peer first and the new node's converge starts it last. Sampled throughout the
second `make lab`: never two VIP holders, never two mounts, the VIP on repo1 at every sample.
Removing the MASTER: `pulumi up` releases and stops it first (it would otherwise run on beside
peers that no longer list it, and take the VIP back), repo2 takes over once, and its VM goes.
The rolling replace, after a switchover has made repo3 (the lowest priority) the MASTER: repo2's
VM (the BACKUP, as the VMs report it) first, and repo3's only once repo2 serves again on its new
VM; repo3's release hands the VIP and the volume over: one gap in the samples, never two
holders, and a file written before reads back after.

The stack is a copy of the sim stack named ``grow`` (Pulumi.grow.yaml, written for the test
and removed after it, as its lab is).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components import lab as labmod
from components.lab import Lab, LabError
from components.lab import vcsim as labvcsim
from components.lab.plan import stack_id
from components.lab.vmexec import node_exec
from tests.lab.labkit import ROOT, Samples, at_most_one_holder, fab, running_pictures
from tests.lab.test_make_lab import has_plugin, make, remove_stack

pytestmark = pytest.mark.lab

GROW = "grow"
STACK_FILE = ROOT / f"Pulumi.{GROW}.yaml"
REPO3 = {"name": "repo3", "ip": "198.18.50.163", "priority": 99}


def write_stack(
    extra_nodes: list[dict[str, object]], drop: tuple[str, ...] = (), template: str = ""
) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text(encoding="utf-8"))
    if template:
        doc["config"]["repo-cluster:template"] = template
    nodes = doc["config"]["repo-cluster:nodes"] + extra_nodes
    doc["config"]["repo-cluster:nodes"] = [n for n in nodes if n["name"] not in drop]
    text = "# written by tests/lab/test_add_node.py; removed after it\n" + yaml.safe_dump(doc)
    STACK_FILE.write_text(text, encoding="utf-8")


NAMES = ("repo1", "repo2", "repo3")


def picture(lab: Lab) -> dict[str, tuple[str, bool, bool]]:
    return running_pictures(lab, NAMES)


@pytest.fixture
def grow_stack(no_lab: Lab) -> Iterator[Path]:
    """The grow stack's file, its lab and its Pulumi state removed after the test (failed or
    not); the sim lab is down before and after (no_lab)."""
    write_stack([])
    try:
        yield STACK_FILE
    finally:
        remove_stack(GROW, STACK_FILE)


def test_a_third_node_joins_a_running_cluster(grow_stack: Path) -> None:
    first = make("lab", {"STACK": GROW})
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    lab = labmod.load_lab(GROW)
    assert picture(lab) == {"repo1": ("MASTER", True, True), "repo2": ("BACKUP", False, False)}

    write_stack([REPO3])
    with Samples(GROW, NAMES) as sampler:
        second = make("lab", {"STACK": GROW})
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]

    samples = sampler.samples
    assert len(samples) > 10, samples
    for i, seen in enumerate(samples):
        holders = [n for n, (_, vip, _) in seen.items() if vip]
        mounts = [n for n, (_, _, mounted) in seen.items() if mounted]
        assert holders == ["repo1"], f"sample {i}: VIP on {holders}: {seen}"
        assert mounts == ["repo1"], f"sample {i}: mounted on {mounts}: {seen}"
    assert any("repo3" in seen for seen in samples), "repo3 never ran during the samples"
    assert picture(labmod.load_lab(GROW)) == {
        "repo1": ("MASTER", True, True),
        "repo2": ("BACKUP", False, False),
        "repo3": ("BACKUP", False, False),
    }
    text = second.stdout + second.stderr
    assert "cluster-wide change of the VRRP parameters" in text, text[-4000:]
    if not has_plugin():
        return  # below: pulumi up's VMs in vcsim, and a VM deleted with its node
    extra = {n: labvcsim.extra_config(lab.settings, n) for n in NAMES}
    assert all(e.get("repo-cluster.stack") == stack_id(lab) for e in extra.values())

    write_stack([REPO3], drop=("repo1",))  # the MASTER leaves the cluster
    with Samples(GROW, NAMES) as sampler:
        third = make("lab", {"STACK": GROW})
    text = third.stdout + third.stderr
    assert third.returncode == 0, text[-4000:]
    assert "repo1: vrrp: released and stopped: removed from the stack" in text, text[-4000:]
    at_most_one_holder(sampler.samples)
    assert picture(labmod.load_lab(GROW)) == {
        "repo2": ("MASTER", True, True),
        "repo3": ("BACKUP", False, False),
    }
    with pytest.raises(LabError):
        labvcsim.extra_config(lab.settings, "repo1")  # its VM is gone
    rolling_replace(lab)


OLD_DISK = "/root/repo-cluster-old-disk"


def rolling_replace(lab: Lab) -> None:
    """A switchover makes repo3 (the lowest priority) the MASTER; then a new template in the
    stack file: `make lab` (`pulumi up`) replaces repo2's VM (the BACKUP, as its VM reports)
    first, then repo3's, each node serving again before the next VM goes."""
    switched = fab("switchover", "--stack", GROW)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert running_pictures(lab, NAMES) == {
        "repo2": ("BACKUP", False, False),
        "repo3": ("MASTER", True, True),
    }
    mount = lab.settings.mount_point
    for name in ("repo2", "repo3"):  # the old disks carry a mark; a new VM has a fresh disk
        node_exec(GROW, name, ["touch", OLD_DISK], check=True)
    data = f"written on repo3 before the upgrade {time.time()}\n"
    node_exec(
        GROW, "repo3", ["sh", "-c", f"cat > {mount}/before-upgrade; sync"], input=data, check=True
    )
    write_stack([REPO3], drop=("repo1",), template="repo-template-next")
    with Samples(GROW, NAMES) as sampler:
        fourth = make("lab", {"STACK": GROW})
    text = fourth.stdout + fourth.stderr
    assert fourth.returncode == 0, text[-4000:]
    for n in ("repo2", "repo3"):
        assert f"{n}: serving on its new VM: BACKUP" in text, text[-4000:]
    holders: list[str | None] = []
    for seen, vip in zip(sampler.samples, at_most_one_holder(sampler.samples), strict=True):
        last = next((h for h in reversed(holders) if h), None)
        if not vip and last and seen.get(last, ("",))[0] == "?":
            continue  # the holder did not answer in time: no picture of the VIP, not a gap
        holders.append(vip)
    runs = [h for i, h in enumerate(holders) if i == 0 or h != holders[i - 1]]
    assert runs in (["repo3", "repo2"], ["repo3", None, "repo2"]), runs  # one move, one gap
    log = (lab.dir / "hostd.log").read_text()
    gone = [
        m.group(1)
        for m in re.finditer(r"(repo\d): stopped QEMU \((?:destroyed|replaced|powered off)", log)
    ]
    assert gone[-2:] == ["repo2", "repo3"], gone  # the BACKUP's VM first, whatever its priority
    assert picture(labmod.load_lab(GROW)) == {
        "repo2": ("MASTER", True, True),
        "repo3": ("BACKUP", False, False),
    }
    for name in ("repo2", "repo3"):
        assert node_exec(GROW, name, ["test", "-e", OLD_DISK]).returncode == 1, name
    read = node_exec(GROW, "repo2", ["cat", f"{mount}/before-upgrade"], check=True)
    assert read.stdout == data
