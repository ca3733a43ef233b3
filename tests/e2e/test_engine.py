"""The real Pulumi engine runs our program: config errors and preflight stop it before anything.

vcsim stands in for vCenter. Creating, updating and destroying VMs with the
pulumi-resource-vsphere plugin is test_deploy.py's; here, with the plugin installed, a valid
stack previews; without it, the engine stops at the plugin (README, Troubleshooting).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.kit import ROOT

pytestmark = pytest.mark.e2e


def _resources(project) -> list[str]:
    out = project.pulumi("stack", "export")
    doc = json.loads(out.stdout)
    return [r["type"] for r in doc.get("deployment", {}).get("resources") or []]


def test_invalid_config_fails_before_any_resource(project) -> None:
    project.config("repo-cluster:xfsLabel", "far-too-long-label")
    project.config("repo-cluster:virtualRouterId", "300")
    project.config("repo-cluster:vip", "198.18.60.160/24")
    out = project.pulumi("up", "--yes", "--skip-preview", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    for key in ("repo-cluster:xfsLabel", "repo-cluster:virtualRouterId", "repo-cluster:nodes"):
        assert key in text, f"{key} not named in:\n{text}"
    assert "invalid stack configuration" in text
    assert [t for t in _resources(project) if t != "pulumi:pulumi:Stack"] == []


def test_preflight_against_vcsim_lists_every_problem(project, vcsim) -> None:
    project.config("vsphere:vsphereServer", vcsim.server)
    project.config("repo-cluster:template", "no-such-template")
    project.config("repo-cluster:network", "no-such-network")
    project.config("repo-cluster:diskGb", "60000")
    out = project.pulumi("preview", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "preflight found 3 problem(s)" in text, text
    assert "'no-such-template' not found" in text
    assert "'no-such-network' not found" in text
    assert "the new disks need 120000 GiB" in text


def test_preflight_passes_then_the_vsphere_provider_plans_the_vms(
    project, vcsim, vsphere_plugin_found
) -> None:
    """With a valid stack and vcsim answering, the program gets past settings and preflight and
    registers the RepoCluster. With the vSphere plugin the preview succeeds and plans both VMs;
    without it, the engine names the missing plugin."""
    project.config("vsphere:vsphereServer", vcsim.server)
    out = project.pulumi("preview", "--parallel", "1", check=False)
    text = out.stdout + out.stderr
    assert "preflight found" not in text, text
    assert "repo-cluster:index:RepoCluster" in text, text
    if vsphere_plugin_found is None:
        assert out.returncode != 0
        assert "pulumi-resource-vsphere" in text, text
        return
    assert out.returncode == 0, text
    plan = json.loads(project.pulumi("preview", "--json", "--parallel", "1").stdout)
    vms = sorted(
        s["urn"].rsplit("::", 1)[-1]
        for s in plan["steps"]
        if s["op"] == "create" and "virtualMachine:VirtualMachine" in s["urn"]
    )
    assert vms == ["repo-cluster-repo1-vm", "repo-cluster-repo2-vm"], plan["steps"]


def _create_vm(vc, name: str, marker: str | None) -> None:
    """A plain VM in vcsim, optionally carrying a stack's marker in its extraConfig."""
    from pyVmomi import vim

    from components.lab import vcsim as labvcsim
    from components.vcenter import preflight

    with preflight.connect(vc.settings) as si:
        content = si.RetrieveContent()
        dc = labvcsim.find(content, vim.Datacenter, vc.settings.datacenter)
        cluster = labvcsim.find(content, vim.ClusterComputeResource, vc.settings.cluster)
        extra = [vim.option.OptionValue(key=preflight.STACK_MARKER, value=marker)] if marker else []
        spec = vim.vm.ConfigSpec(
            name=name,
            guestId="otherLinux64Guest",
            files=vim.vm.FileInfo(vmPathName=f"[{vc.settings.datastore}]"),
            extraConfig=extra,
        )
        labvcsim.wait_task(dc.vmFolder.CreateVM_Task(config=spec, pool=cluster.resourcePool))


def test_preflight_names_a_foreign_vm_but_not_the_stacks_own(project, vcsim) -> None:
    _create_vm(vcsim, "repo1", marker=None)  # someone else's VM with a node's name
    _create_vm(vcsim, "repo2", marker="repo-cluster/sim")  # ours, from an earlier up
    project.config("vsphere:vsphereServer", vcsim.server)
    out = project.pulumi("preview", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "preflight found 1 problem(s)" in text, text
    assert "a VM named 'repo1' already exists" in text
    assert "'repo2'" not in text


def test_missing_operator_key_fails_before_any_resource(project, tmp_path) -> None:
    project.config("repo-cluster:sshKeyFile", str(tmp_path / "absent"))
    out = project.pulumi("up", "--yes", "--skip-preview", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "repo-cluster:sshKeyFile: no public key in" in text, text
    assert [t for t in _resources(project) if t != "pulumi:pulumi:Stack"] == []


def test_vsphere_plugin_script_finds_the_tools_cli_without_path(tools_bin, tmp_path) -> None:
    """As the skip message tells a user to run it: from a shell whose PATH has no pulumi, with
    an empty Pulumi home (nothing installed) and a tarball that is not there. It must get as
    far as installing (the tools' CLI found) and fail naming the tarball, not the PATH."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(Path.home()),
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "REPO_CLUSTER_CACHE": str(tools_bin.parent.parent),
        "REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL": str(tmp_path / "absent.tar.gz"),
        "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0",
    }
    out = subprocess.run(
        [str(ROOT / "scripts/vsphere-plugin")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode != 0, out.stdout
    assert "no pulumi CLI" not in out.stderr, out.stderr
    assert "absent.tar.gz" in out.stderr, out.stderr
