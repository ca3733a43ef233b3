"""Lab namespace names are scoped per stack: lab-down of one stack never reaches another's."""

from __future__ import annotations

import pytest

from components.lab import load_lab
from components.lab import net as labnet

pytestmark = pytest.mark.unit


def test_the_sim_stack_keeps_the_bare_node_names_the_readme_uses():
    lab = load_lab("sim")
    assert [(n.name, n.netns) for n in lab.nodes] == [("repo1", "repo1"), ("repo2", "repo2")]
    assert str(labnet.ns_files("sim", "repo1")["net"]) == "/run/netns/repo1"


def test_any_other_stack_prefixes_its_nodes_with_its_name():
    assert labnet.netns_name("drill2", "repo1") == "drill2-repo1"
    files = labnet.ns_files("drill2", "repo1")
    assert str(files["net"]) == "/run/netns/drill2-repo1"
    # and its mount/UTS namespace files live under its own stack directory
    assert "/drill2/" in str(files["mount"]) and "/drill2/" in str(files["uts"])
    assert labnet.netns_name("drill2", "repo1") not in {n.netns for n in load_lab("sim").nodes}
