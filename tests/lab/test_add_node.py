"""Day 2: a third node joins a running cluster, as a user does it: `nodes` grows from 2 to 3 in
the stack file and `make lab` runs again (with the plugin: `pulumi up`; without it, lab-up and
`fab converge`).

    before   repo1 MASTER (VIP, volume)   repo2 BACKUP
    after    repo1 MASTER (VIP, volume)   repo2 BACKUP   repo3 BACKUP (priority 99)

With unicast VRRP the new node changes every running node's peer set: a cluster-wide VRRP
change. The new machine runs no keepalived of ours, so the rollout reloads the running nodes
with their new peer first and the new node's converge starts it last. Sampled throughout the
second `make lab`: never two VIP holders, never two mounts, the VIP on repo1 at every sample.

The stack is a copy of the sim stack named ``grow`` (Pulumi.grow.yaml, written for the test
and removed after it, as its lab is).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components import lab as labmod
from components.lab import Lab, LabError, node_exec
from components.lab import vcsim as labvcsim
from components.lab.plan import stack_id
from tests.lab.labkit import ROOT
from tests.lab.test_make_lab import has_plugin, make

pytestmark = pytest.mark.lab

GROW = "grow"
STACK_FILE = ROOT / f"Pulumi.{GROW}.yaml"
REPO3 = {"name": "repo3", "ip": "198.18.50.163", "priority": 99}


def write_stack(extra_nodes: list[dict[str, object]]) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text(encoding="utf-8"))
    doc["config"]["repo-cluster:nodes"] += extra_nodes
    text = "# written by tests/lab/test_add_node.py; removed after it\n" + yaml.safe_dump(doc)
    STACK_FILE.write_text(text, encoding="utf-8")


def picture(lab: Lab) -> dict[str, tuple[str, bool, bool]]:
    """node -> (VRRP state per the notify journal, holds the VIP, has the volume mounted)
    for every node whose VM runs and answers; ("?", False, False) for one that does not yet."""
    s, seen = lab.settings, {}
    for n in lab.nodes:
        if not lab.machine(n.name).running():
            continue
        command = (
            "tail -n 1 /run/keepalivednotify/states 2>/dev/null | cut -d' ' -f1; echo --; "
            f"ip -4 -o addr show dev {s.interface}; echo --; "
            f"findmnt -rn -o SOURCE --mountpoint {s.mount_point}"
        )
        try:
            out = node_exec(GROW, n.name, ["sh", "-c", command], timeout=30).stdout
        except LabError:
            seen[n.name] = ("?", False, False)
            continue
        state, addrs, src = [*out.split("--\n"), "", ""][:3]
        mounted = any(x.startswith("/dev/rbd") for x in src.split())
        seen[n.name] = (state.strip() or "-", f" {s.vip.ip}/" in addrs, mounted)
    return seen


class Sampler:
    """Pictures of the cluster taken one after the other until stopped."""

    def __init__(self) -> None:
        self.samples: list[dict[str, tuple[str, bool, bool]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(picture(labmod.load_lab(GROW)))  # follows the stack file
            self.stop.wait(2)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


@pytest.fixture
def grow_stack(no_lab: Lab) -> Iterator[Path]:
    """The grow stack's file, its lab and its Pulumi state removed after the test (failed or
    not); the sim lab is down before and after (no_lab)."""
    write_stack([])
    try:
        yield STACK_FILE
    finally:
        make("lab-down", {"STACK": GROW})
        try:
            labmod.lab_down(GROW, say=lambda _: None)
        finally:
            STACK_FILE.unlink(missing_ok=True)


def test_a_third_node_joins_a_running_cluster(grow_stack: Path) -> None:
    first = make("lab", {"STACK": GROW})
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    lab = labmod.load_lab(GROW)
    assert picture(lab) == {"repo1": ("MASTER", True, True), "repo2": ("BACKUP", False, False)}

    write_stack([REPO3])
    with Sampler() as sampler:
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
    if has_plugin():  # pulumi up made the third VM in vcsim
        extra = {n: labvcsim.extra_config(lab.settings, n) for n in ("repo1", "repo2", "repo3")}
        assert all(e.get("repo-cluster.stack") == stack_id(lab) for e in extra.values())
