"""`make lab` / `make lab-down` as a user types them, both paths: with the vSphere plugin (the
real `pulumi up` against vcsim) and without it (Fabric converge + `fab dns`).

Each path: a fresh lab ends with one MASTER holding the VIP and the mount and the DNS name
answering the VIP; a second `make lab` changes nothing; `make lab-down` leaves no VM, daemon,
namespace, loop device or file; `git status` is the same before and after; and `make lab`
works again after `make lab-down`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.lab import Lab, deploy
from components.lab import ceph as labceph
from tests.lab.labkit import ROOT, cluster_picture, sh, what_is_left

pytestmark = pytest.mark.lab

TOOLS = Path(os.environ.get("REPO_CLUSTER_CACHE") or Path.home() / ".cache/repo-cluster")
NAME = "repo-cluster.skunkworks.test"


def make(target: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", target],
        cwd=ROOT,
        # never Pulumi's plugin download from a test: no packet leaves this machine
        env={**os.environ, "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
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


def assert_both_clients(plan: Lab) -> None:
    """Ceph's own view (the lab's admin key, from the host): both nodes' clients have the
    image open, each at its node's address."""
    watchers = labceph.watchers(plan)
    assert watchers is not None, "the lab's Ceph did not answer"
    assert {w.split(":")[0] for w in watchers} == {"198.18.50.161", "198.18.50.162"}, watchers


def assert_cluster(out: subprocess.CompletedProcess[str]) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    report = out.stdout.rsplit("VIP 198.18.50.160", 1)[-1]  # fab status, the last word
    # node ip vrrp vip mounted ceph-client lock blocklisted
    row = r"^(repo\d)\s+\S+\s+(MASTER|BACKUP)\s+(yes|-)\s+(yes|-)\s+(yes|-|\?)\s+\S+\s+\S+\s*$"
    rows = re.findall(row, report, re.M)
    assert sorted(rows) == [
        ("repo1", "MASTER", "yes", "yes", "yes"),
        ("repo2", "BACKUP", "-", "-", "yes"),
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


def replace_repo1_vm(plan: Lab) -> None:
    """A replaced VM: its converge step is deleted first, and that delete releases the volume
    on the old VM before the VM goes (in the lab the node outlives its vcsim VM, so only the
    release moves the MASTER role: repo2 ends MASTER, the new repo1 converged as BACKUP)."""
    state = json.loads(lab_pulumi("stack", "export").stdout)
    [vm] = [
        r["urn"]
        for r in state["deployment"]["resources"]
        if r["urn"].endswith("::repo-cluster-repo1-vm")
    ]
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
    log = sh("cat", "/run/repo-cluster/sim/nodes/repo1/run/keepalivednotify/log").stdout
    assert "INSTANCE pulumi-delete is STOP" in log, log[-2000:]
    picture = cluster_picture(plan)
    assert picture == {"repo1": ("BACKUP", False, False), "repo2": ("MASTER", True, True)}, picture


def test_make_lab_with_the_real_pulumi_up(plan: Lab, clean: str) -> None:
    if not has_plugin():
        pytest.skip(
            "needs the pulumi-resource-vsphere 4.18.2 plugin, which no registry here serves: "
            "install it with `pulumi plugin install resource vsphere 4.18.2 --file <tarball>` "
            "(or set REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL); the fallback path is tested below"
        )
    first = make("lab")
    assert_cluster(first)
    assert_both_clients(plan)
    assert re.search(r"\+ \d+ created", first.stdout), first.stdout[-3000:]
    assert "secrets from the lab's Pulumi state" in first.stderr
    assert git_status() == clean

    second = make("lab")
    assert_cluster(second)
    assert re.search(r"^Resources:\n\s+\d+ unchanged\n\n", second.stdout, re.M), second.stdout
    assert "NodeConverge" not in second.stdout.split("Resources:")[0].replace("same", "")

    replace_repo1_vm(plan)

    down = make("lab-down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert re.search(r"- \d+ deleted", down.stdout), down.stdout
    assert_gone(plan, clean)

    again = make("lab")
    assert_cluster(again)


def test_make_lab_without_the_plugin(plan: Lab, clean: str, tmp_path: Path) -> None:
    """No plugin to be had (an empty Pulumi home, no download): the Fabric path, same cluster."""
    offline = {"PULUMI_HOME": str(tmp_path / "pulumi-home"), "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0"}
    first = make("lab", offline)
    assert_cluster(first)
    assert_both_clients(plan)
    assert "pulumi up: SKIPPED" in first.stderr
    assert "secrets from the lab's own secrets" in first.stderr
    assert git_status() == clean

    second = make("lab", offline)
    assert_cluster(second)
    assert re.findall(r"^(repo\d): (.*)$", second.stdout, re.M) == [
        ("repo1", "up to date"),
        ("repo2", "up to date"),
    ]
    assert "dns: A repo-cluster.skunkworks.test -> 198.18.50.160: unchanged" in second.stdout

    down = make("lab-down", offline)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_gone(plan, clean)
