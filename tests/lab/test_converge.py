"""Converge on the lab: VMs fresh from their first boot become repo nodes, and stay so, over
real SSH.

    host 198.18.50.1 ── bridge ── VM repo1 198.18.50.161 (priority 101)  sshd, keepalived
                              └── VM repo2 198.18.50.162 (priority 100)  sshd, keepalived
    VIP 198.18.50.160 on the MASTER; the Ceph image (XFS "veeamrepo") mapped (krbd,
    exclusively) and mounted on the MASTER only

The tests run in file order on the lab the modules share (fixture `sim_lab`): first converge
(trusting each VM by the host key it made at first boot and published in its guestinfo,
read from vcsim) -> files, daemons, one MASTER ->
real OpenSSH with only the shared key -> second converge changes nothing -> one tampered file
-> one unreachable node (through the real `fab converge` CLI).
Everything is checked from the nodes themselves (their guest agent, ssh), not from converge's
report.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from components.bundle import PATHS, Bundle, Secrets, authorized_keys, hostkeys, render_cluster
from components.bundle.cloudinit import first_boot_files
from components.config import PROJECT_ROOT
from components.converge import compat, fleet, operations
from components.converge.ssh import Access, fingerprint
from components.lab import Lab, node_exec
from components.lab import secrets as labsecrets
from tests.lab.labkit import (
    FAB,
    HEALTHY,
    ROOT,
    STACK,
    in_node,
    keyscan,
    published,
    sh,
    ssh_argv,
    wait_for_picture,
)

pytestmark = pytest.mark.lab

SYSCTL = "/etc/sysctl.d/90-repo-cluster.conf"


@pytest.fixture(scope="module")
def secrets(sim_lab: Lab) -> Secrets:
    """The lab's own secrets: what `make lab` and `fab converge --lab-secrets` use."""
    return labsecrets.load_or_create(sim_lab.settings, STACK, ROOT)


@pytest.fixture(scope="module")
def bundles(sim_lab: Lab, secrets: Secrets) -> dict[str, Bundle]:
    s = sim_lab.settings
    return render_cluster(s, secrets, authorized_keys(s, ROOT))


@pytest.fixture(scope="module")
def published_fingerprints(sim_lab: Lab) -> dict[str, str]:
    """The fingerprint of the host key each VM publishes (read from vcsim), which is the key
    ssh-keyscan sees before anything converged."""
    out = {}
    keys = published(sim_lab)
    for n in sim_lab.nodes:
        scan = keyscan(n, "ed25519")
        fp = subprocess.run(
            ["ssh-keygen", "-lf", "-"], input=scan, capture_output=True, text=True, check=True
        ).stdout.split()[1]
        assert fp == fingerprint(keys[n.name])
        out[n.name] = fp
    return out


def converge(
    lab: Lab,
    secrets: Secrets,
    bundles: dict[str, Bundle],
    *,
    report: Callable[[str], None] = print,
) -> fleet.Outcome:
    """A converge as `fab converge --lab-secrets` runs it: the shared keys, and the host key
    each node's VM publishes (never first-contact trust)."""
    access = Access.for_stack(
        lab.settings,
        PROJECT_ROOT,
        secrets.public_host_keys,
        False,
        stack=STACK,
        published_keys=tuple(published(lab).items()),
    )
    return fleet.converge_stack(lab.settings, bundles, access, report=report)


@pytest.fixture(scope="module")
def first(
    sim_lab: Lab,
    secrets: Secrets,
    bundles: dict[str, Bundle],
    published_fingerprints: dict[str, str],
) -> tuple[fleet.Outcome, list[str]]:
    reports: list[str] = []
    outcome = converge(sim_lab, secrets, bundles, report=reports.append)
    return outcome, reports


# --------------------------------------------------------------------------- first converge


def test_first_converge_proves_each_vm_by_the_key_it_published(
    first, sim_lab, bundles, published_fingerprints
):
    """The VMs already carry every file their first boot wrote (no secret): the first
    converge brings the rest (the secret ones, the shared host keys, the rank's priorities),
    and only to a VM that proved it holds the key it published; then the node publishes the
    shared key it serves."""
    outcome, _ = first
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    shared = next(k for k in bundles["repo1"].files if k.path == f"{PATHS.host_key('ed25519')}.pub")
    for name, result in outcome.results.items():
        assert result.verified == "published", result
        assert result.host_key == published_fingerprints[name]
        first_boot = {f.path for f in first_boot_files(bundles[name].files)}
        expected = {f.path for f in bundles[name].files} - first_boot
        assert expected >= {PATHS.keepalived_conf, PATHS.rank_conf}
        assert set(result.changed) == expected, result.changed
    now = published(sim_lab)
    for n in sim_lab.nodes:
        assert now[n.name].split() == shared.content.decode().split()[:2], n.name


def test_files_match_the_render_byte_for_byte(first, sim_lab, bundles):
    for n in sim_lab.nodes:
        for f in bundles[n.name].files:
            got = in_node(n.name, "cat", f.path)
            assert got.encode() == f.content, f"{n.name}:{f.path} differs from the render"
            mode, owner, group = in_node(n.name, "stat", "-c", "%a %U %G", f.path).split()
            assert (int(mode, 8), owner, group) == (f.mode, f.owner, f.group), f"{n.name}:{f.path}"


def test_daemons_run_and_repo1_is_the_only_master(first, sim_lab, secrets):
    for n in sim_lab.nodes:
        for unit in ("ssh.service", "keepalived.service"):
            state = node_exec(STACK, n.name, ["systemctl", "is-active", unit]).stdout.strip()
            assert state == "active", f"{n.name} {unit}: {state}"
        # the rbd unit is never enabled: only the MASTER maps, when it becomes MASTER
        enabled = node_exec(STACK, n.name, ["systemctl", "is-enabled", "rbd-veeamrepo.service"])
        assert enabled.stdout.strip() == "static", enabled.stdout
        live = in_node(n.name, "sysctl", "-n", "net.ipv4.ip_nonlocal_bind").strip()
        assert live == "1", f"{n.name}: ip_nonlocal_bind {live}"
    wait_for_picture(sim_lab, HEALTHY)
    # the MASTER's volume is a krbd mapping, exclusive; the BACKUP maps nothing
    mapped = in_node("repo1", "sh", "-c", "cat /sys/bus/rbd/devices/*/config_info")
    assert "exclusive" in mapped and "noshare" in mapped, mapped
    assert (
        in_node("repo1", "findmnt", "-rn", "-o", "SOURCE", "/mnt/veeamrepo").strip() == "/dev/rbd0"
    )
    assert in_node("repo2", "sh", "-c", "ls /sys/bus/rbd/devices | wc -l").strip() == "0"
    # `fab status` reads the same picture (over SSH, strict host keys)
    statuses = fleet.cluster_status(
        sim_lab.settings,
        Access.for_stack(sim_lab.settings, PROJECT_ROOT, secrets.public_host_keys, False),
    )
    got = {st.name: (st.vrrp_state, st.holds_vip, st.mounted) for st in statuses}
    assert got == HEALTHY


def test_the_mixed_version_check_reads_each_nodes_versions_and_the_volumes_features(
    first, sim_lab, secrets
):
    """What the check before a keepalived start and `fab status` read, on the real nodes: each
    node's keepalived and kernel, the XFS features of the mounted volume (the lab makes it
    with the host's mkfs.xfs: reflink, bigtime, inobtcount), and no problem between nodes of
    one image. The same volume beside an EL7 node is named."""
    s = sim_lab.settings
    access = Access.for_stack(s, PROJECT_ROOT, secrets.public_host_keys, False)
    statuses = fleet.cluster_status(s, access, ceph=False)
    assert compat.problems_of(s, access, statuses) == []
    for n in sim_lab.nodes:
        v = compat.parse_versions(in_node(n.name, "sh", "-c", compat.VERSIONS_COMMAND))
        assert v.keepalived and v.kernel == in_node(n.name, "uname", "-r").strip(), v
    features = compat.parse_xfs_info(in_node("repo1", "xfs_info", s.mount_point))
    assert {"reflink", "bigtime"} <= features, features
    el7 = compat.Versions((1, 3, 5), "3.10.0-1160.el7.x86_64")
    [found] = compat.problems(s, {"repo1": v, "repo2": el7}, features)
    assert found.startswith("repo2 (kernel 3.10.0-1160.el7.x86_64) cannot mount")


# --------------------------------------------------------------------------- real OpenSSH


def openssh(lab: Lab, host: str, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    return sh(*ssh_argv(lab, host, known_hosts, "hostname"))


def test_openssh_trusts_the_vip_and_every_node_with_only_the_shared_key(
    first, sim_lab, secrets, tmp_path
):
    s = sim_lab.settings
    hosts = [str(s.vip.ip), *(str(n.address.ip) for n in sim_lab.nodes)]
    shared = tmp_path / "known_hosts"
    shared.write_text("".join(f"{','.join(hosts)} {k.public}\n" for k in secrets.host_keys))
    expected = {str(s.vip.ip): "repo1", **{str(n.address.ip): n.name for n in sim_lab.nodes}}
    for host, name in expected.items():
        r = openssh(sim_lab, host, shared)
        assert r.returncode == 0, f"ssh {host}: {r.stderr}"
        assert r.stdout.strip() == name
    other = tmp_path / "other_known_hosts"
    stranger = hostkeys.generate("stranger")
    other.write_text("".join(f"{','.join(hosts)} {k.public}\n" for k in stranger))
    r = openssh(sim_lab, str(s.vip.ip), other)
    assert r.returncode == 255 and "host key" in r.stderr.lower(), r.stderr


# --------------------------------------------------------------------------- idempotence


def test_second_converge_changes_nothing(first, sim_lab, secrets, bundles):
    outcome = converge(sim_lab, secrets, bundles)  # converged: the shared key only
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    assert {n: r.changed for n, r in outcome.results.items()} == {"repo1": [], "repo2": []}
    wait_for_picture(sim_lab, HEALTHY)


def test_a_tampered_file_is_the_only_change(first, sim_lab, secrets, bundles):
    node_exec(STACK, "repo2", ["sh", "-c", f"echo net.ipv4.ip_forward = 1 >> {SYSCTL}"], check=True)
    assert in_node("repo2", "cat", SYSCTL).encode() != bundles["repo2"].file(SYSCTL).content
    outcome = converge(sim_lab, secrets, bundles)
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    assert {n: r.changed for n, r in outcome.results.items()} == {"repo1": [], "repo2": [SYSCTL]}
    assert in_node("repo2", "cat", SYSCTL).encode() == bundles["repo2"].file(SYSCTL).content
    assert "sysctl: sysctl -p /etc/sysctl.d/90-repo-cluster.conf" in outcome.results["repo2"].steps


def test_a_reload_a_failed_run_owed_is_finished_by_the_next(first, sim_lab, secrets, bundles):
    """A run that wrote keepalived.conf and the rbd unit, then died before the reloads (its
    write script is all that ran): every file matches, yet the next run reloads. (Written the
    same as they are: the bytes do not change, the owed reloads do.)"""
    b = bundles["repo2"]
    written = [b.file(PATHS.keepalived_conf), b.file(PATHS.unit_file(PATHS.rbd_unit("veeamrepo")))]
    script = operations.write_files_script([operations.FileChange(f, True) for f in written])
    node_exec(STACK, "repo2", ["sh", "-s"], input=script, check=True)
    owed = in_node("repo2", "ls", PATHS.pending_dir).split()
    assert owed == ["daemon-reload", "keepalived"], owed
    outcome = converge(sim_lab, secrets, bundles)
    assert outcome.ok, json.dumps(outcome.as_dict(), indent=1)
    repo2 = outcome.results["repo2"]
    assert repo2.changed == []
    assert "units: systemctl daemon-reload" in repo2.steps, repo2.steps
    assert "keepalived: systemctl reload keepalived.service" in repo2.steps, repo2.steps
    assert in_node("repo2", "ls", PATHS.pending_dir).split() == []
    assert converge(sim_lab, secrets, bundles).results["repo2"].steps == []
    wait_for_picture(sim_lab, HEALTHY)


# --------------------------------------------------------------------------- the CLI, one node down


@pytest.fixture
def cli_env(sim_lab: Lab) -> dict[str, str]:
    """A plain operator environment for the real `fab converge/status --stack sim --lab-secrets`."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
    }


def fab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAB), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def repo2_unplugged(sim_lab: Lab) -> Iterator[None]:
    """repo2's cable pulled (its NIC's link down); plugged back afterwards, failed test or
    not."""
    machine = sim_lab.machine("repo2")
    machine.set_link(False)
    try:
        yield
    finally:
        machine.set_link(True)
        wait_for_picture(sim_lab, HEALTHY, timeout=120)


def test_cli_names_the_unreachable_node_and_converges_the_other(
    first, sim_lab, cli_env, repo2_unplugged
):
    node_exec(STACK, "repo1", ["sh", "-c", f"echo '# tampered' >> {SYSCTL}"], check=True)
    r = fab(cli_env, "converge", "--stack", STACK, "--json", "--lab-secrets")
    assert r.returncode != 0, r.stdout
    doc = json.loads(r.stdout)
    repo2 = doc["nodes"]["repo2"]
    assert repo2["error"].startswith("repo2: connect: 198.18.50.162:22 unreachable"), repo2
    repo1 = doc["nodes"]["repo1"]
    assert (repo1["changed"], repo1["count"], repo1["error"]) == ([SYSCTL], 1, None), repo1
    # every action the run took is reported: the tampered sysctl file was applied again
    assert any(a.startswith("sysctl: ") for a in repo1["actions"]), repo1
    assert doc["ok"] is False


def test_cli_status_after_converge(first, sim_lab, cli_env):
    # Veeam connects by name: without the record (made by pulumi up, or fab dns) status fails
    r = fab(cli_env, "status", "--stack", STACK, "--json", "--lab-secrets")
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads(r.stdout)["problems"] == [
        "DNS: repo-cluster.skunkworks.test resolves to nothing, want 198.18.50.160"
    ]
    r = fab(cli_env, "dns", "--stack", STACK, "--lab-secrets")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "A repo-cluster.skunkworks.test -> 198.18.50.160: created" in r.stdout
    r = fab(cli_env, "status", "--stack", STACK, "--json", "--lab-secrets")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["vip"] == "198.18.50.160"
    assert doc["dns"] == "DNS repo-cluster.skunkworks.test -> 198.18.50.160 (on 127.0.0.1:5353)"
    ceph = [n.pop("ceph") for n in doc["nodes"]]
    clients = [n.pop("clients") for n in doc["nodes"]]
    assert doc["nodes"] == [
        {
            "name": "repo1",
            "ip": "198.18.50.161",
            "vrrp_state": "MASTER",
            "holds_vip": True,
            "mounted": True,
        },
        {
            "name": "repo2",
            "ip": "198.18.50.162",
            "vrrp_state": "BACKUP",
            "holds_vip": False,
            "mounted": False,
        },
    ]
    # the MASTER maps the image (one client instance, at its address), the BACKUP nothing;
    # Ceph lists that instance and its lock, and the cluster is healthy
    assert len(clients[0]) == 1 and clients[0][0].startswith("198.18.50.161:0/"), clients
    assert clients[1] == []
    assert [c["client"] for c in ceph] == [True, False], ceph
    assert [c["holds_lock"] for c in ceph] == [True, False], ceph
    assert all(c["health"].startswith("HEALTH_OK") for c in ceph), ceph
    r = fab(cli_env, "converge", "--stack", STACK, "--lab-secrets")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repo1: up to date" in r.stdout and "repo2: up to date" in r.stdout


# --------------------------------------------------------------------------- NodeConverge delete


def test_release_stops_keepalived_and_hands_the_volume_over(first, sim_lab, secrets):
    """What NodeConverge's delete runs before a VM goes: the volume released first (no lazy
    unmount), then keepalived stopped, and the peer takes over."""
    from components.node_converge import SshRunner

    s = sim_lab.settings
    wait_for_picture(sim_lab, HEALTHY)
    props = {
        "node": "repo1",
        "ip": "198.18.50.161",
        "ssh_user": s.ssh_user,
        "key_file": str(s.ssh_key_path(ROOT)),
        "known_host_keys": [k.public for k in secrets.host_keys],
    }
    SshRunner().release(props)
    assert node_exec(STACK, "repo1", ["systemctl", "is-active", "keepalived"]).returncode != 0
    after = {"repo1": ("STOP", False, False), "repo2": ("MASTER", True, True)}
    wait_for_picture(sim_lab, after)
    # back in service: repo1 returns as BACKUP (nopreempt keeps repo2 MASTER)
    in_node("repo1", "systemctl", "start", "keepalived")
    wait_for_picture(sim_lab, {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)})
