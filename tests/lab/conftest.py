"""Lab-tier fixtures: the sim stack's lab nodes, built by the real `fab lab-up --stack sim`.

    host 198.18.50.1 (bridge rc-br-sim) ── veth ── netns repo1: ens160 198.18.50.161, sshd
                                        └─ veth ── netns repo2: ens160 198.18.50.162, sshd
    Ceph (mon + memstore osd) on 198.18.50.1: image rbd/veeamrepo (XFS "veeamrepo"), mapped
    by each node's own client (rbd-fuse + a loop device in the node's own /dev)

These tests own the sim stack's lab while they run: a lab already up is removed first, and every
fixture removes the lab when it ends, failed test or not. Root is required (namespaces, loop
devices); the tools are installed by scripts/install-deps.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import lab as labmod
from components.lab import Lab
from tests.lab.labkit import ROOT, STACK, fab, keyscan, what_is_left


@pytest.fixture(scope="session")
def lab_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root: network/mount namespaces and loop devices")
    subprocess.run([str(ROOT / "scripts" / "install-deps")], check=True, timeout=900)


@pytest.fixture(scope="session")
def plan() -> Lab:
    return labmod.load_lab(STACK)


def remove_lab(plan: Lab) -> None:
    """lab-down in-process (independent of the command under test), then check with the
    system's tools that nothing is left."""
    labmod.lab_down(STACK, say=lambda _: None)
    left = what_is_left(plan)
    assert not left, f"lab-down left behind: {left}"


@pytest.fixture
def no_lab(lab_tools: None, plan: Lab) -> Iterator[Lab]:
    """No sim lab before the test, none after it (even when the test fails)."""
    remove_lab(plan)
    try:
        yield plan
    finally:
        remove_lab(plan)


@pytest.fixture(scope="module")
def sim_lab(lab_tools: None, plan: Lab) -> Iterator[Lab]:
    """A fresh sim lab, made by `.venv/bin/fab lab-up --stack sim`; removed afterwards."""
    remove_lab(plan)
    try:
        out = fab("lab-up", "--stack", STACK)
        assert out.returncode == 0, f"fab lab-up failed:\n{out.stdout}\n{out.stderr}"
        yield plan
    finally:
        remove_lab(plan)


@pytest.fixture(scope="module")
def known_hosts(sim_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A known_hosts file of the nodes' host keys, as `ssh-keyscan` reports them."""
    path = tmp_path_factory.mktemp("ssh") / "known_hosts"
    path.write_text("".join(keyscan(n, "rsa,ecdsa,ed25519") for n in sim_lab.nodes))
    return path
