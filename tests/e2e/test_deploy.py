"""`pulumi up` end to end: the real engine and vSphere provider, vcsim standing in for vCenter.

One stack is deployed once for the module (``deployed``) and only read by the tests that use
it: the VMs in vcsim, a second up, refresh, and the plans of two changes (each config change
undone right after its preview); the last test destroys it. A test that applies a change gets
a stack of its own (``fresh``). Converge is off and there is no DNS record (see conftest): the
VM work only. Every up/preview/refresh/destroy runs with ``--parallel 1``: vcsim loses the
provider's updates when two VMs are cloned at once.

vcsim is read with pyvmomi: only hardware, extraConfig, power state, names and ids (pyvmomi 9
cannot deserialize some of vcsim's VM properties, such as guest info and task lists).

vcsim's QueryConfigOption reports hardware version 0, and after each reconfigure the provider
"upgrades" a VM whose version differs; the lab's template is therefore version 0
(components/lab/vcsim.py), and an in-place update must succeed outright here.

One known gap between vcsim and vCenter remains: vcsim never stores a VM's swapPlacement, so
a refresh reads "" where vCenter reads "inherit", and the provider then rejects its own
refreshed state ("expected swap_placement_policy to be one of ...") in the next preview. The
test that meets it calls ``pytest.xfail`` with exactly that reason; any other failure fails.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyVmomi import vim

from components.bundle import Secrets, authorized_keys, render_node
from components.bundle.hostkeys import HostKey
from components.vcenter import preflight

pytestmark = pytest.mark.e2e

PARALLEL = ("--parallel", "1")
NODES = ("repo1", "repo2")
GIB_IN_KB = 1024 * 1024
SWAP_FAULT = "expected swap_placement_policy to be one of"
# computed maps the provider marks unknown in any plan that changes a clone (never a replace)
CLONE_NOISE = ("clone.ovfNetworkMap", "clone.ovfStorageMap")


# --- vcsim, as pyvmomi sees it ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Vm:
    moref: str
    uuid: str
    template: bool
    power: str
    cpus: int
    memory_mb: int
    disks_kb: tuple[int, ...]
    extra: dict[str, str]

    def document(self, key: str) -> str:
        """A guestinfo document (userdata, metadata) decoded as its .encoding says."""
        assert self.extra[f"guestinfo.{key}.encoding"] == "gzip+base64"
        return gzip.decompress(base64.b64decode(self.extra[f"guestinfo.{key}"])).decode()

    def readable(self) -> list[str]:
        """Everything a reader of the VM gets from its extraConfig: every value, the decoded
        documents and every file the user-data writes, decoded."""
        texts = [*self.extra.values(), self.document("userdata"), self.document("metadata")]
        doc = yaml.safe_load(self.document("userdata"))
        texts += [base64.b64decode(w["content"]).decode() for w in doc["write_files"]]
        return texts


def vcsim_vms(vc) -> dict[str, Vm]:
    with preflight.connect(vc.settings) as si:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True
        )
        try:
            return {
                vm.name: Vm(
                    moref=vm._moId,
                    uuid=vm.config.uuid,
                    template=bool(vm.config.template),
                    power=str(vm.runtime.powerState),
                    cpus=vm.config.hardware.numCPU,
                    memory_mb=vm.config.hardware.memoryMB,
                    disks_kb=tuple(
                        d.capacityInKB
                        for d in vm.config.hardware.device
                        if isinstance(d, vim.vm.device.VirtualDisk)
                    ),
                    extra={o.key: str(o.value) for o in vm.config.extraConfig or []},
                )
                for vm in view.view
            }
        finally:
            view.Destroy()


# --- the stack ----------------------------------------------------------------------------


@dataclasses.dataclass
class Deployment:
    project: Any
    vcsim: Any
    before: dict[str, Vm]
    """vcsim's VMs before the first up (its own VMs and the template)."""


def _deploy(project, vc) -> Deployment:
    project.config("vsphere:vsphereServer", vc.server)
    before = vcsim_vms(vc)
    project.pulumi("up", "--yes", "--skip-preview", *PARALLEL)
    return Deployment(project, vc, before)


@pytest.fixture(scope="module")
def deployed(vsphere_plugin, new_vcsim, new_project, tmp_path_factory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("deployed")
    with new_vcsim(base / "vcsim") as vc:
        project = new_project(base)
        try:
            yield _deploy(project, vc)
        finally:
            project.pulumi("destroy", "--yes", "--skip-preview", *PARALLEL, check=False)


@pytest.fixture
def fresh(vsphere_plugin, new_vcsim, new_project, tmp_path: Path) -> Iterator[Deployment]:
    with new_vcsim(tmp_path / "vcsim") as vc:
        project = new_project(tmp_path)
        try:
            yield _deploy(project, vc)
        finally:
            project.pulumi("destroy", "--yes", "--skip-preview", *PARALLEL, check=False)


def _plain(value: Any) -> Any:
    """A value of `stack export --show-secrets`, secrets unwrapped."""
    if isinstance(value, dict):
        if "plaintext" in value:
            return json.loads(value["plaintext"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def state_secrets(project) -> Secrets:
    """The secrets in the stack's state (host keys, generated VRRP auth_pass), resolved as
    the program does."""
    state = json.loads(project.pulumi("stack", "export", "--show-secrets").stdout)
    resources = _plain(state["deployment"]["resources"])
    (keys,) = [r["outputs"] for r in resources if r["type"].endswith(":HostKeys")]
    (auth,) = [r["outputs"]["result"] for r in resources if r["type"].endswith(":AuthPass")]
    host_keys = tuple(
        HostKey(t, private, public)
        for t, private, public in zip(
            keys["types"], keys["private_keys"], keys["public_keys"], strict=True
        )
    )
    return Secrets.resolve(project.settings(), host_keys=host_keys, vrrp_auth_pass=auth)


def expected_documents(project) -> dict[str, tuple[str, str]]:
    """Node -> (user-data, meta-data), rendered as the program does from the stack's settings
    and the secrets in its state."""
    s, secrets = project.settings(), state_secrets(project)
    authorized = authorized_keys(s, project.dir, required=True)
    bundles = {n.name: render_node(s, n, secrets, authorized) for n in s.nodes}
    return {name: (b.user_data, b.meta_data) for name, b in bundles.items()}


def preview(project, *args: str) -> tuple[int, dict[str, Any]]:
    out = project.pulumi("preview", "--json", *PARALLEL, *args, check=False)
    try:
        return out.returncode, json.loads(out.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"pulumi preview {args}:\n{out.stdout}\n{out.stderr}") from None


def changes(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(op, resource name) of every step that is not "same"."""
    return [(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in plan["steps"] if s["op"] != "same"]


def diff_kinds(plan: dict[str, Any], name: str) -> dict[str, str]:
    (step,) = [s for s in plan["steps"] if s["urn"].endswith(f"::{name}")]
    assert not step.get("replaceReasons"), step
    return {k: v["kind"] for k, v in (step.get("detailedDiff") or {}).items()}


def up_in_place(project) -> None:
    """`pulumi up` of a change; it must succeed."""
    project.pulumi("up", "--yes", "--skip-preview", *PARALLEL)


# --- the tests ----------------------------------------------------------------------------


def test_up_creates_exactly_the_two_vms(deployed) -> None:
    project, vms = deployed.project, vcsim_vms(deployed.vcsim)
    s = project.settings()
    assert set(vms) - set(deployed.before) == set(NODES)
    assert set(deployed.before) <= set(vms)
    assert vms[s.template].template
    expected = expected_documents(project)
    outputs = json.loads(project.pulumi("stack", "output", "--json").stdout)
    for node in s.nodes:
        vm = vms[node.name]
        assert not vm.template
        assert vm.power == "poweredOn", node.name
        assert (vm.cpus, vm.memory_mb, vm.disks_kb) == (2, 2048, (20 * GIB_IN_KB,)), node.name
        assert vm.extra[preflight.STACK_MARKER] == "repo-cluster/sim"
        user_data, meta_data = vm.document("userdata"), vm.document("metadata")
        assert user_data.startswith("#cloud-config\n")
        assert yaml.safe_load(user_data)["hostname"] == node.name
        assert yaml.safe_load(meta_data)["instance-id"] == f"{node.name}.{s.domain}"
        assert (user_data, meta_data) == expected[node.name], node.name
        assert outputs["nodes"][node.name]["vm_uuid"] == vm.uuid


def test_no_secret_byte_in_any_vm_extra_config(deployed) -> None:
    """What vCenter, the .vmx, a backup or a clone shows of each VM holds no private key at
    all (the VM makes its own host key), no keyring, no auth_pass."""
    project, vms = deployed.project, vcsim_vms(deployed.vcsim)
    secrets = state_secrets(project)
    needles = [secrets.vrrp_auth_pass, secrets.ceph_keyring, "auth_pass", "[client."]
    needles += [ln for k in secrets.host_keys for ln in k.private.splitlines()[-3:-1]]
    needles += ["PRIVATE KEY"]
    for node in project.settings().nodes:
        texts = vms[node.name].readable()
        for needle in needles:
            assert not any(needle in text for text in texts), f"{node.name}: {needle[:12]}..."
        assert "ssh_keys" not in yaml.safe_load(vms[node.name].document("userdata"))


def test_no_secret_in_the_state_outside_its_secret_envelopes(deployed) -> None:
    """``pulumi stack export`` (no --show-secrets): every secret is ciphertext; no private
    key, keyring or auth_pass in the clear (the shared host keys are in it, encrypted)."""
    project = deployed.project
    secrets = state_secrets(project)
    export = project.pulumi("stack", "export").stdout
    needles = ["PRIVATE KEY", secrets.vrrp_auth_pass, secrets.ceph_keyring]
    needles += [ln for k in secrets.host_keys for ln in k.private.splitlines()[-3:-1]]
    for needle in needles:
        assert needle not in export, needle[:12]
    assert "ciphertext" in export  # the secrets are in it, encrypted


def test_a_second_up_changes_nothing(deployed) -> None:
    project = deployed.project
    before = vcsim_vms(deployed.vcsim)
    code, plan = preview(project, "--expect-no-changes")
    assert code == 0 and changes(plan) == [], changes(plan)
    out = project.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes", "--json")
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    (summary,) = [e["summaryEvent"] for e in events if "summaryEvent" in e]
    assert set(summary["resourceChanges"]) == {"same"}, summary
    assert vcsim_vms(deployed.vcsim) == before


def test_refresh_finds_no_drift(deployed) -> None:
    """What `pulumi refresh` would write, without writing it (the module's stack stays)."""
    out = deployed.project.pulumi(
        "refresh", "--preview-only", "--expect-no-changes", "--json", *PARALLEL, check=False
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    summary = json.loads(out.stdout)["changeSummary"]
    assert set(summary) == {"same"} and summary["same"] >= 3, summary


def test_after_a_refresh_the_plan_is_empty(deployed) -> None:
    code, plan = preview(deployed.project, "--refresh", "--expect-no-changes")
    if code != 0 and SWAP_FAULT in json.dumps(plan):
        pytest.xfail("vcsim stores no swapPlacement: the refreshed state fails the provider")
    assert code == 0 and changes(plan) == [], changes(plan)


def test_a_priority_change_touches_no_vm(deployed) -> None:
    """The priority lives in keepalived.conf, a secret file the converge brings (converge is
    off here): no VM and no guestinfo changes."""
    project = deployed.project
    project.config("repo-cluster:nodes[1].priority", "90")
    try:
        code, plan = preview(project)
    finally:
        project.config("repo-cluster:nodes[1].priority", "100")
    assert code == 0, plan
    assert changes(plan) == [], changes(plan)


def test_a_bigger_disk_plans_in_place_updates(deployed) -> None:
    project = deployed.project
    project.config("repo-cluster:diskGb", "30")
    try:
        code, plan = preview(project)
    finally:
        project.pulumi("config", "rm", "repo-cluster:diskGb")  # back to the default, 20
    assert code == 0, plan
    assert sorted(changes(plan)) == [
        ("update", "repo-cluster-repo1-vm"),
        ("update", "repo-cluster-repo2-vm"),
    ]
    for name in ("repo-cluster-repo1-vm", "repo-cluster-repo2-vm"):
        kinds = diff_kinds(plan, name)
        assert kinds.get("disks[0].size") == "update", kinds
        assert all(k == "disks[0].size" or k in CLONE_NOISE for k in kinds), kinds


def test_a_first_boot_change_updates_the_vms_in_place(fresh) -> None:
    """A change of a file first boot writes (the notify script's mount point) updates each
    VM's guestinfo in place: same VM, still powered on, the new user-data."""
    before = vcsim_vms(fresh.vcsim)
    fresh.project.config("repo-cluster:mountPoint", "/srv/veeamrepo")
    up_in_place(fresh.project)
    after = vcsim_vms(fresh.vcsim)
    expected = expected_documents(fresh.project)
    for name in NODES:
        new, old = after[name], before[name]
        assert (new.moref, new.uuid, new.power) == (old.moref, old.uuid, "poweredOn"), name
        assert (new.cpus, new.memory_mb, new.disks_kb) == (old.cpus, old.memory_mb, old.disks_kb)
        assert new.document("metadata") == old.document("metadata")
        assert new.document("userdata") != old.document("userdata")
        assert new.document("userdata") == expected[name][0]
    code, plan = preview(fresh.project, "--expect-no-changes")
    assert code == 0 and changes(plan) == [], changes(plan)


def test_a_bigger_disk_grows_the_disks_in_place(fresh) -> None:
    before = vcsim_vms(fresh.vcsim)
    fresh.project.config("repo-cluster:diskGb", "30")
    up_in_place(fresh.project)
    after = vcsim_vms(fresh.vcsim)
    for name in NODES:
        new, old = after[name], before[name]
        assert (new.moref, new.uuid, new.power) == (old.moref, old.uuid, "poweredOn"), name
        assert new.disks_kb == (30 * GIB_IN_KB,), name
        assert new.extra == old.extra, name
    code, plan = preview(fresh.project, "--expect-no-changes")
    assert code == 0 and changes(plan) == [], changes(plan)


def test_destroy_removes_the_vms_and_keeps_the_template(deployed) -> None:
    """Last: it takes the module's stack down."""
    project, vc = deployed.project, deployed.vcsim
    assert set(NODES) <= set(vcsim_vms(vc))
    project.pulumi("destroy", "--yes", "--skip-preview", *PARALLEL)
    vms = vcsim_vms(vc)
    assert set(vms) == set(deployed.before)
    assert vms[project.settings().template].template
    state = json.loads(project.pulumi("stack", "export").stdout)
    assert not state["deployment"].get("resources")
