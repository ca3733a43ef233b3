"""Failover on the lab, as the article tests it, and the backups survive every move.

    host 198.18.50.1 ── bridge ── VM repo1 198.18.50.161 (priority 101)
                              └── VM repo2 198.18.50.162 (priority 100)
    VIP 198.18.50.160 and the krbd mapping of the image (XFS "veeamrepo") follow the MASTER

The tests run in file order on the shared lab, reset and converged first (repo1 MASTER): a
backup file is written through the MASTER while a "data mover" holds it open -> repo1's NIC
goes down (as the article does it) -> repo2 is MASTER with the VIP and the volume, the file
intact, repo1 releases everything -> repo1 comes back as BACKUP (nopreempt: no failback) ->
keepalived stopped on repo2 hands everything back to repo1 -> sshd killed on repo1 moves
everything to repo2 -> the master's VM powered off: the peer takes over -> the file system is
clean (xfs_repair -n). At every probe in between, at most one node has the volume mounted over
a client Ceph does not refuse (a node cut off from Ceph keeps its mount until its I/O times out:
the takeover fenced it first).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.lab import Lab, node_exec
from components.lab import secrets as labsecrets
from components.lab.faults import LabFaults
from tests.lab.labkit import (
    HEALTHY,
    ROOT,
    STACK,
    cluster_picture,
    fresh_cluster,
    in_node,
    sh,
    ssh_argv,
    writable_mounts,
    xfs_clean,
)

pytestmark = pytest.mark.lab

BACKUP_FILE = "job1.vbk"
PAYLOAD = "veeam backup chain, full 1\n" * 1000


@pytest.fixture(scope="module")
def cluster(sim_lab: Lab) -> Lab:
    """The lab reset and converged with its own secrets, repo1 MASTER."""
    fresh_cluster(sim_lab)
    return sim_lab


def watch_until(lab: Lab, expected: dict[str, tuple[str, bool, bool]], timeout: float = 240):
    """Poll the cluster until ``expected``; at every probe at most one node may have the volume
    mounted writable (XFS written from two nodes is corruption; a fenced mount writes nothing)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        picture = cluster_picture(lab)
        seen.append(picture)
        if sum(m for _, _, m in picture.values()) > 1:
            writers = writable_mounts(lab)
            assert len(writers) <= 1, f"volume writable on {writers} at once: {picture}"
        if picture == expected:
            return seen
        assert time.monotonic() < deadline, (
            f"cluster (state, vip, mounted):\n expected {expected}\n actual   {picture}"
        )
        time.sleep(0.5)


def volume_file(lab: Lab, node: str) -> str:
    return in_node(node, "cat", f"{lab.settings.mount_point}/{BACKUP_FILE}")


@pytest.fixture
def repo1_unplugged(cluster: Lab) -> Iterator[None]:
    """repo1's interface down, from inside the VM (the article's failover test)."""
    nic = cluster.settings.interface
    in_node("repo1", "ip", "link", "set", nic, "down")
    try:
        yield
    finally:
        in_node("repo1", "ip", "link", "set", nic, "up")


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
    LabFaults(cluster).inject("kill_sshd", "repo1")  # killed, and its unit does not restart it
    watch_until(cluster, {"repo1": ("FAULT", False, False), "repo2": ("MASTER", True, True)})
    assert volume_file(cluster, "repo2") == PAYLOAD
    LabFaults(cluster).reset_sshd("repo1")
    watch_until(cluster, {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)})


def test_the_masters_vm_powered_off_the_peer_takes_over(cluster: Lab) -> None:
    """A VM whose plug is pulled (its QEMU killed): no release, its lock left behind; the peer
    fences it, takes the VIP and the volume, and answers SSH on the VIP."""
    faults = LabFaults(cluster)
    faults.power_off("repo2")
    watch_until(cluster, {"repo1": ("MASTER", True, True), "repo2": ("DOWN", False, False)})
    assert volume_file(cluster, "repo1") == PAYLOAD
    faults.power_on("repo2")  # boots again; keepalived (enabled) starts it as BACKUP
    watch_until(cluster, HEALTHY)


def test_file_system_is_clean_after_the_moves(cluster: Lab, tmp_path: Path) -> None:
    for node in ("repo1", "repo2"):
        in_node(node, "systemctl", "stop", "keepalived")
    watch_until(cluster, {"repo1": ("STOP", False, False), "repo2": ("STOP", False, False)})
    xfs_clean(cluster, tmp_path)
