"""The notify script: shellcheck and bash -n accept it, and run for real (as root) against an
XFS volume on a loop device. On MASTER it fences the other nodes' Ceph clients, maps the image
(through the rendered rbd unit) and mounts it; on BACKUP/FAULT/STOP it releases: unmounts and
unmaps. Calls are serialized and end in the state keepalived reported last. Ceph itself is a
test double here (see the doubles below); the volume check runs against the same setup."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.bundle import PATHS, Secrets, render_node
from components.bundle.build import RELEASE_TIMING
from tests.render.renderkit import AUTHORIZED, VARIANT_IDS, Volume, run, variant

pytestmark = pytest.mark.render

SPEC = "rbd/veeamrepo"  # the sim stack's pool/image
RBD_UNIT = PATHS.rbd_unit("veeamrepo")
NODE = "198.18.50.161"  # repo1: the node these tests run as
PEER = "198.18.50.162:0/7"  # an instance of repo2's Ceph client
PEER_LOCKER = "client.4207"
FOREIGN = "198.18.50.9:0/9"  # a client that is not one of the stack's nodes
FOREIGN_LOCKER = "client.4309"
BLOCKLIST_SECONDS = RELEASE_TIMING.blocklist_seconds


# ----------------------------------------------------------------------------- static checks


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
def test_check_scripts_are_shellcheck_clean_and_sshd_asks_the_node_itself(
    vid, renders, tmp_path
) -> None:
    for node, bundle in renders[vid].bundles.items():
        f = bundle.file(PATHS.sshd_check)
        assert f.mode == 0o755 and f.content.startswith(b"#!/bin/bash\n")
        ip = str(renders[vid].settings.node(node).ip)
        assert f"/dev/tcp/{ip}/22".encode() in f.content
        for script in PATHS.check_scripts:
            path = tmp_path / f"{node}-{Path(script).name}"
            path.write_bytes(bundle.file(script).content)
            assert bundle.file(script).mode == 0o755
            r = run("bash", "-n", str(path))
            assert r.returncode == 0, r.stderr
            r = run("shellcheck", "--shell=bash", "--severity=style", str(path))
            assert r.returncode == 0, r.stdout


def test_sshd_check_fails_without_an_ssh_banner(renders, tmp_path) -> None:
    """The rendered check, run for real against 127.0.0.1 instead of the node's address: an
    SSH banner passes; a listener that stays silent fails after the banner wait; no listener
    fails at once."""
    rendered = renders["sim-el7"].bundles["repo1"].file(PATHS.sshd_check).content.decode()
    assert "/dev/tcp/198.18.50.161/22" in rendered
    wait = RELEASE_TIMING.sshd_banner_wait

    def check(port: int) -> tuple[int, float]:
        script = tmp_path / f"chk-sshd-{port}"
        script.write_text(
            rendered.replace("/dev/tcp/198.18.50.161/22", f"/dev/tcp/127.0.0.1/{port}")
        )
        script.chmod(0o755)
        start = time.monotonic()
        rc = run(str(script)).returncode
        return rc, time.monotonic() - start

    for banner, want in ((b"SSH-2.0-OpenSSH_9.2\r\n", 0), (b"", 1)):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def serve(srv=srv, banner=banner) -> None:
            conn, _ = srv.accept()
            conn.sendall(banner)
            threading.Event().wait(wait + 2)  # silent: longer than the check waits
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        rc, took = check(port)
        assert (rc == 0) == (want == 0), (banner, port, rc)
        assert took < wait + 1.5, (banner, took)
        srv.close()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    closed = srv.getsockname()[1]
    srv.close()
    rc, took = check(closed)
    assert rc != 0 and took < 2


# ----------------------------------------------------------------------------- the Ceph doubles
# Test doubles of the CLIs the notify script and the rbd unit run, for this tier only: these
# tests are about the script's decisions (fence, map, mount, release, ordering) on a real XFS
# on a loop device, without a Ceph cluster. The real fence runs against the lab's real Ceph:
# the fence drills of the lab tier. The doubles answer in the CLIs' own formats, and keep
# their state in the directory beside them:
#   conf                 SYSFS, DEVDIR, LOOP (a file, not the environment: systemd runs the
#                        unit's ExecStart in a clean one)
#   calls                every call, "TOOL ARGV..." one a line
#   blocklist            the OSD blocklist, "ADDR SECONDS" one a line
#   nonce                the last client instance's nonce (each map: a new instance, noshare)
#   broken               the instances of this node whose lock was broken
#   omap/OBJECT/KEY      each object's omap (the rank's records), the value as written
#   records              each record written or removed, with the caller's rank bits then
#   units/               the rendered rbd unit, whose ExecStart `systemctl start|restart` runs
# and these markers, which tests create:
#   unreachable          Ceph does not answer: every cluster command fails (a forced unmap,
#                        kernel-only, still works)
#   peer-watcher         repo2's instance PEER has the image open (until it is blocklisted)
#   peer-lock            ... and holds its lock (until `lock rm`, or a map after its fence)
#   peer-releasing       ... and unmaps gracefully right after a `lock ls` listed its lock
#   foreign-watcher      the foreign client FOREIGN has the image open
#   foreign-lock         ... and holds its lock
#   no-exclusive-lock    the image lacks the exclusive-lock feature: `map -o exclusive` fails
#   unmap-fails          the kernel refuses every unmap, forced or not (EBUSY)
#   rados-down           rados alone gets no answer (the rank cannot be read nor recorded)

DOUBLE_HEAD = r"""#!/bin/bash
D="$(dirname "$(readlink -f "$0")")"
# shellcheck source=/dev/null
. "$D/conf"
printf '%s %s\n' "$(basename "$0")" "$*" >>"$D/calls"
fail() {
    local rc="$1"
    shift
    printf '%s\n' "$@" >&2
    exit "$rc"
}
down() { [ -e "$D/unreachable" ]; }
listed() { cut -d' ' -f1 "$D/blocklist" 2>/dev/null | grep -qxF -- "$1"; }
"""

RBD_DOUBLE = (
    DOUBLE_HEAD
    + r"""
SPEC=rbd/veeamrepo
PEER=198.18.50.162:0/7
FOREIGN=198.18.50.9:0/9
args=()
opts=""
break_lock=""
expire=""
while [ $# -gt 0 ]; do
    case "$1" in
        --id) shift ;;
        -o) opts="${2:-}"; shift ;;
        --rbd_blocklist_on_break_lock=*) break_lock="${1#*=}" ;;
        --rbd_blocklist_expire_seconds=*) expire="${1#*=}" ;;
        *) args+=("$1") ;;
    esac
    shift
done
unreachable() { fail 110 "rbd: couldn't connect to the cluster!"; }
noimage() { fail 2 "rbd: error opening image: (2) No such file or directory"; }
# as the kernel refuses: sysfail ERRNO OPERATION MESSAGE
sysfail() { fail "$1" "rbd: sysfs write failed" "rbd: $2 failed: ($1) $3"; }

# the kernel's mappings of the image (sysfs ids), and their client instances
mappings() {
    local d
    for d in "$SYSFS"/*; do
        [ -r "$d/name" ] && [ "$(cat "$d/pool")/$(cat "$d/name")" = "$SPEC" ] && echo "${d##*/}"
    done
}
instances() { local n; for n in $(mappings); do cat "$SYSFS/$n/client_addr"; done; }
locker_of() { echo "client.$((4100 + ${1##*/}))"; }
broken() { grep -qxF -- "$1" "$D/broken" 2>/dev/null; }

# "ADDR LOCKER" per line: who has the image open (a blocklisted instance's watch is gone)
watchers() {
    local a
    for a in $(instances); do listed "$a" || echo "$a $(locker_of "$a")"; done
    if [ -e "$D/peer-watcher" ] || [ -e "$D/peer-lock" ]; then
        listed "$PEER" || echo "$PEER client.4207"
    fi
    if [ -e "$D/foreign-watcher" ] || [ -e "$D/foreign-lock" ]; then
        echo "$FOREIGN client.4309"
    fi
}
# "LOCKER ADDR" per line: the image's exclusive lock (a blocklisted owner keeps it until broken)
locks() {
    local a
    [ -e "$D/peer-lock" ] && echo "client.4207 $PEER"
    [ -e "$D/foreign-lock" ] && echo "client.4309 $FOREIGN"
    a="$(instances | head -n 1)"
    [ -n "$a" ] && ! broken "$a" && echo "$(locker_of "$a") $a"
}

case "${args[0]:-} ${args[1]:-}" in
    "status $SPEC")
        down && unreachable
        w="$(watchers)"
        if [ -z "$w" ]; then
            echo "Watchers: none"
        else
            echo "Watchers:"
            while read -r a g; do
                printf '\twatcher=%s %s cookie=18446462598732840961\n' "$a" "$g"
            done <<<"$w"
        fi
        ;;
    "lock ls")
        down && unreachable
        [ "${args[2]:-}" = "$SPEC" ] || noimage
        l="$(locks)"
        [ -n "$l" ] || exit 0
        n="$(wc -l <<<"$l")"
        if [ "$n" = 1 ]; then
            echo "There is 1 exclusive lock on this image."
        else
            echo "There are $n exclusive locks on this image."
        fi
        printf '%-14s %-24s %s\n' Locker ID Address
        while read -r g a; do printf '%-14s %-24s %s\n' "$g" "auto 123" "$a"; done <<<"$l"
        if [ -e "$D/peer-releasing" ]; then
            rm -f "$D/peer-lock" "$D/peer-watcher" "$D/peer-releasing"
        fi
        ;;
    "lock rm")
        down && unreachable
        [ "${args[2]:-}" = "$SPEC" ] || noimage
        nolock() { fail 2 "rbd: releasing lock failed: (2) No such file or directory"; }
        [ "${args[3]:-}" = "auto 123" ] || nolock
        addr="$(locks | awk -v l="${args[4]:-}" '$1 == l { print $2 }')"
        [ -n "$addr" ] || nolock
        # librbd blocklists the owner first, then breaks its lock
        [ "$break_lock" = true ] && echo "$addr ${expire:-3600}" >>"$D/blocklist"
        case "$addr" in
            "$PEER") rm -f "$D/peer-lock" ;;
            "$FOREIGN") rm -f "$D/foreign-lock" ;;
            *) echo "$addr" >>"$D/broken" ;;
        esac
        ;;
    "info $SPEC")
        down && unreachable
        features="layering, exclusive-lock, object-map, fast-diff, deep-flatten"
        [ -e "$D/no-exclusive-lock" ] && features="layering"
        printf '%s\n' "rbd image 'veeamrepo':" $'\tsize 320 MiB in 80 objects' \
            $'\torder 22 (4 MiB objects)' $'\tid: 5e6f7a8b9c0d' $'\tformat: 2' \
            $'\tfeatures: '"$features" $'\top_features: ' $'\tflags: '
        ;;
    "map $SPEC")
        down && unreachable
        case ",$opts," in
            *,exclusive,*)
                [ -e "$D/no-exclusive-lock" ] && sysfail 22 map "Invalid argument"
                # a live owner of the lock never hands it over to an exclusive mapping; the
                # lock of a blocklisted one the kernel breaks
                while read -r g a; do
                    [ -n "$g" ] || continue
                    listed "$a" && continue
                    sysfail 30 map "Read-only file system"
                done <<<"$(locks)"
                listed "$PEER" && rm -f "$D/peer-lock"
                ;;
        esac
        nonce=$(($(cat "$D/nonce" 2>/dev/null || echo 0) + 1))
        echo "$nonce" >"$D/nonce"
        n=0
        while [ -e "$SYSFS/$n" ]; do n=$((n + 1)); done
        mkdir -p "$SYSFS/$n"
        echo rbd >"$SYSFS/$n/pool"
        echo veeamrepo >"$SYSFS/$n/name"
        echo "198.18.50.161:0/$nonce" >"$SYSFS/$n/client_addr"
        # the block device's numbers, as krbd shows them (here: the loop device's)
        read -r major minor <<<"$(stat -L -c '%t %T' "$LOOP")"
        echo "$((16#$major))" >"$SYSFS/$n/major"
        echo "$((16#$minor))" >"$SYSFS/$n/minor"
        ln -s "$LOOP" "$DEVDIR/rbd$n"
        echo "/dev/rbd$n"
        ;;
    "unmap "*)
        target="${args[1]}"
        n=""
        case "$target" in
            "$SPEC") n="$(mappings | head -n 1)" ;;
            */rbd[0-9]*) n="${target##*/rbd}" ;;
        esac
        if [ -z "$n" ] || [ ! -d "$SYSFS/$n" ]; then
            fail 22 "rbd: $target: not a mapped image or snapshot"
        fi
        case ",$opts," in
            *,force,*) ;;
            *)
                down && sysfail 110 unmap "Connection timed out"
                [ -n "$(findmnt -rn -S "$LOOP")" ] && sysfail 16 unmap "Device or resource busy"
                ;;
        esac
        [ -e "$D/unmap-fails" ] && sysfail 16 unmap "Device or resource busy"
        rm -rf "${SYSFS:?}/$n"
        rm -f "$DEVDIR/rbd$n"
        ;;
    *) fail 22 "rbd double: unexpected: ${args[*]}" ;;
esac
exit 0
"""
)

CEPH_DOUBLE = (
    DOUBLE_HEAD
    + r"""
down && fail 1 "[errno 110] RADOS timed out (error connecting to the cluster)"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --id | --connect-timeout) shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
case "${args[*]:0:3}" in
    "osd blocklist add")
        [ -n "${args[3]:-}" ] || fail 22 "Invalid command: missing required parameter addr"
        echo "${args[3]} ${args[4]:-3600}" >>"$D/blocklist"
        echo "blocklisting ${args[3]} until (in ${args[4]:-3600} s)" >&2
        ;;
    *) fail 22 "ceph double: unexpected: ${args[*]}" ;;
esac
"""
)

# The omap of each object: omap/OBJECT/KEY, the value as written (the rank's records).
RADOS_DOUBLE = (
    DOUBLE_HEAD
    + r"""
{ down || [ -e "$D/rados-down" ]; } && fail 1 "failed to fetch mon config (--no-mon-config to skip)"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --id) shift ;;
        -p)
            [ "${2:-}" = rbd ] || fail 2 "error opening pool ${2:-}: (2) No such file or directory"
            shift
            ;;
        *) args+=("$1") ;;
    esac
    shift
done
obj="$D/omap/${args[1]:-}"
key="${args[2]:-}"
where="rbd/${args[1]:-}/$key"
noent="(2) No such file or directory"
bits() { (shopt -s nullglob && cd "$STATE" && echo rank.[0-9]*); }
case "${args[0]:-}" in
    getomapval)
        [ -d "$obj" ] || fail 1 "error getting omap value $where: $noent"
        # as rados: this one on its standard output
        [ -e "$obj/$key" ] || { echo "No such key: $where" && exit 1; }
        [ "${args[3]:-}" = - ] || fail 22 "rados double: only - as the output file"
        echo "Writing to -" >&2
        cat "$obj/$key"
        ;;
    setomapval)
        [ -e "$D/rados-down" ] && fail 1 "failed to fetch mon config (--no-mon-config to skip)"
        mkdir -p "$obj"
        printf '%s' "${args[3]:-}" >"$obj/$key"
        # the rank bits the caller had set when it wrote its record
        echo "set $key ${args[3]:-} bits:$(bits)" >>"$D/records"
        ;;
    rmomapkey)
        [ -d "$obj" ] || fail 1 "error removing omap key $where: $noent"
        rm -f "$obj/$key"
        echo "rm $key bits:$(bits)" >>"$D/records"
        ;;
    *) fail 22 "rados double: unexpected: ${args[*]}" ;;
esac
"""
)

SYSTEMCTL_DOUBLE = (
    DOUBLE_HEAD
    + r"""
case "${1:-}" in
    start | restart) ;;
    *) exit 0 ;;
esac
unit="${2:-}"
case "$unit" in
    rbd-*.service) ;;
    *) exit 0 ;;
esac
[ -r "$D/units/$unit" ] || fail 5 "Failed to start $unit: Unit $unit not found."
read -ra argv <<<"$(sed -n 's/^ExecStart=//p' "$D/units/$unit")"
# never the host's own rbd
[ "${argv[0]:-}" = /usr/bin/rbd ] || fail 1 "systemctl double: ExecStart is not /usr/bin/rbd"
argv[0]="$D/rbd"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${argv[@]}" >/dev/null 2>>"$D/unit.log" ||
    fail 1 "Job for $unit failed because the control process exited with error code."
"""
)

DOUBLES = {
    "rbd": RBD_DOUBLE,
    "ceph": CEPH_DOUBLE,
    "rados": RADOS_DOUBLE,
    "systemctl": SYSTEMCTL_DOUBLE,
}


def test_the_doubles_are_shellcheck_clean(tmp_path) -> None:
    for tool, text in DOUBLES.items():
        path = tmp_path / tool
        path.write_text(text)
        r = run("bash", "-n", str(path))
        assert r.returncode == 0, (tool, r.stderr)
        r = run("shellcheck", "--shell=bash", "--severity=style", str(path))
        assert r.returncode == 0, (tool, r.stdout)


# ----------------------------------------------------------------------------- the setup


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
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


def verb(line: str) -> str:
    """A recorded call without its --id/--connect-timeout and options: "rbd map",
    "rbd lock rm", "ceph osd blocklist add", "systemctl restart"..."""
    tool, *words = line.split()
    rest: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("--id", "--connect-timeout", "-o", "-p"):
            skip = True
        elif not w.startswith("-"):
            rest.append(w)
    if tool == "rbd":
        return " ".join([tool, *rest[:2]]) if rest[:1] == ["lock"] else f"{tool} {rest[0]}"
    if tool == "ceph":
        return " ".join([tool, *rest[:3]])
    return f"{tool} {rest[0]}" if rest else tool


@dataclass
class Notify:
    script: Path
    check_script: Path
    state_dir: Path
    mount_point: Path
    volume: Volume
    doubles: Path
    sysfs: Path
    devdir: Path
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
        # BLKID_FILE: a private blkid cache. Without udev, blkid trusts the shared cache for
        # 2 s after a probe, so a loop device reused by the previous test would still carry
        # its old label there. PATH: the doubles first (see the doubles above).
        return {
            **os.environ,
            "PATH": f"{self.doubles}:{os.environ['PATH']}",
            "KEEPALIVEDNOTIFY_STATE_DIR": str(self.state_dir),
            "KEEPALIVEDNOTIFY_RBD_SYSFS": str(self.sysfs),
            "KEEPALIVEDNOTIFY_DEV": str(self.devdir),
            "KEEPALIVEDNOTIFY_RANK_CONF": str(self.script.parent / "rank.conf"),
            "BLKID_FILE": str(self.doubles.parent / "blkid.tab"),
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

    def volume_check(self, netns: str | None = None) -> int:
        argv = ["nsenter", f"--net=/run/netns/{netns or self.netns}", "--", str(self.check_script)]
        return run(*argv, env=self.env()).returncode

    def source(self) -> str | None:
        """The device mounted on the mount point (the top mount), or None."""
        r = run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(self.mount_point))
        return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else None

    def mounted(self) -> bool:
        return self.source() == self.volume.device

    def journal(self) -> list[str]:
        path = self.state_dir / "states"
        return path.read_text().splitlines() if path.exists() else []

    def log(self) -> str:
        path = self.state_dir / "log"
        return path.read_text() if path.exists() else ""

    def promoting(self) -> str | None:
        path = self.state_dir / "promoting"
        return path.read_text().strip() if path.exists() else None

    def calls(self) -> list[str]:
        path = self.doubles / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def verbs(self, since: int = 0) -> list[str]:
        return [verb(line) for line in self.calls()[since:]]

    def blocklist(self) -> list[str]:
        path = self.doubles / "blocklist"
        return path.read_text().splitlines() if path.exists() else []

    def mappings(self) -> list[str]:
        """The client instance of each mapping of the image, as the kernel (sysfs) shows it."""
        return [
            (d / "client_addr").read_text().strip()
            for d in sorted(self.sysfs.iterdir())
            if (d / "name").exists() and (d / "name").read_text().strip() == "veeamrepo"
        ]

    def mark(self, marker: str, present: bool = True) -> None:
        if present:
            (self.doubles / marker).touch()
        else:
            (self.doubles / marker).unlink()

    def retriers(self) -> list[int]:
        r = run("pgrep", "-f", str(self.script))
        return [int(p) for p in r.stdout.split()]


@pytest.fixture
def notify(tmp_path: Path, xfs_volume: Volume, namespaces: dict[str, str]) -> Iterator[Notify]:
    mount_point = tmp_path / "mnt" / "veeamrepo"
    s = variant("sim", "el7", mountPoint=str(mount_point), xfsLabel=xfs_volume.label)
    assert (str(s.vip.ip), s.interface) == ("198.18.50.160", "ens160")
    assert (s.rbd_pool, s.rbd_image, s.ceph_user) == ("rbd", "veeamrepo", "veeamrepo")
    assert [str(n.ip) for n in s.nodes] == [NODE, PEER.split(":")[0]]
    bundle = render_node(s, s.nodes[0], Secrets.resolve(s, vrrp_auth_pass="x"), AUTHORIZED)
    script = tmp_path / "keepalivednotify.sh"
    script.write_bytes(bundle.file(PATHS.notify_script).content)
    script.chmod(0o755)
    (tmp_path / "rank.conf").write_bytes(bundle.file(PATHS.rank_conf).content)
    check_script = tmp_path / "chk-volume.sh"
    check_script.write_bytes(bundle.file(PATHS.volume_check).content)
    check_script.chmod(0o755)
    doubles, sysfs, devdir = tmp_path / "doubles", tmp_path / "sysfs", tmp_path / "dev"
    for d in (doubles / "units", sysfs, devdir):
        d.mkdir(parents=True)
    (doubles / "units" / RBD_UNIT).write_bytes(bundle.file(PATHS.unit_file(RBD_UNIT)).content)
    (doubles / "conf").write_text(
        f"SYSFS={shlex.quote(str(sysfs))}\n"
        f"DEVDIR={shlex.quote(str(devdir))}\n"
        f"LOOP={shlex.quote(xfs_volume.device)}\n"
        f"STATE={shlex.quote(str(tmp_path / 'state'))}\n"
    )
    for tool, text in DOUBLES.items():
        (doubles / tool).write_text(text)
        (doubles / tool).chmod(0o755)
    n = Notify(
        script,
        check_script,
        tmp_path / "state",
        mount_point,
        xfs_volume,
        doubles,
        sysfs,
        devdir,
        namespaces["vip"],
    )
    try:
        yield n
    finally:
        for pid in n.retriers():
            with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
                os.kill(pid, signal.SIGKILL)
        run("chattr", "-i", str(mount_point))  # the bare mount point is immutable by design


def check(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"


MAP_CALL = (
    "rbd map -o exclusive,noshare,"
    f"osd_request_timeout={RELEASE_TIMING.osd_request_timeout} {SPEC} --id veeamrepo"
)


# ----------------------------------------------------------------------------- map and release


def test_master_maps_and_mounts_and_other_states_unmount_and_unmap(notify: Notify) -> None:
    assert not notify.mount_point.exists()
    check(notify.call("BACKUP"))  # from nothing: nothing to release, and never a map
    assert "rbd map" not in notify.verbs() and "systemctl restart" not in notify.verbs()
    assert notify.mappings() == [] and notify.source() is None
    check(notify.call("MASTER"))  # creates the mount point
    assert notify.mounted()
    assert MAP_CALL in notify.calls()  # the rendered unit's ExecStart, through systemctl
    assert notify.verbs().count("systemctl restart") == 1
    assert notify.mappings() == [f"{NODE}:0/1"]
    assert notify.promoting() is None  # done: no marker
    assert "fence: done (0 instance(s) fenced)" in notify.log()
    before = len(notify.calls())
    check(notify.call("MASTER"))  # already mounted: no second map nor mount
    assert notify.verbs(before) == [] and notify.mappings() == [f"{NODE}:0/1"]
    assert notify.mounted()
    (notify.mount_point / "backups").mkdir()
    (notify.mount_point / "backups" / "test.txt").write_text("written on MASTER\n")
    for releasing in ("BACKUP", "FAULT", "STOP"):
        before = len(notify.calls())
        check(notify.call(releasing))
        assert notify.source() is None, releasing
        assert notify.mappings() == [] and list(notify.devdir.iterdir()) == [], releasing
        made = notify.calls()[before:]
        assert made == [
            f"rbd unmap {notify.devdir}/rbd0",
            f"systemctl stop --no-block {RBD_UNIT}",
        ], releasing
        before = len(notify.calls())
        check(notify.call(releasing))  # nothing mounted nor mapped: still fine, no call
        assert notify.calls()[before:] == [], releasing
        check(notify.call("MASTER"))
        assert notify.mounted()
        assert len(notify.mappings()) == 1  # a new instance each map (noshare)
        # what the previous MASTER wrote is there after the failover
        assert (notify.mount_point / "backups" / "test.txt").read_text() == "written on MASTER\n"
    assert [v for v in notify.verbs() if v == "rbd map"] == ["rbd map"] * 4
    assert notify.mappings() == [f"{NODE}:0/4"]
    check(notify.call("BACKUP"))
    assert notify.mappings() == [] and notify.source() is None


def test_each_state_is_published_in_guestinfo_in_the_background(notify: Notify) -> None:
    """keepalived's state goes to the VM's guestinfo (the preflight orders a rolling replace by
    it) through VMware Tools' vmware-rpctool. A tool that hangs delays no call and holds no
    lock: the next call acts while it still hangs."""
    rpctool = notify.doubles / "vmware-rpctool"
    rpctool.write_text(
        DOUBLE_HEAD + '[ -e "$D/rpc-hangs" ] && echo $$ >"$D/rpc-pid" && exec sleep 60\nexit 0\n'
    )
    rpctool.chmod(0o755)
    key = PATHS.vrrp_state_guestinfo
    published = lambda: [c for c in notify.calls() if c.startswith("vmware-rpctool")]  # noqa: E731
    check(notify.call("MASTER"))
    wait_for(lambda: published(), "the MASTER state published")
    assert published() == [f"vmware-rpctool info-set {key} MASTER"]
    assert notify.mounted()

    (notify.doubles / "rpc-hangs").touch()
    check(notify.call("BACKUP"))  # returns, and released, while the tool hangs
    assert notify.source() is None
    pid_file = notify.doubles / "rpc-pid"
    wait_for(pid_file.exists, "the tool hanging")
    hanging = int(pid_file.read_text())
    lock = str(notify.state_dir / "lock")
    pid = hanging
    for _ in range(3):  # the tool, timeout, the subshell: none holds the notify lock
        try:
            fds = {os.path.realpath(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:  # gone (the script's own processes): holds nothing
            break
        assert lock not in fds, f"pid {pid} holds {lock}"
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid <= 1:
            break
    assert Path(f"/proc/{hanging}").exists(), "the tool stopped hanging before the next call"
    check(notify.call("MASTER"))  # takes the lock at once and acts
    assert notify.mounted()
    wait_for(lambda: len(published()) == 3, "the MASTER state published again")
    assert [c.rsplit(" ", 1)[1] for c in published()] == ["MASTER", "BACKUP", "MASTER"]
    with contextlib.suppress(ProcessLookupError):  # timeout 10 may have ended it
        os.kill(hanging, signal.SIGKILL)


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
        assert notify.source() is None and notify.mappings() == []
        assert holder.wait(timeout=10) == -9  # fuser -k: SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_keepalived_exec_stop_releases_the_volume(notify: Notify, renders) -> None:
    """The drop-in's ExecStop, run as systemd runs it before keepalived gets SIGTERM: the
    volume is released (unmounted, unmapped), its holder killed, while keepalived (and the
    VIP) would still be up."""
    dropin = renders["lab-el7"].bundles["repo1"].file(PATHS.keepalived_dropin).content.decode()
    argv = shlex.split([ln for ln in dropin.splitlines() if ln.startswith("ExecStop=")][-1][9:])
    assert argv == [PATHS.notify_script, "INSTANCE", "REPO_CLUSTER", "STOP"]
    check(notify.call("MASTER"))
    holder = subprocess.Popen(["sleep", "600"], cwd=notify.mount_point)
    try:
        check(run(str(notify.script), *argv[1:], env=notify.env()))
        assert notify.source() is None and notify.mappings() == []
        assert holder.wait(timeout=10) == -9
        assert notify.journal()[-1].split()[0] == "STOP"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_master_without_the_vip_does_not_map_nor_mount(notify: Notify, namespaces) -> None:
    """A MASTER call while the VIP is not on the interface is stale: no fence, no map, no
    mount, non-zero."""
    r = dataclasses.replace(notify, netns=namespaces["bare"]).call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None and notify.mappings() == []
    assert notify.calls() == []  # not even a question to Ceph
    assert "is not on ens160: NOT mounting" in notify.log()
    assert notify.promoting() == "failed"
    check(notify.call("MASTER"))  # with the VIP it maps and mounts
    assert notify.mounted()
    check(notify.call("BACKUP"))


def test_unknown_state_fails_and_changes_nothing(notify: Notify) -> None:
    r = notify.call("SLEEPING")
    assert r.returncode != 0
    assert notify.source() is None and notify.journal() == [] and notify.calls() == []
    check(notify.call("MASTER"))
    before = len(notify.calls())
    assert notify.call("").returncode != 0
    assert notify.mounted() and notify.calls()[before:] == []
    assert [line.split()[0] for line in notify.journal()] == ["MASTER"]
    check(notify.call("BACKUP"))


def test_no_map_nor_mount_when_ceph_cannot_be_asked(notify: Notify) -> None:
    """The fence cannot be completed without Ceph: the MASTER call maps nothing, mounts
    nothing, and says it failed."""
    notify.mark("unreachable")
    r = notify.call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None and notify.mappings() == []
    assert "rbd map" not in notify.verbs() and "systemctl restart" not in notify.verbs()
    assert f"rbd status {SPEC} failed" in notify.log()
    assert notify.promoting() == "failed"
    assert notify.volume_check() == 1


def test_a_leftover_mapping_is_unmapped_before_the_fence(notify: Notify) -> None:
    """A mapping left here (mapped, not mounted: a release that could not unmap) is an old
    instance: a MASTER call unmaps it before it asks Ceph anything, then maps afresh."""
    r = run(str(notify.doubles / "rbd"), "map", "-o", "exclusive,noshare", SPEC, env=notify.env())
    check(r)
    assert notify.mappings() == [f"{NODE}:0/1"] and notify.source() is None
    before = len(notify.calls())
    check(notify.call("MASTER"))
    assert notify.mounted()
    assert notify.mappings() == [f"{NODE}:0/2"]  # a new instance
    verbs = notify.verbs(before)
    assert verbs.index("rbd unmap") < min(verbs.index("rbd status"), verbs.index("rbd lock ls"))
    assert verbs.index("rbd unmap") < verbs.index("rbd map")
    assert "rbd lock rm" not in verbs and "ceph osd blocklist add" not in verbs
    assert notify.blocklist() == []  # its own old instance is gone, not fenced
    check(notify.call("BACKUP"))


def test_release_forces_the_unmap_when_ceph_does_not_answer(notify: Notify) -> None:
    """A graceful unmap needs Ceph (a fenced or cut-off client never completes one): the
    release falls back to a forced unmap."""
    check(notify.call("MASTER"))
    notify.mark("unreachable")
    before = len(notify.calls())
    check(notify.call("BACKUP"))
    assert notify.source() is None and notify.mappings() == []
    assert notify.calls()[before : before + 2] == [
        f"rbd unmap {notify.devdir}/rbd0",
        f"rbd unmap -o force {notify.devdir}/rbd0",
    ]


# ----------------------------------------------------------------------------- the fence


def test_fence_breaks_a_peer_lock_blocklisting_its_owner_before_the_map(notify: Notify) -> None:
    """repo2's instance holds the lock (a live master that lost the VIP, or a frozen one):
    librbd's lock break blocklists it for years, then breaks the lock; only then the map."""
    notify.mark("peer-lock")
    check(notify.call("MASTER"))
    assert notify.mounted()
    calls = notify.calls()
    verbs = [verb(line) for line in calls]
    lock_rm = calls[verbs.index("rbd lock rm")]
    assert shlex.split(lock_rm) == [
        "rbd",
        "--id",
        "veeamrepo",
        "lock",
        "rm",
        "--rbd_blocklist_on_break_lock=true",
        f"--rbd_blocklist_expire_seconds={BLOCKLIST_SECONDS}",
        SPEC,
        "auto",
        "123",
        PEER_LOCKER,
    ]
    assert verbs.index("rbd lock rm") < verbs.index("rbd map")
    assert verbs.count("rbd lock rm") == 1
    # the owner of the lock just broken is blocklisted by the break, not a second time
    assert "ceph osd blocklist add" not in verbs
    assert notify.blocklist() == [f"{PEER} {BLOCKLIST_SECONDS}"]
    assert not (notify.doubles / "peer-lock").exists()
    assert f"fence: {PEER_LOCKER} at {PEER} holds the lock" in notify.log()
    check(notify.call("BACKUP"))


def test_fence_blocklists_a_peer_watcher_without_the_lock_before_the_map(notify: Notify) -> None:
    notify.mark("peer-watcher")
    check(notify.call("MASTER"))
    assert notify.mounted()
    calls = notify.calls()
    verbs = [verb(line) for line in calls]
    add = calls[verbs.index("ceph osd blocklist add")]
    assert add.endswith(f" osd blocklist add {PEER} {BLOCKLIST_SECONDS}"), add
    assert verbs.index("ceph osd blocklist add") < verbs.index("rbd map")
    assert "rbd lock rm" not in verbs
    assert notify.blocklist() == [f"{PEER} {BLOCKLIST_SECONDS}"]
    check(notify.call("BACKUP"))


def test_fence_refuses_when_a_foreign_client_holds_the_lock(notify: Notify) -> None:
    """A client that is not one of the stack's nodes holds the lock (another tool, another
    cluster): never broken, never blocklisted; no map, no mount, and the node must leave
    MASTER (the volume check fails)."""
    notify.mark("foreign-lock")
    r = notify.call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None and notify.mappings() == []
    verbs = notify.verbs()
    assert "rbd map" not in verbs and "systemctl restart" not in verbs
    assert "rbd lock rm" not in verbs and "ceph osd blocklist add" not in verbs
    assert notify.blocklist() == [] and (notify.doubles / "foreign-lock").exists()
    assert f"{FOREIGN_LOCKER} at {FOREIGN}" in notify.log()
    assert "REFUSED" in notify.log()
    assert notify.promoting() == "failed"
    assert notify.volume_check() == 1


def test_fence_leaves_a_foreign_watcher_alone_and_mounts(notify: Notify) -> None:
    notify.mark("foreign-watcher")
    check(notify.call("MASTER"))
    assert notify.mounted()
    verbs = notify.verbs()
    assert "rbd lock rm" not in verbs and "ceph osd blocklist add" not in verbs
    assert notify.blocklist() == []
    assert FOREIGN not in "".join(notify.calls())
    check(notify.call("BACKUP"))


def test_a_mapping_without_the_expected_label_is_unmapped_not_mounted(notify: Notify) -> None:
    """The image holds no XFS with the stack's label (the wrong image, a reformatted one):
    nothing is mounted, and the mapping made for it goes."""
    subprocess.run(["xfs_admin", "-L", "otherlabel", notify.volume.device], check=True)
    r = notify.call("MASTER")
    assert r.returncode != 0
    assert "rbd map" in notify.verbs()
    assert notify.source() is None and notify.mappings() == []
    assert "rbd unmap" in notify.verbs()
    assert f"holds no XFS labelled {notify.volume.label}" in notify.log()
    assert notify.promoting() == "failed"


def test_fence_copes_with_a_peer_releasing_its_lock_meanwhile(notify: Notify) -> None:
    """The old master releases (FAULT: unmount, graceful unmap) while the new one fences: the
    lock listed a moment ago is gone when the fence breaks it. Nobody else can write any more:
    the promotion must go on (a next round reads the image again), not fail."""
    notify.mark("peer-releasing")
    notify.mark("peer-lock")
    check(notify.call("MASTER"))
    assert notify.mounted()


def test_an_image_without_exclusive_lock_is_refused_and_explained(notify: Notify) -> None:
    notify.mark("no-exclusive-lock")
    r = notify.call("MASTER")
    assert r.returncode != 0
    assert notify.source() is None and notify.mappings() == []
    assert list(notify.devdir.iterdir()) == []
    assert "rbd map" in notify.verbs() and "rbd info" in notify.verbs()
    assert f"rbd feature enable {SPEC} exclusive-lock" in notify.log()
    assert notify.promoting() == "failed"
    assert notify.volume_check() == 1


# ----------------------------------------------------------------------------- ordering

ORDERS = [("BACKUP", "MASTER"), ("MASTER", "BACKUP")]


def _prepare(notify: Notify, first: str) -> None:
    """Start from the state the first call changes: it has real work to do."""
    if first == "BACKUP":
        check(notify.call("MASTER"))
    assert (notify.source() is not None) == (first == "BACKUP")


def _ends_in(notify: Notify, last: str) -> bool:
    master = last == "MASTER"
    return notify.mounted() == master and bool(notify.mappings()) == master


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
    assert _ends_in(notify, last), out_newer
    os.killpg(stale.pid, signal.SIGCONT)
    out_stale, _ = stale.communicate(timeout=60)
    assert stale.returncode == 0, out_stale
    assert _ends_in(notify, last), out_stale
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
    assert _ends_in(notify, last), (out_a, out_b)
    check(notify.call("BACKUP"))


# ----------------------------------------------------------------------------- the mount point


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
        [ "$(findmnt -n -o SOURCE --mountpoint "$MNT" | tail -n 1)" != "$DEV" ] || exit 18
        [ "$(findmnt -n -o TARGET --mountpoint "$MNT")" = "$MNT" ] || exit 19
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
    assert notify.mappings() == []  # the FAULT unmapped the volume it had mounted
    assert "i" not in _attrs(other)  # not the bare mount point: never made immutable


def _attrs(path: Path) -> str:
    r = run("lsattr", "-d", str(path))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


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


def test_the_immutable_flag_never_lands_on_the_volume_root(notify: Notify) -> None:
    """chattr +i is for the bare directory only: the mounted volume's own root never gets it,
    whatever the cycles of releases and promotions."""
    check(notify.call("MASTER"))
    assert "i" not in _attrs(notify.mount_point)
    for releasing in ("BACKUP", "FAULT", "STOP", "BACKUP"):
        check(notify.call(releasing))
        assert notify.source() is None
        assert "i" in _attrs(notify.mount_point), releasing  # the bare directory
        check(notify.call(releasing))  # again, with nothing mounted
        check(notify.call("MASTER"))
        assert notify.mounted()
        assert "i" not in _attrs(notify.mount_point), releasing  # the volume's root
        check(notify.call("MASTER"))  # again, already mounted
        assert "i" not in _attrs(notify.mount_point), releasing
        (notify.mount_point / f"after-{releasing}").write_text("ok\n")
    check(notify.call("BACKUP"))


# ----------------------------------------------------------------------------- the volume check


def test_volume_check_fails_only_for_a_master_without_the_volume(
    notify: Notify, namespaces
) -> None:
    bare = namespaces["bare"]
    promoting = notify.state_dir / "promoting"
    notify.state_dir.mkdir(exist_ok=True)
    journal = notify.state_dir / "states"
    assert notify.volume_check() == 0  # keepalived reported nothing: nothing to check
    journal.write_text("MASTER 1\nBACKUP 2\n")
    assert notify.volume_check() == 0  # not the MASTER: it holds no mapping
    journal.write_text("BACKUP 2\nMASTER 3\n")
    assert notify.volume_check() == 1  # the MASTER, no volume: leave MASTER
    promoting.write_text(f"{int(time.time()) + 60}\n")
    assert notify.volume_check() == 0  # a MASTER call at work: wait for it
    promoting.write_text(f"{int(time.time()) - 1}\n")
    assert notify.volume_check() == 1  # past its budget, and nothing mounted
    promoting.write_text("failed\n")
    assert notify.volume_check() == 1  # the MASTER call failed
    journal.write_text("MASTER 3\nFAULT 4\n")
    assert notify.volume_check(bare) == 0  # no longer MASTER: nothing to check still
    journal.write_text("FAULT 4\nMASTER 5\n")
    promoting.write_text("garbage\n")
    assert notify.volume_check() == 1

    check(notify.call("MASTER"))
    assert promoting.exists() is False
    assert notify.volume_check() == 0  # mapped, mounted, readable
    before = len(notify.calls())
    notify.mark("unreachable")
    assert notify.volume_check() == 0  # it asks Ceph nothing: the read decides
    assert notify.calls()[before:] == []
    notify.mark("unreachable", present=False)
    promoting.write_text(f"{int(time.time()) - 1}\n")
    assert notify.volume_check() == 0  # an expired deadline: the volume decides
    promoting.write_text("failed\n")
    assert notify.volume_check() == 1  # mounted, but the promotion said it failed
    promoting.unlink()

    check(notify.call("STOP"))
    assert notify.volume_check() == 0  # STOP: not the MASTER any more
    journal.write_text("STOP 6\nMASTER 7\n")  # a MASTER without the volume
    assert notify.volume_check() == 1
    # the right file system mounted, but not through a mapping of the image
    subprocess.run(["mount", notify.volume.device, str(notify.mount_point)], check=True)
    try:
        assert notify.volume_check() == 1
    finally:
        subprocess.run(["umount", str(notify.mount_point)], check=True)


# ----------------------------------------------------------------------------- failed releases


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
        for pid in notify.retriers():
            os.kill(pid, signal.SIGKILL)


def test_a_failed_release_keeps_trying_until_it_succeeds(notify: Notify, busy: Path) -> None:
    r = notify.call("FAULT")
    assert r.returncode == 1
    assert notify.mounted() and notify.mappings()  # could not release: still mounted, mapped
    assert "FAILED to release" in notify.log()
    wait_for(lambda: "retrying every 2s" in notify.log(), "the background retry", 5)
    assert notify.retriers()
    time.sleep(3)
    assert notify.mounted() and notify.mappings()  # still busy: still mounted
    assert "rbd unmap" not in notify.verbs()  # never an unmap under a mounted file system
    subprocess.run(["umount", str(busy)], check=True)
    wait_for(lambda: notify.source() is None, "the background retry to release", 15)
    wait_for(lambda: not notify.retriers(), "the retry to end once released", 10)
    assert notify.mappings() == []
    assert f"unmounted {notify.mount_point}\n" in notify.log()
    assert notify.log().endswith(f"unmapped {notify.devdir}/rbd0\n")
    check(notify.call("FAULT"))  # nothing mounted now: a later call is fine


def test_a_failed_release_stops_trying_once_keepalived_reports_master(
    notify: Notify, busy: Path
) -> None:
    assert notify.call("BACKUP").returncode == 1
    assert notify.retriers()
    check(notify.call("MASTER"))  # the newest state: the volume is this node's again
    wait_for(lambda: not notify.retriers(), "the retry to stop at MASTER", 10)
    subprocess.run(["umount", str(busy)], check=True)
    time.sleep(3)
    assert notify.mounted() and notify.mappings()  # nobody released the MASTER's volume
    assert "keepalived reports MASTER: no more tries" in notify.log()
    check(notify.call("BACKUP"))


def test_a_release_that_cannot_unmap_keeps_trying(notify: Notify) -> None:
    """Unmounted, but the kernel keeps the mapping: the node is half-released, and the
    background retry goes on until the unmap succeeds."""
    check(notify.call("MASTER"))
    notify.mark("unmap-fails")
    assert notify.call("BACKUP").returncode == 1
    assert notify.source() is None and notify.mappings()
    assert "FAILED to unmap" in notify.log()
    wait_for(lambda: "retrying every 2s" in notify.log(), "the background retry", 5)
    time.sleep(2.5)
    assert notify.mappings() and notify.retriers()
    notify.mark("unmap-fails", present=False)
    wait_for(lambda: not notify.mappings(), "the background retry to unmap", 15)
    wait_for(lambda: not notify.retriers(), "the retry to end once unmapped", 10)
    assert notify.source() is None
    check(notify.call("BACKUP"))
