"""Failover on the lab, as the article tests it, and the backups survive every move.

    host 198.18.50.1 ── bridge ── repo1 198.18.50.161 (priority 101)
                              └── repo2 198.18.50.162 (priority 100)
    VIP 198.18.50.160 and /dev/loopN (XFS "veeamrepo") follow the MASTER

The tests run in file order on one converged lab (module fixture, removed at the end, failed or
not): a backup file is written through the MASTER while a "data mover" holds it open -> repo1's
NIC goes down -> repo2 is MASTER with the VIP and the volume, the file intact, repo1 holds
nothing -> repo1 comes back as BACKUP (nopreempt: no failback) -> keepalived stopped on repo2
hands everything back to repo1 -> sshd killed on repo1 moves everything to repo2 -> the file
system is clean (xfs_repair -n). At every probe in
between, at most one node has the volume mounted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.bundle import authorized_keys, render_cluster
from components.config import PROJECT_ROOT
from components.converge import fleet
from components.converge.ssh import Access
from components.lab import Lab, node_exec
from components.lab import secrets as labsecrets
from tests.lab.labkit import (
    HEALTHY,
    ROOT,
    STACK,
    cluster_picture,
    export_image,
    in_node,
    sh,
    ssh_argv,
    wait_for_picture,
)

pytestmark = pytest.mark.lab

BACKUP_FILE = "job1.vbk"
PAYLOAD = "veeam backup chain, full 1\n" * 1000


@pytest.fixture(scope="module")
def cluster(sim_lab: Lab) -> Lab:
    """The lab converged with its own secrets, repo1 MASTER."""
    s = sim_lab.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
    outcome = fleet.converge_stack(
        s, bundles, Access.for_stack(s, PROJECT_ROOT, secrets.public_host_keys, True), report=print
    )
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    wait_for_picture(sim_lab, HEALTHY)
    return sim_lab


def watch_until(lab: Lab, expected: dict[str, tuple[str, bool, bool]], timeout: float = 30):
    """Poll the cluster until ``expected``; at every probe at most one node may have the volume
    mounted (XFS mounted twice is corruption)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        picture = cluster_picture(lab)
        seen.append(picture)
        mounted = [n for n, (_, _, m) in picture.items() if m]
        assert len(mounted) <= 1, f"volume mounted on {mounted} at once: {picture}"
        if picture == expected:
            return seen
        assert time.monotonic() < deadline, (
            f"cluster (state, vip, mounted):\n expected {expected}\n actual   {picture}"
        )
        time.sleep(0.2)


def volume_file(lab: Lab, node: str) -> str:
    return in_node(node, "cat", f"{lab.settings.mount_point}/{BACKUP_FILE}")


@pytest.fixture
def repo1_unplugged(cluster: Lab) -> Iterator[None]:
    nic = cluster.settings.interface
    assert sh("ip", "-n", "repo1", "link", "set", nic, "down").returncode == 0
    try:
        yield
    finally:
        sh("ip", "-n", "repo1", "link", "set", nic, "up")


def test_backup_written_through_the_master(cluster: Lab) -> None:
    mp = cluster.settings.mount_point
    node_exec(
        STACK, "repo1", ["sh", "-c", f"cat > {mp}/{BACKUP_FILE} && sync"], input=PAYLOAD, check=True
    )
    assert volume_file(cluster, "repo1") == PAYLOAD


def test_nic_down_on_the_master_moves_vip_and_volume(cluster: Lab, repo1_unplugged) -> None:
    # a data mover holding the backup file open on repo1 must not keep the volume mounted there
    mp = cluster.settings.mount_point
    mover = node_exec(
        STACK,
        "repo1",
        ["sh", "-c", f"nohup sh -c 'exec 3<{mp}/{BACKUP_FILE}; sleep 600' >/dev/null 2>&1 & "],
    )
    assert mover.returncode == 0, mover.stderr
    watch_until(
        cluster,
        {"repo1": ("FAULT", False, False), "repo2": ("MASTER", True, True)},
    )
    assert volume_file(cluster, "repo2") == PAYLOAD


def test_vip_answers_from_the_new_master_with_the_shared_host_key(cluster: Lab, tmp_path) -> None:
    secrets = labsecrets.load_or_create(cluster.settings, STACK, ROOT)
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"{cluster.settings.vip.ip} {k.public}\n" for k in secrets.host_keys))
    r = sh(*ssh_argv(cluster, str(cluster.settings.vip.ip), known, "hostname"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "repo2"


def test_old_master_returns_as_backup_without_failback(cluster: Lab) -> None:
    watch_until(cluster, {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)})
    # nopreempt: repo1's higher priority does not take the role back
    time.sleep(3 * cluster.settings.advert_interval)
    assert cluster_picture(cluster) == {
        "repo1": ("BACKUP", False, False),
        "repo2": ("MASTER", True, True),
    }


def test_stopping_keepalived_on_the_master_hands_everything_back(cluster: Lab) -> None:
    in_node("repo2", "systemctl", "stop", "keepalived")
    watch_until(cluster, {"repo1": ("MASTER", True, True), "repo2": ("STOP", False, False)})
    assert volume_file(cluster, "repo1") == PAYLOAD
    in_node("repo2", "systemctl", "start", "keepalived")
    watch_until(cluster, HEALTHY)


def test_sshd_dying_on_the_master_moves_vip_and_volume(cluster: Lab) -> None:
    """Veeam reaches the repository through sshd: a MASTER whose sshd is gone must give the
    VIP and the volume away (chk_sshd without weight: FAULT), and come back as BACKUP."""
    assert cluster_picture(cluster) == HEALTHY  # repo1 MASTER
    in_node("repo1", "sh", "-c", "kill -9 $(cat /run/sshd.pid)")
    watch_until(cluster, {"repo1": ("FAULT", False, False), "repo2": ("MASTER", True, True)})
    assert volume_file(cluster, "repo2") == PAYLOAD
    in_node("repo1", "systemctl", "start", "ssh")
    watch_until(cluster, {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)})


def test_file_system_is_clean_after_the_moves(cluster: Lab, tmp_path: Path) -> None:
    for node in ("repo1", "repo2"):
        in_node(node, "systemctl", "stop", "keepalived")
    watch_until(cluster, {"repo1": ("STOP", False, False), "repo2": ("STOP", False, False)})
    image = tmp_path / "image.xfs"
    export_image(cluster, image)
    check = sh("xfs_repair", "-n", image, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
