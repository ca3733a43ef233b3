"""The program on a stack that adopts the article's single server (Pulumi mocks: the shape)."""

from __future__ import annotations

from typing import Any

import pytest

from components.bundle.guestinfo import STACK_MARKER
from components.node import ADOPTED_KEEPS
from components.vcenter import preflight
from components.vcenter.adoption import AdoptedDisk, AdoptedVm
from tests.unit.test_program import _node_dependencies, lab_config, run_lab  # noqa: F401

pytestmark = pytest.mark.unit

FP = "SHA256:" + "Ab1+" * 10 + "xyz"
SERVER = AdoptedVm(
    name="repo1",
    uuid="4216d1b2-0000-0000-0000-000000000001",
    path="/dc1/vm/Veeam/repo1",
    cpus=1,
    memory_mb=4096,
    guest_id="centos7_64Guest",
    firmware="bios",
    scsi_type="pvscsi",
    tools_upgrade_policy="manual",
    swap_placement_policy="inherit",
    disks=(AdoptedDisk("disk-1000-0", 0, 40, True, False, "persistent", "sharingNone"),),
    nics=(("network-17", "vmxnet3"),),
    managed=False,
)


def adopting(run_lab: Any, lab_config: Any, monkeypatch: Any, vm: AdoptedVm = SERVER) -> Any:  # noqa: F811
    config = lab_config(**{"repo-cluster:preflight": True})
    config["repo-cluster:nodes"][0].update(adopt=True, hostKey=FP)
    found = preflight.Found(frozenset(), {"repo1": vm})
    monkeypatch.setattr(preflight, "run", lambda _s, _stack: found)
    run = run_lab(config=config)
    assert run.error is None, run.error
    return run


def test_the_server_is_imported_as_vcenter_holds_it(run_lab, lab_config, monkeypatch) -> None:  # noqa: F811
    run = adopting(run_lab, lab_config, monkeypatch)
    (vm,) = [r for r in run.mocks.registrations if r.name == "repo-cluster-repo1-vm"]
    assert vm.resource_id == SERVER.path  # imported, by its inventory path
    i = vm.inputs
    assert "clone" not in i  # never cloned nor customized
    assert (i["name"], i["numCpus"], i["memory"], i["guestId"]) == (
        "repo1",
        1,
        4096,
        "centos7_64Guest",
    )
    assert i["disks"] == [
        {
            "label": "disk-1000-0",
            "unitNumber": 0,
            "size": 40,
            "thinProvisioned": True,
            "eagerlyScrub": False,
            "diskMode": "persistent",
            "diskSharing": "sharingNone",
            "keepOnRemove": True,
        }
    ]
    assert i["networkInterfaces"] == [{"networkId": "network-17", "adapterType": "vmxnet3"}]
    # only the stack's marker: no first-boot document, no key
    assert i["extraConfig"] == {STACK_MARKER: "repo-cluster/lab"}
    assert i["extraConfigRebootRequired"] is False


def test_its_settings_stay_its_own() -> None:
    """Every setting but the disks, the extraConfig and the provider's own knobs is ignored:
    the size, placement, boot and tools settings are the VM's, whatever the stack says."""
    for key in (
        "numCpus",
        "memory",
        "resourcePoolId",
        "datastoreId",
        "folder",
        "firmware",
        "cpuHotAddEnabled",
        "bootRetryDelay",
        "syncTimeWithHost",
        "annotation",
    ):
        assert key in ADOPTED_KEEPS
    for key in ("disks", "extraConfig", "name", "toolsUpgradePolicy", "swapPlacementPolicy"):
        assert key not in ADOPTED_KEEPS


def test_a_first_adoption_converges_the_server_first(run_lab, lab_config, monkeypatch) -> None:  # noqa: F811
    """Its VM has no marker yet: a first build's order, the top priority (the server) first, so
    its keepalived starts first and it is the first MASTER; the new VM is made at once."""
    deps = _node_dependencies(adopting(run_lab, lab_config, monkeypatch))
    assert deps["repo-cluster-repo1-converge"] == ["repo-cluster-repo1-vm"]
    assert sorted(deps["repo-cluster-repo2-converge"]) == [
        "repo-cluster-repo1-converge",
        "repo-cluster-repo2-vm",
    ]


def test_differences_are_reported_not_forced(run_lab, lab_config, monkeypatch, caplog) -> None:  # noqa: F811
    run = adopting(run_lab, lab_config, monkeypatch)
    (repo2,) = [r for r in run.mocks.registrations if r.name == "repo-cluster-repo2-vm"]
    assert (repo2.inputs["numCpus"], repo2.inputs["memory"]) == (2, 2048)  # the stack's
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        "repo1: adopted as it is, with 1 vCPU(s), the stack's cpus is 2 (not changed)",
        "repo1: adopted as it is, with 4096 MB of memory, the stack's memoryMb is 2048 "
        "(not changed)",
        "repo1: adopted as it is, with a 40 GB first disk, the stack's diskGb is 20 (not changed)",
    ]
