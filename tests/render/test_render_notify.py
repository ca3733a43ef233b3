"""The notify script: shellcheck and bash -n accept it, and run for real (as root) against an
XFS volume on a loop device it mounts on MASTER and releases on BACKUP/FAULT/STOP, serialized,
ending in the state keepalived reported last."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.bundle import PATHS, Secrets, render_node
from components.bundle.render import ROOT as PROJECT
from tests.render.renderkit import AUTHORIZED, VARIANT_IDS, Volume, run, variant

pytestmark = pytest.mark.render
ROOT_TEMPLATES = PROJECT / "scripts" / "node"


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_shellcheck_and_bash_n(vid, renders, tmp_path) -> None:
    for node, bundle in renders[vid].bundles.items():
        f = bundle.file(PATHS.notify_script)
        assert f.mode == 0o755 and f.content.startswith(b"#!/bin/bash\n")
        path = tmp_path / f"{node}.sh"
        path.write_bytes(f.content)
        r = run("bash", "-n", str(path))
        assert r.returncode == 0, r.stderr
        r = run("shellcheck", "--shell=bash", "--severity=style", str(path))
        assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_sshd_check_is_shellcheck_clean_and_asks_the_node_itself(vid, renders, tmp_path) -> None:
    for node, bundle in renders[vid].bundles.items():
        f = bundle.file(PATHS.sshd_check)
        assert f.mode == 0o755 and f.content.startswith(b"#!/bin/bash\n")
        ip = str(renders[vid].settings.node(node).ip)
        assert f"/dev/tcp/{ip}/22".encode() in f.content
        for script in PATHS.check_scripts:
            path = tmp_path / f"{node}-{Path(script).name}"
            path.write_bytes(bundle.file(script).content)
            assert bundle.file(script).mode == 0o755
            r = run("shellcheck", "--shell=bash", "--severity=style", str(path))
            assert r.returncode == 0, r.stdout


def test_sshd_check_fails_without_an_ssh_banner(tmp_path) -> None:
    """Run for real against 127.0.0.1: an SSH banner passes, a silent listener or no
    listener fails (within its 2 s)."""
    import socket
    import threading

    script = (ROOT_TEMPLATES / "repo-cluster-chk-sshd.j2").read_text()
    body = next(ln for ln in script.splitlines() if ln.startswith("exec timeout"))

    def check(port: int) -> int:
        cmd = body.replace("{{ node.ip }}/22", f"127.0.0.1/{port}")
        return run("bash", "-c", cmd).returncode

    for banner, want in ((b"SSH-2.0-OpenSSH_9.2\r\n", 0), (b"", 1)):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def serve(srv=srv, banner=banner) -> None:
            conn, _ = srv.accept()
            conn.sendall(banner)
            threading.Event().wait(3)
            conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        assert (check(port) == 0) == (want == 0), (banner, port)
        srv.close()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    closed = srv.getsockname()[1]
    srv.close()
    assert check(closed) != 0


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[dict[str, str]]:
    """Two throwaway network namespaces with a veth named like the sim stack's interface: in
    "vip" it holds the VIP (as keepalived sets it on the MASTER), in "bare" it does not. The
    links stay down: nothing is ever sent."""
    made = {kind: f"rn-{os.getpid()}-{kind}" for kind in ("vip", "bare")}
    try:
        for ns in made.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(
                ["ip", "-n", ns, "link", "add", "ens160", "type", "veth", "peer", "rnpeer0"],
                check=True,
            )
        subprocess.run(
            ["ip", "-n", made["vip"], "addr", "add", "198.18.50.160/24", "dev", "ens160"],
            check=True,
        )
        yield made
    finally:
        for ns in made.values():
            run("ip", "netns", "del", ns)


@dataclass
class Notify:
    script: Path
    state_dir: Path
    mount_point: Path
    volume: Volume
    netns: str  # the script runs in this network namespace (its mounts stay in ours)

    def argv(self, state: str) -> list[str]:
        return [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "--",
            str(self.script),
            "INSTANCE",
            "REPO_CLUSTER",
            state,
            "100",
        ]

    def env(self) -> dict[str, str]:
        # BLKID_FILE: a private blkid cache. Without udev, `mount -L` trusts the shared cache
        # for 2 s after a probe, so a loop device reused by the previous test would still
        # carry its old label there. PATH: the Ceph double first (see CEPH_DOUBLE).
        return {
            **os.environ,
            "PATH": f"{self.state_dir.parent / 'ceph-double'}:{os.environ['PATH']}",
            "KEEPALIVEDNOTIFY_STATE_DIR": str(self.state_dir),
            "KEEPALIVEDNOTIFY_DEVICE": self.volume.device,
            "BLKID_FILE": str(self.state_dir.parent / "blkid.tab"),
        }

    def start(self, state: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(state),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, to freeze it whole
        )

    def call(self, state: str) -> subprocess.CompletedProcess[str]:
        return run(*self.argv(state), env=self.env())

    def source(self) -> str | None:
        """The device mounted on the mount point, or None."""
        r = run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(self.mount_point))
        return r.stdout.strip() or None

    def journal(self) -> list[str]:
        path = self.state_dir / "states"
        return path.read_text().splitlines() if path.exists() else []


# A double of the Ceph CLI for this tier only: these tests are about the notify script's
# ordering, mount and release on a loop device, without a Ceph cluster. It answers as Ceph
# does when the fence has nothing to do (this node's client has the image open, no other
# client, no lock); with a file "fenced" beside it, only the peer's client has the image open;
# with "unreachable", it fails as an unreachable Ceph does.
# The fence itself runs against the lab's real Ceph: the fence drills of tests/lab/test_drill.py.
CEPH_DOUBLE = """#!/bin/bash
[ -e "$(dirname "$0")/unreachable" ] && { echo "error connecting to the cluster" >&2; exit 110; }
case " $* " in
*" status "*)
    ip=198.18.50.161
    [ -e "$(dirname "$0")/fenced" ] && ip=198.18.50.162
    printf 'Watchers:\\n\\twatcher=%s:0/42 client.42 cookie=1\\n' "$ip" ;;
*" lock ls "*) ;;
*) echo "ceph double: unexpected $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def notify(tmp_path: Path, xfs_volume: Volume, namespaces: dict[str, str]) -> Iterator[Notify]:
    mount_point = tmp_path / "mnt" / "veeamrepo"
    s = variant("sim", "el7", mountPoint=str(mount_point), xfsLabel=xfs_volume.label)
    assert (str(s.vip.ip), s.interface) == ("198.18.50.160", "ens160")
    bundle = render_node(s, s.nodes[0], Secrets.resolve(s, vrrp_auth_pass="x"), AUTHORIZED)
    script = tmp_path / "keepalivednotify.sh"
    script.write_bytes(bundle.file(PATHS.notify_script).content)
    script.chmod(0o755)
    check_script = tmp_path / "chk-volume.sh"
    check_script.write_bytes(bundle.file(PATHS.volume_check).content)
    check_script.chmod(0o755)
    double = tmp_path / "ceph-double"
    double.mkdir()
    for tool in ("rbd", "ceph"):
        (double / tool).write_text(CEPH_DOUBLE)
        (double / tool).chmod(0o755)
    try:
        yield Notify(script, tmp_path / "state", mount_point, xfs_volume, namespaces["vip"])
    finally:
        run("chattr", "-i", str(mount_point))  # the bare mount point is immutable by design


def check(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"


def test_master_mounts_and_other_states_release(notify: Notify) -> None:
    assert not notify.mount_point.exists()
    check(notify.call("MASTER"))  # creates the mount point
    assert notify.source() == notify.volume.device
    check(notify.call("MASTER"))  # already mounted: no second mount
    assert notify.source() == notify.volume.device
    (notify.mount_point / "backups").mkdir()
    (notify.mount_point / "backups" / "test.txt").write_text("written on MASTER\n")
    for releasing in ("BACKUP", "FAULT", "STOP"):
        check(notify.call(releasing))
        assert notify.source() is None, releasing
        check(notify.call(releasing))  # nothing mounted: still fine
        check(notify.call("MASTER"))
        assert notify.source() == notify.volume.device
        # what the previous MASTER wrote is there after the failover
        assert (notify.mount_point / "backups" / "test.txt").read_text() == "written on MASTER\n"
    check(notify.call("BACKUP"))


def test_open_file_does_not_block_unmount(notify: Notify) -> None:
    check(notify.call("MASTER"))
    holder = subprocess.Popen(
        ["bash", "-c", 'exec 3>>"$1/held.log"; exec sleep 600', "holder", str(notify.mount_point)],
        cwd=notify.mount_point,
    )
    try:
        wait_for(lambda: (notify.mount_point / "held.log").exists(), "the holder to open its file")
        assert run("umount", str(notify.mount_point)).returncode != 0  # busy, for real
        check(notify.call("BACKUP"))
        assert notify.source() is None
        assert holder.wait(timeout=10) == -9  # fuser -k: SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_keepalived_exec_stop_releases_the_volume(notify: Notify, renders) -> None:
    """The drop-in's ExecStop, run as systemd runs it before keepalived gets SIGTERM: the
    volume is released, its holder killed, while keepalived (and the VIP) would still be up."""
    dropin = renders["lab-el7"].bundles["repo1"].file(PATHS.keepalived_dropin).content.decode()
    argv = shlex.split([ln for ln in dropin.splitlines() if ln.startswith("ExecStop=")][-1][9:])
    assert argv == [PATHS.notify_script, "INSTANCE", "REPO_CLUSTER", "STOP"]
    check(notify.call("MASTER"))
    holder = subprocess.Popen(["sleep", "600"], cwd=notify.mount_point)
    try:
        check(run(str(notify.script), *argv[1:], env=notify.env()))
        assert notify.source() is None
        assert holder.wait(timeout=10) == -9
        assert notify.journal()[-1].split()[0] == "STOP"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_master_without_the_vip_does_not_mount(notify: Notify, namespaces) -> None:
    """A MASTER call while the VIP is not on the interface is stale: no mount, non-zero."""
    r = dataclasses.replace(notify, netns=namespaces["bare"]).call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None
    check(notify.call("MASTER"))  # with the VIP it mounts
    assert notify.source() == notify.volume.device
    check(notify.call("BACKUP"))


def test_unknown_state_fails_and_changes_nothing(notify: Notify) -> None:
    r = notify.call("SLEEPING")
    assert r.returncode != 0
    assert notify.source() is None and notify.journal() == []
    check(notify.call("MASTER"))
    assert notify.call("").returncode != 0
    assert notify.source() == notify.volume.device
    assert [line.split()[0] for line in notify.journal()] == ["MASTER"]
    check(notify.call("BACKUP"))


def test_no_mount_when_ceph_cannot_be_asked(notify: Notify) -> None:
    """The fence cannot be completed without Ceph: the MASTER call does not mount."""
    (notify.state_dir.parent / "ceph-double" / "unreachable").touch()
    r = notify.call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None


ORDERS = [("BACKUP", "MASTER"), ("MASTER", "BACKUP")]


def _prepare(notify: Notify, first: str) -> None:
    """Start from the state the first call changes: it has real work to do."""
    if first == "BACKUP":
        check(notify.call("MASTER"))
    assert (notify.source() is not None) == (first == "BACKUP")


@pytest.mark.parametrize(("first", "last"), ORDERS)
def test_stale_call_getting_the_lock_late_does_not_undo(
    notify: Notify, first: str, last: str
) -> None:
    """The worst order, forced: both calls are journaled while the lock is held here; the
    first one is frozen, so the newer one takes the lock and acts; then the stale one runs."""
    _prepare(notify, first)
    before = len(notify.journal())
    notify.state_dir.mkdir(exist_ok=True)
    with open(notify.state_dir / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stale = notify.start(first)
        wait_for(lambda: len(notify.journal()) == before + 1, f"{first} to be journaled")
        os.killpg(stale.pid, signal.SIGSTOP)  # the script and its flock child
        newer = notify.start(last)
        wait_for(lambda: len(notify.journal()) == before + 2, f"{last} to be journaled")
        assert newer.poll() is None  # waiting for the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
    out_newer, _ = newer.communicate(timeout=60)
    assert newer.returncode == 0, out_newer
    assert (notify.source() == notify.volume.device) == (last == "MASTER"), out_newer
    os.killpg(stale.pid, signal.SIGCONT)
    out_stale, _ = stale.communicate(timeout=60)
    assert stale.returncode == 0, out_stale
    assert (notify.source() == notify.volume.device) == (last == "MASTER"), out_stale
    check(notify.call("BACKUP"))


@pytest.mark.parametrize(("first", "last"), ORDERS)
def test_calls_nearly_at_once_end_in_the_last_state(notify: Notify, first: str, last: str) -> None:
    """No help from the test: the second call starts as soon as the first is journaled."""
    _prepare(notify, first)
    before = len(notify.journal())
    a = notify.start(first)
    wait_for(lambda: len(notify.journal()) > before, f"{first} to be journaled", timeout=10)
    b = notify.start(last)
    out_a, _ = a.communicate(timeout=60)
    out_b, _ = b.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, (out_a, out_b)
    assert [line.split()[0] for line in notify.journal()[before:]] == [first, last]
    assert (notify.source() == notify.volume.device) == (last == "MASTER"), (out_a, out_b)
    check(notify.call("BACKUP"))


def test_something_else_mounted_there_is_left_alone(notify: Notify, tmp_path: Path) -> None:
    """A bind mount of a plain directory on the mount point is not the volume: BACKUP must not
    unmount it nor kill its users. Run in its own mount and PID namespaces, so that even a
    broken script's `fuser -k` could only reach the processes of this test."""
    other = tmp_path / "not-the-volume"
    other.mkdir()
    notify.mount_point.mkdir(parents=True)
    scenario = r"""
        mount --bind "$OTHER" "$MNT" || exit 10
        sleep 600 3>>"$MNT/held.log" &
        holder=$!
        "$SCRIPT" INSTANCE REPO_CLUSTER BACKUP 100 || exit 11
        kill -0 "$holder" || exit 12
        [ "$(findmnt -n -o TARGET --mountpoint "$MNT")" = "$MNT" ] || exit 13
        "$SCRIPT" INSTANCE REPO_CLUSTER MASTER 100 || exit 14
        [ "$(findmnt -n -o SOURCE --mountpoint "$MNT" | tail -n 1)" = "$DEV" ] || exit 15
        "$SCRIPT" INSTANCE REPO_CLUSTER FAULT 100 || exit 16
        kill -0 "$holder" || exit 17
        exit 0
    """
    env = {
        **notify.env(),
        "OTHER": str(other),
        "MNT": str(notify.mount_point),
        "SCRIPT": str(notify.script),
        "DEV": notify.volume.device,
    }
    r = run(
        "nsenter",
        f"--net=/run/netns/{notify.netns}",
        "--",
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "bash",
        "-c",
        scenario,
        env=env,
    )
    assert r.returncode == 0, f"step exit {r.returncode}: {r.stdout}{r.stderr}"
    assert (other / "held.log").exists()


def test_the_bare_mount_point_takes_no_write(notify: Notify) -> None:
    """Unmounted, the mount point is immutable: a backup written there fails at once instead of
    filling the system disk; mounted, the volume takes writes as ever."""
    check(notify.call("MASTER"))
    (notify.mount_point / "on-the-volume").write_text("ok\n")
    check(notify.call("BACKUP"))
    assert notify.source() is None
    with pytest.raises(PermissionError):
        (notify.mount_point / "lost-backup.vbk").write_text("would land on the system disk\n")
    check(notify.call("MASTER"))
    assert (notify.mount_point / "on-the-volume").read_text() == "ok\n"
    (notify.mount_point / "job.vbk").write_text("backup\n")


def test_volume_check_fails_only_for_a_master_without_the_volume(notify: Notify) -> None:
    chk = notify.script.with_name("chk-volume.sh")

    def volume_check(netns: str) -> int:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", str(chk)]
        return run(*argv, env=notify.env()).returncode

    bare = notify.netns.replace("-vip", "-bare")
    assert volume_check(bare) == 0  # no VIP here: not the MASTER, nothing to check
    assert volume_check(notify.netns) != 0  # the VIP, no volume: leave MASTER
    check(notify.call("MASTER"))
    assert volume_check(notify.netns) == 0
    check(notify.call("STOP"))
    assert volume_check(notify.netns) != 0
    (notify.state_dir.parent / "ceph-double" / "unreachable").touch()
    assert volume_check(bare) == 0  # Ceph cannot be asked: no evidence, no failover
    (notify.state_dir.parent / "ceph-double" / "unreachable").unlink()
    (notify.state_dir.parent / "ceph-double" / "fenced").touch()
    assert volume_check(bare) != 0  # Ceph lists no client of this node: fenced, leave


def _retriers(notify: Notify) -> list[int]:
    r = run("pgrep", "-f", str(notify.script))
    return [int(p) for p in r.stdout.split()]


@pytest.fixture
def busy(notify: Notify) -> Iterator[Path]:
    """The volume mounted, with a file system mounted inside it: its unmount fails (EBUSY)
    and no process holds it, as a node whose write in flight waits for unreachable storage.
    Unmounting the inner file system is the storage coming back."""
    check(notify.call("MASTER"))
    inner = notify.mount_point / "inner"
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "busy", str(inner)], check=True)
    try:
        yield inner
    finally:
        run("umount", str(inner))
        for pid in _retriers(notify):
            os.kill(pid, signal.SIGKILL)


def test_a_failed_release_keeps_trying_until_it_succeeds(notify: Notify, busy: Path) -> None:
    r = notify.call("FAULT")
    assert r.returncode == 1
    assert notify.source() == notify.volume.device  # could not release: still mounted
    log = notify.state_dir / "log"
    assert "FAILED to unmount" in log.read_text()
    wait_for(lambda: "trying again every 2s" in log.read_text(), "the background retry", 5)
    assert _retriers(notify)
    time.sleep(3)
    assert notify.source() == notify.volume.device  # still busy: still mounted
    subprocess.run(["umount", str(busy)], check=True)
    wait_for(lambda: notify.source() is None, "the background retry to release", 15)
    wait_for(lambda: not _retriers(notify), "the retry to end once released", 10)
    assert log.read_text().endswith(f"unmounted {notify.mount_point}\n")
    check(notify.call("FAULT"))  # nothing mounted now: a later call is fine


def test_a_failed_release_stops_trying_once_keepalived_reports_master(
    notify: Notify, busy: Path
) -> None:
    assert notify.call("BACKUP").returncode == 1
    assert _retriers(notify)
    check(notify.call("MASTER"))  # the newest state: the volume is this node's again
    wait_for(lambda: not _retriers(notify), "the retry to stop at MASTER", 10)
    subprocess.run(["umount", str(busy)], check=True)
    time.sleep(3)
    assert notify.source() == notify.volume.device  # nobody released the MASTER's volume
    assert "keepalived reports MASTER: no more tries" in (notify.state_dir / "log").read_text()
    check(notify.call("BACKUP"))
