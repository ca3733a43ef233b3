"""Lab names are scoped per stack and never collide: lab-down of one stack never reaches
another's taps, bridge, VMs or files."""

from __future__ import annotations

import pytest

from components.lab import load_lab
from components.lab import net as labnet
from components.lab.plan import machine_dir

pytestmark = pytest.mark.unit


def test_the_sim_stack_names():
    lab = load_lab("sim")
    assert lab.bridge == "br.sim"
    assert [(n.name, n.tap) for n in lab.nodes] == [
        ("repo1", "t.sim.repo1"),
        ("repo2", "t.sim.repo2"),
    ]
    assert str(lab.runtime) == "/run/repo-cluster/sim"
    assert lab.dir.name == "sim" and lab.dir.parent.name == ".lab"


def test_names_of_different_stacks_never_collide():
    # stack "a" node "b-c" and stack "a-b" node "c" once both gave "a-b-c"
    assert labnet.ifname("t", "a", "b-c") != labnet.ifname("t", "a-b", "c")
    assert machine_dir("a", "b-c") != machine_dir("a-b", "c")
    # long names are digested, still within Linux's 15 characters and still distinct
    long_a = labnet.ifname("t", "production-lab", "repo-node-1")
    long_b = labnet.ifname("t", "production-lab-repo", "node-1")
    assert len(long_a) <= 15 and len(long_b) <= 15 and long_a != long_b
    assert all(len(labnet.ifname("br", "x" * 31)) <= 15 for _ in range(1))


def test_macs_differ_per_stack_and_node():
    lab = load_lab("sim")
    assert len({n.mac for n in lab.nodes}) == len(lab.nodes)
    assert all(n.mac.startswith("52:54:00:") for n in lab.nodes)
