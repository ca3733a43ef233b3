"""Lab-tier fixtures: the sim stack's lab, built by the real `fab lab-up --stack sim`.

    host 198.18.50.1 (bridge br.sim): Fabric, ssh, Ceph (mon + memstore osd), hostd, vcsim
      ├── tap t.sim.repo1 ── QEMU VM repo1: ens160 198.18.50.161, own kernel, systemd
      └── tap t.sim.repo2 ── QEMU VM repo2: ens160 198.18.50.162, own kernel, systemd
    each VM booted by cloud-init from its guestinfo in vcsim; the MASTER maps the image
    rbd/veeamrepo (XFS "veeamrepo") with krbd and mounts it

A lab costs minutes to boot (two VMs under software emulation), so the modules that use it
share one: `sim_lab` brings it up when it is not up (lab-up is idempotent) and leaves it for
the next module; the session removes it at its end, failed or not. The modules that need no
sim lab at all (lab-up/lab-down themselves, `make lab`, a stack of their own) run after the others
(pytest_collection_modifyitems) and remove it first. Root is required (bridge, taps, QEMU);
the tools come from scripts/install-deps.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import lab as labmod
from components.lab import Lab
from tests.lab.labkit import ROOT, STACK, fab, what_is_left

# modules that own the machine (no lab before them, none after): run last
OWN_LAB = ("test_add_node.py", "test_adopt.py", "test_lab_lifecycle.py", "test_make_lab.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Among the lab tier's tests (where they stand in the session): test_lab_vms first (it
    looks at VMs nobody converged yet), then the modules sharing the lab, then those that make
    and remove labs of their own. Stable: the order within each group is the file order."""
    slots = [i for i, item in enumerate(items) if item.path.parent.name == "lab"]

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return 0 if name == "test_lab_vms.py" else 2 if name in OWN_LAB else 1

    ordered = sorted((items[i] for i in slots), key=rank)
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def lab_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root: a bridge, taps and QEMU (run as root)")
    subprocess.run([str(ROOT / "scripts" / "install-deps")], check=True, timeout=1800)


@pytest.fixture(scope="session")
def plan() -> Lab:
    return labmod.load_lab(STACK)


def remove_lab(plan: Lab) -> None:
    """lab-down in-process (independent of the command under test), then check with the
    system's tools that nothing is left."""
    labmod.lab_down(STACK, say=lambda _: None)
    left = what_is_left(plan)
    assert not left, f"lab-down left behind: {left}"


@pytest.fixture(scope="session")
def lab_session(lab_tools: None, plan: Lab) -> Iterator[None]:
    """Whatever lab the session made is gone at its end."""
    try:
        yield
    finally:
        remove_lab(plan)


@pytest.fixture
def no_lab(lab_session: None, plan: Lab) -> Iterator[Lab]:
    """No sim lab before the test, none after it (even when the test fails)."""
    remove_lab(plan)
    try:
        yield plan
    finally:
        remove_lab(plan)


@pytest.fixture(scope="module")
def sim_lab(lab_session: None, plan: Lab) -> Lab:
    """The sim lab with its two VMs booted, made by `.venv/bin/fab lab-up --stack sim` (or
    found up: lab-up is idempotent, and then makes only missing VMs)."""
    out = fab("lab-up", "--stack", STACK, timeout=2400)
    assert out.returncode == 0, f"fab lab-up failed:\n{out.stdout}\n{out.stderr}"
    return plan


@pytest.fixture(scope="module")
def known_hosts(sim_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A known_hosts file of the host keys the nodes' VMs publish (each made its own at first
    boot; read from vcsim) and the cluster's shared keys."""
    from components.lab import secrets as labsecrets
    from tests.lab.labkit import published

    s = sim_lab.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    own = published(sim_lab)
    lines = [
        f"{n.address.ip} {k}\n"
        for n in sim_lab.nodes
        for k in (*secrets.public_host_keys, own[n.name])
    ]
    lines += [f"{s.vip.ip} {k.public}\n" for k in secrets.host_keys]
    path = tmp_path_factory.mktemp("ssh") / "known_hosts"
    path.write_text("".join(lines))
    return path
