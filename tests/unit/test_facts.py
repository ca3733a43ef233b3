"""Facts: the probe commands run by the real shell on this machine, and their parsers."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest

from components.converge import facts, status
from tests.kit import stack_settings

pytestmark = pytest.mark.unit


def sh(command: str) -> str:
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


OS_RELEASE = [
    ('ID=centos\nVERSION_ID="7"\nID_LIKE="rhel fedora"\n', "el7"),
    ('ID="rocky"\nVERSION_ID="8.9"\nID_LIKE="rhel centos fedora"\n', "el8"),
    ('ID="almalinux"\nVERSION_ID="9.4"\n', "el9"),
    ('ID=debian\nVERSION_ID="12"\n', "debian"),
    ('ID=ubuntu\nVERSION_ID="22.04"\nID_LIKE=debian\n', "ubuntu"),
]


@pytest.mark.parametrize(("text", "family"), OS_RELEASE)
def test_parse_os_release(text, family):
    assert facts.parse_os_release(text) == family


def test_parse_os_release_refuses_unknown():
    with pytest.raises(facts.FactError, match="unsupported OS: ID='centos' VERSION_ID='6'"):
        facts.parse_os_release('ID=centos\nVERSION_ID="6"\n')


def test_this_machine_is_debian():
    assert facts.parse_os_release(Path("/etc/os-release").read_text()) == "debian"


@pytest.mark.parametrize(
    ("out", "word"),
    [
        ("status: done\n", "done"),
        ("\nstatus: running\n", "running"),
        ("status: not run\n", "not run"),
        ("", ""),
    ],
)
def test_parse_cloud_init_status(out, word):
    assert facts.parse_cloud_init_status(out) == word


def test_cloud_init_never_ran_here_is_settled():
    """This machine has cloud-init installed but never booted with it, like the lab nodes."""
    proc = subprocess.run(["cloud-init", "status"], capture_output=True, text=True, check=False)
    word = facts.parse_cloud_init_status(proc.stdout)
    assert word in ("not run", "disabled"), proc.stdout
    assert word in facts.CLOUD_INIT_SETTLED


def test_file_states_command_for_real(tmp_path: Path):
    a = tmp_path / "with space"
    a.write_bytes(b"hello\n")
    a.chmod(0o640)
    missing = tmp_path / "missing"
    paths = [str(a), str(missing), str(tmp_path / "it's")]
    (tmp_path / "it's").write_bytes(b"")
    states = facts.parse_file_states(paths, sh(facts.file_states_command(paths)))
    me = sh("id -un").strip()
    group = sh("id -gn").strip()
    assert states[str(a)] == facts.FileState(
        hashlib.sha256(b"hello\n").hexdigest(), 0o640, me, group
    )
    assert states[str(missing)] is None
    assert states[str(tmp_path / "it's")].sha256 == hashlib.sha256(b"").hexdigest()


def test_missing_packages_for_real():
    pkgs = ["keepalived", "no-such-package-repo-cluster", "psmisc"]
    out = sh(facts.missing_packages_command("debian", pkgs))
    assert facts.parse_missing_packages("debian", pkgs, out) == ["no-such-package-repo-cluster"]


def test_parse_missing_packages_rpm():
    out = "keepalived installed\npackage ceph-common is not installed\n"
    assert facts.parse_missing_packages("el7", ["keepalived", "ceph-common"], out) == [
        "ceph-common"
    ]


def test_parse_unit_states():
    units = ["a.service", "b.service"]
    got = facts.parse_unit_states(units, "enabled active\nunknown inactive\n")
    assert got == {
        "a.service": facts.UnitState("enabled", "active"),
        "b.service": facts.UnitState("unknown", "inactive"),
    }
    with pytest.raises(facts.FactError):
        facts.parse_unit_states(units, "enabled active\n")


IP_ADDR = (
    "2: ens160    inet 198.18.50.161/24 brd 198.18.50.255 scope global ens160\\ ...\n"
    "2: ens160    inet 198.18.50.160/24 scope global secondary ens160\\ ...\n"
)
MOUNTS = "/dev/vda / ext4 rw 0 0\n/dev/loop0 /mnt/veeamrepo xfs rw,relatime 0 0\n"


def test_parse_holds_vip_and_mounted():
    assert facts.parse_holds_vip(IP_ADDR, "198.18.50.160")
    assert not facts.parse_holds_vip(IP_ADDR, "198.18.50.16")
    vol = {"/dev/loop0"}
    assert facts.parse_mounted(MOUNTS, "/mnt/veeamrepo", vol)
    assert facts.parse_mounted(MOUNTS, "/mnt/veeamrepo/", vol)
    assert not facts.parse_mounted(MOUNTS, "/mnt/veeam", vol)
    assert not facts.parse_mounted(MOUNTS, "/mnt/veeamrepo", {"/dev/rbd0"})
    assert facts.parse_mounted("/dev/x /mnt/a\\040b xfs rw 0 0\n", "/mnt/a b", {"/dev/x"})


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("/mnt/a\\040b", "/mnt/a b"),
        ("/mnt/a\\011b", "/mnt/a\tb"),
        ("/mnt/a\\012b", "/mnt/a\nb"),
        ("/mnt/a\\134b", "/mnt/a\\b"),
        ("/mnt/\\134040\\040x", "/mnt/\\040 x"),  # an escaped backslash, then 040 as text
    ],
)
def test_every_octal_escape_of_the_mount_table_is_decoded(field, path):
    """The kernel escapes space, tab, newline and backslash in /proc/self/mounts (\\ooo)."""
    assert facts.parse_mounted(f"/dev/x {field} xfs rw 0 0\n", path, {"/dev/x"})
    assert not facts.parse_mounted(f"/dev/x {field} xfs rw 0 0\n", field, {"/dev/x"})
    # the device field is escaped the same way
    assert facts.parse_mounted(f"/dev/a\\040b {field} xfs rw 0 0\n", path, {"/dev/a b"})


def test_a_bind_mount_on_the_mount_point_is_not_the_volume():
    """The lab binds a directory of / over the mount point: only the volume on top counts."""
    bind = "/dev/vda /mnt/veeamrepo ext4 rw 0 0\n"
    assert not facts.parse_mounted(bind, "/mnt/veeamrepo", {"/dev/loop0"})
    assert facts.parse_mounted(bind + MOUNTS, "/mnt/veeamrepo", {"/dev/loop0"})


MAPPED = "map=/dev/rbd0 198.18.50.161:0/948355672\n"
RBD_MOUNTS = "/dev/vda / ext4 rw 0 0\n/dev/rbd0 /mnt/veeamrepo xfs rw,relatime 0 0\n"


def test_parse_status():
    out = f"active=active\njournal=MASTER 4242\n{MAPPED}--repo-cluster--\n" + IP_ADDR
    out += "--repo-cluster--\n" + RBD_MOUNTS
    st = status.parse_status("repo1", "198.18.50.161", "198.18.50.160", "/mnt/veeamrepo", out)
    assert st == status.NodeStatus(
        "repo1", "198.18.50.161", "MASTER", True, True, clients=("198.18.50.161:0/948355672",)
    )
    stopped = out.replace("active=active", "active=inactive")
    st = status.parse_status("repo1", "198.18.50.161", "198.18.50.160", "/mnt/veeamrepo", stopped)
    assert st.vrrp_state == "STOPPED"
    # something else mounted there, or the image not mapped: not the volume
    other = out.replace("/dev/rbd0 /mnt", "/dev/loop0 /mnt")
    assert not status.parse_status("r", "ip", "198.18.50.160", "/mnt/veeamrepo", other).mounted
    unmapped = out.replace(MAPPED, "")
    st = status.parse_status("r", "ip", "198.18.50.160", "/mnt/veeamrepo", unmapped)
    assert not st.mounted and st.clients == ()
    # a MASTER that outranks a stale peer says its rank; none (or garbage): its own priority
    ranked = out.replace("journal=MASTER 4242\n", "journal=MASTER 4242\nrank=102\n")
    st = status.parse_status("repo2", "198.18.50.162", "198.18.50.160", "/mnt/veeamrepo", ranked)
    assert st.rank == 102 and st.summary == "MASTER, VIP yes, mounted yes, rank 102"
    assert (
        st.as_dict()["rank"] == 102 and "rank" not in status.NodeStatus("r", "", "", 0, 0).as_dict()
    )
    garbled = out.replace("journal=MASTER 4242\n", "journal=MASTER 4242\nrank=x\n")
    assert status.parse_status("r", "ip", "198.18.50.160", "/mnt/veeamrepo", garbled).rank is None
    assert "rank=$(cat /run/keepalivednotify/rank 2>/dev/null)" in status.status_command(
        stack_settings("sim")
    )


CLUSTERS = [
    pytest.param(
        [("repo1", "MASTER", True, True), ("repo2", "BACKUP", False, False)], [], id="healthy"
    ),
    pytest.param(
        [("repo1", "BACKUP", False, False), ("repo2", "MASTER", True, True)],
        [],
        id="healthy after a failover (nopreempt)",
    ),
    pytest.param(
        [("repo1", "MASTER", True, True), ("repo2", "MASTER", True, True)],
        [
            "2 MASTER nodes (repo1, repo2), want 1",
            "VIP held by repo1, repo2",
            "volume mounted on repo1, repo2",
        ],
        id="split brain",
    ),
    pytest.param(
        [("repo1", "MASTER", True, False), ("repo2", "UNREACHABLE", False, False)],
        ["volume mounted on no node", "repo2 is UNREACHABLE, want BACKUP"],
        id="master without mount, peer gone",
    ),
]


@pytest.mark.parametrize(("nodes", "problems"), CLUSTERS)
def test_cluster_problems(nodes, problems):
    statuses = [status.NodeStatus(n, "ip", s, v, m) for n, s, v, m in nodes]
    assert status.cluster_problems(statuses) == problems


# what `rbd status`, `rbd lock ls`, `ceph osd blocklist ls` and `ceph health` print (Ceph 16)
WATCHERS = """Watchers:
\twatcher=198.18.50.162:0/2242025909 client.4181 cookie=139815144211536
\twatcher=198.18.50.161:0/948355672 client.4141 cookie=140042643181680
"""
LOCKS = """There is 1 exclusive lock on this image.
Locker       ID                    Address
client.4141  auto 140042643181680  198.18.50.161:0/948355672
"""
BLOCKLIST = "198.18.50.162:0/1203836116 2026-12-02T02:24:47.291405+0000\n"


NODES = ["198.18.50.161", "198.18.50.162"]


def answer(*sections: str) -> str:
    return "".join(f"--repo-cluster--\n{x}" for x in sections)


def test_ceph_views_read_from_one_answer():
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    views = status.ceph_views(NODES, answer(WATCHERS, LOCKS, BLOCKLIST, "HEALTH_OK\n"), now)
    assert views["198.18.50.161"] == status.CephView(
        client=True, holds_lock=True, blocklisted=0, health="HEALTH_OK", entries=1,
        short_entries=("198.18.50.162:0/1203836116",),
    )  # fmt: skip
    assert views["198.18.50.162"].client and views["198.18.50.162"].blocklisted == 1
    # an entry years ahead (the fence's) is not a short one
    lasting = "198.18.50.162:0/1203836116 2031-12-01T02:24:47.291405+0000\n"
    views = status.ceph_views(NODES, answer(WATCHERS, LOCKS, lasting, "HEALTH_OK\n"), now)
    assert views["198.18.50.162"].short_entries == ()
    down = status.ceph_views(NODES, answer(*(["ceph-failed\n"] * 4)), now)
    assert down["198.18.50.161"] == status.CephView(None, None, None, None)


def test_a_foreign_lock_holder_is_named_and_is_a_problem():
    foreign = LOCKS.replace("198.18.50.161:0/948355672", "198.18.50.9:0/77")
    views = status.ceph_views(NODES, answer(WATCHERS, foreign, "", "HEALTH_OK\n"))
    view = views["198.18.50.161"]
    assert view.foreign_lock == "client.4141 at 198.18.50.9:0/77" and view.holds_lock is False
    statuses = [
        status.NodeStatus("repo1", "198.18.50.161", "MASTER", True, True, ceph=view),
        status.NodeStatus("repo2", "198.18.50.162", "BACKUP", False, False, ceph=view),
    ]
    (problem,) = status.cluster_problems(statuses)
    assert "client.4141 at 198.18.50.9:0/77" in problem and "not one of the nodes" in problem


def test_a_master_without_a_live_client_or_a_backup_with_a_mapping_is_a_problem():
    gone = status.CephView(client=False, holds_lock=False, blocklisted=1, health="HEALTH_OK")
    statuses = [
        status.NodeStatus("repo1", "ip", "MASTER", True, True, ceph=gone),
        status.NodeStatus("repo2", "ip", "BACKUP", False, False, clients=("ip:0/1",)),
    ]
    problems = status.cluster_problems(statuses)
    assert len(problems) == 2
    assert "no client of the MASTER repo1" in problems[1]
    assert "repo2 maps the image but is not MASTER" in problems[0]


def test_a_fenced_mount_is_not_a_second_writer():
    from components.converge import invariants
    from components.converge.probe import Sample

    old = status.NodeStatus("repo1", "ip", "MASTER", True, True, fenced=True)
    new = status.NodeStatus("repo2", "ip", "MASTER", True, True, fenced=False)
    assert invariants.single_mount([Sample(1.0, (old, new))]) == []
    unfenced = status.NodeStatus("repo1", "ip", "MASTER", True, True)
    (broken,) = invariants.single_mount([Sample(2.0, (unfenced, new))])
    assert broken.invariant == "I1" and "repo1, repo2" in broken.detail
