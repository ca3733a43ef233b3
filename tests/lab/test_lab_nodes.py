"""The sim lab's bare nodes, as Fabric and the Veeam side would meet them: real sshd reached
from the host, private directories and mounts per node, real keepalived under the lab's
systemctl, one XFS volume every node can see."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import pytest

from components.lab import Lab, node_exec, node_run
from tests.lab.labkit import (
    STACK,
    fab,
    ip_addrs,
    keepalived_conf,
    keyscan,
    node_pid_alive,
    rbd_unit,
    sh,
    ssh,
    wait_for,
    write_ceph_client,
)

pytestmark = pytest.mark.lab


def _sshd_pid(node_runtime: Path) -> int:
    return int((node_runtime / "run/sshd.pid").read_text().split()[0])


def test_each_node_has_its_nic_address_and_no_way_out(sim_lab: Lab) -> None:
    s = sim_lab.settings
    netns = sh("ip", "netns", "list").stdout
    host = sh("ip", "-4", "-o", "addr", "show", "dev", sim_lab.bridge).stdout
    assert f" {sim_lab.gateway} " in host, host
    for node in sim_lab.nodes:
        assert node.name in netns.split(), netns
        assert f" {node.address} " in ip_addrs(node.name, s.interface)
        routes = sh("ip", "-n", node.name, "route", "show").stdout
        assert "default" not in routes, routes
        assert sh("ip", "-n", node.name, "-6", "addr", "show").stdout.strip() == ""
        ipv6 = node_run(
            STACK,
            node.name,
            f"cat /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/{s.interface}"
            "/disable_ipv6",
        )
        assert ipv6.stdout.split() == ["1", "1"], ipv6
        resolv = node_exec(STACK, node.name, ["cat", "/etc/resolv.conf"]).stdout
        assert "nameserver 127.0.0.1" in resolv
        assert [x for x in resolv.splitlines() if x.startswith("nameserver")] == [
            "nameserver 127.0.0.1"
        ]
    # the host's legs of the lab: IPv6 off too, so no ND/MLD packet is ever sent
    for link in (sim_lab.bridge, *(n.veth for n in sim_lab.nodes)):
        host_v6 = Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6")
        if host_v6.exists():
            assert host_v6.read_text().strip() == "1", link
        assert "inet6" not in sh("ip", "-6", "addr", "show", "dev", link).stdout


def test_ssh_reaches_each_node_which_has_its_own_host_keys(sim_lab: Lab, known_hosts: Path) -> None:
    for node in sim_lab.nodes:
        out = ssh(sim_lab, node, known_hosts, "hostname")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == node.name
    first, second = (keyscan(n).split()[-1] for n in sim_lab.nodes[:2])
    assert first != second, "two freshly built nodes must not share a host key"


def test_node_directories_are_private(sim_lab: Lab) -> None:
    one, two = (n.name for n in sim_lab.nodes[:2])
    probe = "/etc/keepalived/lab-probe"
    node_exec(STACK, one, ["sh", "-c", f"echo {one} > {probe}"], check=True)
    try:
        assert node_exec(STACK, one, ["cat", probe]).stdout.strip() == one
        assert node_exec(STACK, two, ["test", "-e", probe]).returncode == 1
        assert not Path(probe).exists(), "a node's file showed up on the host"
    finally:
        node_exec(STACK, one, ["rm", "-f", probe])
    # the lab's systemctl is bound inside the nodes only
    host_systemctl = Path("/usr/bin/systemctl").read_bytes()
    assert host_systemctl.startswith(b"\x7fELF"), "the host's systemctl was replaced"
    assert sh("findmnt", "/usr/bin/systemctl").returncode == 1
    node_systemctl = node_exec(STACK, one, ["systemctl", "--version"]).stdout
    assert "lab stand-in" in node_systemctl


def test_a_node_sees_only_its_own_processes(sim_lab: Lab) -> None:
    """Each node has its own PID namespace and /proc, as a VM: the article's `killall -0 sshd`
    fails on a node whose sshd is stopped although the host's and the other node's run."""
    one, two = (n.name for n in sim_lab.nodes[:2])
    for node in (one, two):
        ps = node_exec(STACK, node, ["ps", "-e", "-o", "pid=,comm="], check=True).stdout
        rows = [ln.split() for ln in ps.splitlines()]
        assert rows[0] == ["1", "tini"], rows  # the node's init
        assert [r[1] for r in rows].count("sshd") >= 1, rows
        assert node_exec(STACK, node, ["pgrep", "-x", "tini"]).stdout.split() == ["1"]
    assert node_exec(STACK, one, ["systemctl", "stop", "ssh"]).returncode == 0
    try:
        assert sh("pgrep", "-x", "sshd").stdout.split(), "no sshd runs outside repo1 at all"
        assert node_exec(STACK, two, ["killall", "-0", "sshd"]).returncode == 0
        gone = node_exec(STACK, one, ["killall", "-0", "sshd"])
        assert gone.returncode == 1, f"repo1 sees an sshd that is not its own: {gone}"
        assert node_exec(STACK, one, ["pgrep", "-x", "sshd"]).stdout == ""
    finally:
        assert node_exec(STACK, one, ["systemctl", "start", "ssh"]).returncode == 0


def test_volume_mounted_in_one_node_is_invisible_elsewhere(sim_lab: Lab) -> None:
    s = sim_lab.settings
    one, two = (n.name for n in sim_lab.nodes[:2])
    mp = shlex.quote(s.mount_point)
    for node in (one, two):  # a plain empty directory, as on a freshly installed server
        # mountpoint(1): 32 = "not a mount point" (1 would be an error, e.g. no such dir)
        assert node_exec(STACK, node, ["mountpoint", "-q", s.mount_point]).returncode == 32
        assert node_exec(STACK, node, ["ls", "-A", s.mount_point]).stdout == ""
    # each node maps the image with its own Ceph client; only node one mounts it
    rbd, body = rbd_unit(sim_lab)
    unit = f"/etc/systemd/system/{rbd}"
    for node in (one, two):
        write_ceph_client(sim_lab, node)
        node_exec(STACK, node, ["tee", unit], input=body, check=True)
        started = node_exec(STACK, node, ["systemctl", "start", rbd])
        assert started.returncode == 0, started.stderr
    mount = node_run(STACK, one, f"mount -L {shlex.quote(s.xfs_label)} {mp}")
    assert mount.returncode == 0, mount.stderr
    try:
        seen = node_exec(STACK, one, ["findmnt", "-n", "-o", "FSTYPE,LABEL", s.mount_point])
        assert seen.stdout.split() == ["xfs", s.xfs_label], seen
        node_run(STACK, one, f"echo written-by-{one} > {mp}/probe", check=True)
        assert node_exec(STACK, two, ["findmnt", s.mount_point]).returncode == 1
        assert node_exec(STACK, two, ["ls", "-A", s.mount_point]).stdout == ""
        assert sh("findmnt", s.mount_point).returncode == 1, "the node's mount reached the host"
        # like `rbd unmap`, the rbd unit will not stop under a mounted volume
        busy = node_exec(STACK, one, ["systemctl", "stop", rbd])
        assert busy.returncode != 0 and "busy" in busy.stderr
    finally:
        node_run(STACK, one, f"umount {mp}")
    assert node_exec(STACK, one, ["findmnt", s.mount_point]).returncode == 1
    for node in (one, two):
        assert node_exec(STACK, node, ["systemctl", "stop", rbd]).returncode == 0
        assert node_exec(STACK, node, ["losetup", "--list", "--noheadings"]).stdout == ""
        node_exec(STACK, node, ["rm", "-f", unit])


def test_lab_systemctl_runs_real_keepalived(sim_lab: Lab) -> None:
    s = sim_lab.settings
    one, two = sim_lab.nodes[:2]
    conf = keepalived_conf(sim_lab, one, two)
    node_exec(STACK, one.name, ["tee", "/etc/keepalived/keepalived.conf"], input=conf, check=True)

    def ctl(*args: str) -> object:
        return node_exec(STACK, one.name, ["systemctl", *args])

    try:
        assert ctl("is-active", "keepalived").stdout.strip() == "inactive"
        assert ctl("is-enabled", "keepalived.service").returncode == 1
        assert ctl("enable", "--now", "keepalived").returncode == 0
        assert ctl("is-enabled", "keepalived").stdout.strip() == "enabled"
        active = ctl("is-active", "keepalived")
        assert active.returncode == 0 and active.stdout.strip() == "active"
        status = ctl("status", "keepalived")
        assert status.returncode == 0 and "active (running)" in status.stdout
        pid = int(status.stdout.split("Main PID: ")[1].split()[0])
        # alone on the link, real keepalived becomes MASTER and takes the VIP; nobody else has it
        wait_for(
            f"VIP {s.vip} on {one.name}",
            lambda: f" {s.vip} " in ip_addrs(one.name, s.interface),
        )
        assert f" {s.vip} " not in ip_addrs(two.name, s.interface)
        assert ctl("reload", "keepalived").returncode == 0
        wait_for(
            "keepalived to log the reload",
            lambda: "Reloading" in (one.runtime / "run/log/keepalived.log").read_text(),
        )
        assert ctl("is-active", "keepalived").returncode == 0
        assert ctl("status", "keepalived").stdout.count(f"Main PID: {pid} ") == 1
        assert ctl("stop", "keepalived").returncode == 0
        assert not node_pid_alive(one.name, pid)
        assert ctl("is-active", "keepalived").returncode == 3
        assert f" {s.vip} " not in ip_addrs(one.name, s.interface), "stopped MASTER kept the VIP"
        assert node_exec(STACK, two.name, ["systemctl", "is-active", "keepalived"]).returncode == 3
    finally:
        ctl("disable", "--now", "keepalived")
        node_exec(STACK, one.name, ["rm", "-f", "/etc/keepalived/keepalived.conf"])


def test_lab_systemctl_restarts_sshd_over_ssh(sim_lab: Lab, known_hosts: Path) -> None:
    node = sim_lab.nodes[0]
    before = _sshd_pid(node.runtime)
    out = ssh(sim_lab, node, known_hosts, "systemctl restart sshd && systemctl is-active ssh")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "active"
    after = _sshd_pid(node.runtime)
    assert after != before
    assert node_pid_alive(node.name, after) and not node_pid_alive(node.name, before)
    again = ssh(sim_lab, node, known_hosts, "systemctl status ssh")
    assert again.returncode == 0 and f"Main PID: {after} (sshd)" in again.stdout, again


def test_lab_systemctl_rbd_unit_and_unknown_units(sim_lab: Lab) -> None:
    one, two = (n.name for n in sim_lab.nodes[:2])
    rbd, body = rbd_unit(sim_lab)
    missing = node_exec(STACK, one, ["systemctl", "start", rbd])
    assert missing.returncode == 5 and "not found" in missing.stderr
    unit = f"/etc/systemd/system/{rbd}"
    write_ceph_client(sim_lab, two)
    node_exec(STACK, two, ["tee", unit], input=body, check=True)
    try:
        assert node_exec(STACK, two, ["systemctl", "is-active", rbd]).returncode == 3
        assert node_exec(STACK, two, ["systemctl", "enable", "--now", rbd]).returncode == 0
        assert node_exec(STACK, two, ["systemctl", "is-active", rbd]).stdout.strip() == "active"
        assert node_exec(STACK, two, ["systemctl", "is-enabled", rbd]).stdout.strip() == "enabled"
        assert node_exec(STACK, one, ["systemctl", "is-active", rbd]).returncode == 3
        assert node_exec(STACK, two, ["systemctl", "stop", rbd]).returncode == 0
        assert node_exec(STACK, two, ["systemctl", "is-active", rbd]).returncode == 3
    finally:
        node_exec(STACK, two, ["systemctl", "disable", rbd])
        node_exec(STACK, two, ["rm", "-f", unit])
    unknown = node_exec(STACK, one, ["systemctl", "start", "nginx.service"])
    assert unknown.returncode != 0 and "nginx.service not found" in unknown.stderr
    bad_verb = node_exec(STACK, one, ["systemctl", "mask", "keepalived"])
    assert bad_verb.returncode != 0 and "not supported" in bad_verb.stderr
    assert node_exec(STACK, one, ["systemctl", "daemon-reload"]).returncode == 0


def test_lab_up_starts_a_stopped_sshd_and_keeps_the_rest(sim_lab: Lab, known_hosts: Path) -> None:
    node = sim_lab.nodes[-1]
    assert node_exec(STACK, node.name, ["systemctl", "stop", "ssh"]).returncode == 0
    assert ssh(sim_lab, node, known_hosts, "true").returncode == 255  # nobody listens
    out = fab("lab-up", "--stack", STACK)
    assert out.returncode == 0, out.stderr
    assert f"started sshd on {node.name}" in out.stdout and "nothing to do" in out.stdout
    back = ssh(sim_lab, node, known_hosts, "hostname")  # same host keys: known_hosts still fits
    assert back.returncode == 0 and back.stdout.strip() == node.name, back.stderr


def test_lab_up_again_changes_nothing(sim_lab: Lab) -> None:
    def fingerprint() -> tuple[object, ...]:
        state = (sim_lab.dir / "state.json").read_bytes()
        return (
            hashlib.sha256(state).hexdigest(),
            sh("ip", "netns", "list").stdout,
            sh("losetup", "-a").stdout,
            tuple(_sshd_pid(n.runtime) for n in sim_lab.nodes),
            tuple(keyscan(n).split()[-1] for n in sim_lab.nodes),
        )

    before = fingerprint()
    out = fab("lab-up", "--stack", STACK)
    assert out.returncode == 0, out.stderr
    assert "is up" in out.stdout and "nothing to do" in out.stdout
    assert fingerprint() == before
