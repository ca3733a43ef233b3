"""`make lab` / `make lab-down` as a user types them, both paths: with the vSphere plugin (the
real `pulumi up` against vcsim, whose VMs the lab's host agent boots from their guestinfo) and
without it (lab-up makes the VMs, then Fabric converge + `fab dns`).

Each path: a fresh lab ends with one MASTER holding the VIP and the mount and the DNS name
answering the VIP; a second `make lab` changes nothing; `make lab-down` leaves no VM, daemon,
tap or file; `git status` is the same before and after. With the plugin, also: each node is a
VM of its own (kernel, systemd, cloud-init done) whose user-data is what `pulumi up` put in
its guestinfo, byte for byte; the MASTER's volume is a krbd device; a replaced VM is released
first; the MASTER's VM powered off hands everything to the peer, which answers SSH on the VIP.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import lab as labmod
from components.cli import stack_state
from components.converge.probe import VipSsh
from components.lab import Lab, deploy, node_exec
from components.lab import ceph as labceph
from components.lab import secrets as labsecrets
from components.lab import vcsim as labvcsim
from components.lab.faults import LabFaults
from tests.lab.labkit import ROOT, STACK, cluster_picture, in_node, sh, wait_for, what_is_left

pytestmark = pytest.mark.lab

TOOLS = Path(os.environ.get("REPO_CLUSTER_CACHE") or Path.home() / ".cache/repo-cluster")
NAME = "repo-cluster.skunkworks.test"
OLD_DISK_MARK = "/root/repo-cluster-old-disk"


def make(
    target: str, env: dict[str, str] | None = None, *, clear: bool = False
) -> subprocess.CompletedProcess[str]:
    """``make TARGET`` in the repo; ``env`` added to this process's environment (or, with
    ``clear``, instead of it: a test controls every variable its path depends on)."""
    base = {} if clear else dict(os.environ)
    return subprocess.run(
        ["make", target],
        cwd=ROOT,
        # never Pulumi's plugin download from a test: no packet leaves this machine
        env={**base, "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def git_status() -> str:
    """Tracked changes and untracked files outside tests/ and bench/ (which a developer may
    be editing meanwhile; the lab writes nowhere but .lab, which is ignored)."""
    spec = [".", ":!tests", ":!bench"]
    return sh(
        "git", "-C", ROOT, "status", "--porcelain", "--untracked-files=all", "--", *spec
    ).stdout


def dig() -> str:
    return sh("dig", "@127.0.0.1", "-p", "5353", NAME, "A", "+short", "+time=2", "+tries=1").stdout


def listening(port: int) -> str:
    """What listens on 127.0.0.1:<port> (TCP), as `ss` reports it; empty if nothing."""
    return sh("ss", "-Hltn", f"sport = :{port}").stdout.strip()


def remove_stack(stack: str, stack_file: Path) -> None:
    """A test's own stack gone: its lab (`make lab-down`, then in-process, whatever the first
    did) and Pulumi state, then its stack file."""
    make("lab-down", {"STACK": stack})
    try:
        labmod.lab_down(stack, say=lambda _: None)
    finally:
        stack_file.unlink(missing_ok=True)


def has_plugin() -> bool:
    pulumi = TOOLS / "tools" / "bin" / "pulumi"
    if not pulumi.exists():
        return False
    out = sh(pulumi, "plugin", "ls", "--json")
    plugins = json.loads(out.stdout or "[]") or []
    return any(p.get("name") == "vsphere" and p.get("version") == "4.18.2" for p in plugins)


@pytest.fixture
def clean(plan: Lab) -> Iterator[str]:
    """No lab before or after (make lab-down either way); yields `git status` before."""
    make("lab-down")
    before = git_status()
    try:
        yield before
    finally:
        down = make("lab-down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not what_is_left(plan)


def assert_gone(plan: Lab, before: str) -> None:
    assert not what_is_left(plan), what_is_left(plan)
    assert not (ROOT / ".lab").exists(), sorted((ROOT / ".lab").rglob("*"))
    assert listening(8989) == "", "vcsim still listens"
    assert listening(5353) == "", "named still listens"
    assert git_status() == before


def assert_master_client_only(plan: Lab, master: str = "198.18.50.161") -> None:
    """Ceph's own view (the lab's admin key, from the host): only the MASTER's client has the
    image open (it maps on promotion; the BACKUP maps nothing)."""
    watchers = labceph.watchers(plan)
    assert watchers is not None, "the lab's Ceph did not answer"
    assert {w.split(":")[0] for w in watchers} == {master}, watchers


def assert_cluster(out: subprocess.CompletedProcess[str]) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    report = out.stdout.rsplit("VIP 198.18.50.160", 1)[-1]  # fab status, the last word
    # node ip vrrp vip mounted mapped ceph-client lock blocklisted
    row = (
        r"^(repo\d)\s+\S+\s+(MASTER|BACKUP)\s+(yes|-)\s+(yes|-)\s+(yes|-)\s+(yes|-|\?)\s+\S+"
        r"\s+\S+\s*$"
    )
    rows = re.findall(row, report, re.M)
    assert sorted(rows) == [
        ("repo1", "MASTER", "yes", "yes", "yes", "yes"),
        ("repo2", "BACKUP", "-", "-", "-", "-"),
    ], text
    assert "ceph: HEALTH_OK" in report, text
    assert f"DNS {NAME} -> 198.18.50.160" in text
    assert dig().strip() == "198.18.50.160"


def lab_pulumi(*args: str) -> subprocess.CompletedProcess[str]:
    """The Pulumi CLI on the lab's deployment of stack sim, as scripts/lab runs it."""
    project = deploy.prepare("sim")
    env = {**os.environ, **deploy.environment(), "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "1"}
    env["PATH"] = f"{TOOLS / 'tools' / 'bin'}:{env['PATH']}"
    return subprocess.run(
        ["pulumi", *args, "--stack", "sim", "--non-interactive"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def state_extra_config(state: dict, node: str) -> dict[str, str]:
    """The extraConfig the provider read back from vcsim when it made the node's VM."""
    [vm] = [
        r
        for r in state["deployment"]["resources"]
        if r["urn"].endswith(f"::repo-cluster-{node}-vm")
    ]
    extra = vm["outputs"]["extraConfig"]
    if isinstance(extra, dict) and "plaintext" in extra:  # a secret: decrypted by --show-secrets
        extra = json.loads(extra["plaintext"])
    return extra


USER_AND_META = ("guestinfo.userdata", "guestinfo.metadata")


def decoded(value: str) -> str:
    return gzip.decompress(base64.b64decode(value)).decode()


def assert_vms_booted_from_their_guestinfo(plan: Lab) -> None:
    """Each node is a VM of its own, booted by cloud-init from the user-data `pulumi up` put in
    its guestinfo (as the provider read it back from vcsim), byte for byte; cloud-init then
    cleared guestinfo.userdata in vcsim, as the meta-data says."""
    state = json.loads(lab_pulumi("stack", "export", "--show-secrets").stdout)
    host_kernel = os.uname().release
    for n in plan.nodes:
        assert in_node(n.name, "uname", "-r").strip() != host_kernel
        assert in_node(n.name, "cat", "/proc/1/comm").strip() == "systemd"
        assert in_node(n.name, "cloud-init", "status").split()[-1] == "done"
        extra = state_extra_config(state, n.name)
        sent = gzip.decompress(base64.b64decode(extra["guestinfo.userdata"])).decode()
        received = in_node(n.name, "cat", "/var/lib/cloud/instance/user-data.txt")
        assert received == sent, f"{n.name}: the user-data cloud-init got differs"
        assert labvcsim.extra_config(plan.settings, n.name)["guestinfo.userdata"] == "---"
    src = in_node("repo1", "findmnt", "-rn", "-o", "SOURCE", plan.settings.mount_point)
    assert src.strip().startswith("/dev/rbd"), src
    assert in_node("repo1", "sh", "-c", "ls /sys/bus/rbd/devices").split() == ["0"]


def assert_no_secret_outside_secret_envelopes(plan: Lab) -> None:
    """No private key, keyring or auth_pass in any VM's extraConfig in vcsim (its user-data
    decoded as `pulumi up` sent it) nor in `pulumi stack export` outside the secret
    envelopes; each node's converge step records, in the state, the key it trusted: the one
    the VM published."""
    revealed = json.loads(lab_pulumi("stack", "export", "--show-secrets").stdout)
    shared, auth_pass = stack_state.secrets_from_export(STACK, revealed)
    assert auth_pass
    needles = ["PRIVATE KEY", auth_pass, labsecrets.ceph_key(plan.settings, STACK, ROOT)]
    needles += [ln for k in shared for ln in k.private.splitlines()[-3:-1]]
    export = lab_pulumi("stack", "export").stdout
    for n in plan.nodes:
        extra = labvcsim.extra_config(plan.settings, n.name)
        sent = state_extra_config(revealed, n.name)
        texts = [*extra.values(), *(decoded(sent[k]) for k in USER_AND_META)]
        for needle in needles:
            assert not any(needle in text for text in texts), f"{n.name}: {needle[:12]}"
    for needle in needles:
        assert needle not in export, f"stack export: {needle[:12]}"
    steps = [
        r["outputs"]
        for r in revealed["deployment"]["resources"]
        if r["type"].endswith(":NodeConverge")
    ]
    assert sorted((o["node"], o["verified"]) for o in steps) == [
        ("repo1", "published"),
        ("repo2", "published"),
    ], steps


def replace_repo1_vm(plan: Lab) -> None:
    """A replaced VM: its converge step is deleted first, and that delete releases the volume
    on the old VM (repo2 takes over), then the old VM goes (the agent stops its QEMU), and the
    new VM boots from its own fresh disk and is converged as BACKUP."""
    state = json.loads(lab_pulumi("stack", "export").stdout)
    [vm] = [
        r["urn"]
        for r in state["deployment"]["resources"]
        if r["urn"].endswith("::repo-cluster-repo1-vm")
    ]
    # the old VM's disk carries a mark (vcsim derives a clone's UUID from its name, so the
    # new VM's disk has the old one's file name: only its content tells a fresh disk)
    in_node("repo1", "touch", OLD_DISK_MARK)
    up = lab_pulumi("up", "--yes", "--skip-preview", "--json", "--replace", vm)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
    # --json on up: one engine event per line, in the order the engine ran the steps
    events = [json.loads(line) for line in up.stdout.splitlines() if line.strip()]
    steps = [
        (m["op"], m["urn"].rsplit("::", 1)[-1])
        for m in (e["resourcePreEvent"]["metadata"] for e in events if "resourcePreEvent" in e)
    ]
    deleted = [name for op, name in steps if op == "delete-replaced"]
    assert deleted[:2] == ["repo-cluster-repo1-converge", "repo-cluster-repo1-vm"], steps
    log = (plan.dir / "hostd.log").read_text()
    # destroyed, replaced when the agent's poll saw the new VM (same UUID) at once, or powered
    # off when it saw the old one on its way out (the new one then gets a fresh disk: below)
    assert re.search(r"repo1: stopped QEMU \((destroyed|replaced|powered off) in vcsim", log), log[
        -2000:
    ]
    mark = node_exec(STACK, "repo1", ["test", "-e", OLD_DISK_MARK])
    assert mark.returncode == 1, "the new repo1 booted from the old VM's disk"
    picture = cluster_picture(plan)
    assert picture == {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)}, picture


def master_vm_powered_off(plan: Lab) -> None:
    """kill -9 of the MASTER's QEMU: the peer holds the VIP and the volume and answers SSH on
    the VIP (strict host key: the cluster's shared one)."""
    faults = LabFaults(plan)
    faults.power_off("repo2")
    wait_for(
        "repo1 to hold the VIP and the volume",
        lambda: cluster_picture(plan)["repo1"] == ("MASTER", True, True),
        timeout=240,
    )
    state = json.loads(lab_pulumi("stack", "export", "--show-secrets").stdout)
    shared, _ = stack_state.secrets_from_export(STACK, state)  # the HostKeys resource's
    keys = [k.public for k in shared]
    ssh = VipSsh.make(str(plan.settings.vip.ip), "root", str(plan.key_file), keys, login=15.0)
    try:
        assert ssh.hostname() == "repo1"
    finally:
        ssh.close()
    faults.power_on("repo2")
    wait_for(
        "repo2 back as BACKUP",
        lambda: cluster_picture(plan)["repo2"] == ("BACKUP", False, False),
        timeout=240,
    )


def test_make_lab_with_the_real_pulumi_up(plan: Lab, clean: str) -> None:
    if not has_plugin():
        pytest.skip(
            "needs the pulumi-resource-vsphere 4.18.2 plugin, which no registry here serves: "
            "install it with `pulumi plugin install resource vsphere 4.18.2 --file <tarball>` "
            "(or set REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL); the fallback path is tested below"
        )
    first = make("lab")
    assert_cluster(first)
    assert_master_client_only(plan)
    assert re.search(r"\+ \d+ created", first.stdout), first.stdout[-3000:]
    assert "secrets from the lab's Pulumi state" in first.stderr
    assert git_status() == clean
    assert_vms_booted_from_their_guestinfo(plan)

    second = make("lab")
    assert_cluster(second)
    assert re.search(r"^Resources:\n\s+\d+ unchanged\n\n", second.stdout, re.M), second.stdout
    assert "NodeConverge" not in second.stdout.split("Resources:")[0].replace("same", "")
    assert_no_secret_outside_secret_envelopes(plan)

    replace_repo1_vm(plan)
    assert_no_secret_outside_secret_envelopes(plan)  # the new VM too
    master_vm_powered_off(plan)

    down = make("lab-down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert re.search(r"- \d+ deleted", down.stdout), down.stdout
    assert_gone(plan, clean)


def test_make_lab_without_the_plugin(plan: Lab, clean: str, tmp_path: Path) -> None:
    """No plugin to be had (an empty Pulumi home, no download): lab-up makes the VMs in vcsim
    from the same bundles, the Fabric path converges them, same cluster."""
    offline = {"PULUMI_HOME": str(tmp_path / "pulumi-home"), "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0"}
    offline.pop("REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL", None)
    env = {k: v for k, v in os.environ.items() if k != "REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL"}
    first = make("lab", {**env, **offline}, clear=True)
    assert_cluster(first)
    assert_master_client_only(plan)
    assert "pulumi up: SKIPPED" in first.stderr
    assert "secrets from the lab's own secrets" in first.stderr
    assert git_status() == clean

    # (a second converge changing nothing is test_converge's; here, lab-down after the path)
    down = make("lab-down", {**env, **offline}, clear=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_gone(plan, clean)
