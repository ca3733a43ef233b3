"""NodeConverge: the provider driven directly with a fake runner, and its registration under
Pulumi mocks (inputs, secrets, dependency on the VM)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs

from components import node_converge as cr
from components.bundle import PATHS, Secrets, hostkeys, render_node
from tests.kit import stack_settings

pytestmark = pytest.mark.unit

KEYS = hostkeys.generate("root@test")


@pytest.fixture(scope="module")
def bundle():
    s = stack_settings("sim")
    secrets = Secrets.resolve(s, host_keys=KEYS, vrrp_auth_pass="unit1234")
    return render_node(s, s.nodes[0], secrets, ("ssh-ed25519 AAAA operator",))


class FakeRunner:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.converged: list[dict[str, Any]] = []
        self.new_vm: list[bool] = []
        self.released: list[dict[str, Any]] = []

    def converge(self, props: dict[str, Any], new_vm: bool) -> dict[str, Any]:
        self.converged.append(props)
        self.new_vm.append(new_vm)
        if self.error:
            raise RuntimeError(self.error)
        return {
            "changed": ["/etc/a"],
            "count": 1,
            "first_contact_fingerprint": None,
            "host_key": "SHA256:k",
            "verified": "published",
        }

    def release(self, props: dict[str, Any]) -> None:
        self.released.append(props)


def props(**over: Any) -> dict[str, Any]:
    base = {
        "vm_id": "4216a0c4-0001",
        "node": "repo1",
        "digest": "d1",
        "bundle": "{}",
        "ip": "198.18.50.161",
        "ssh_user": "root",
        "key_file": "/k",
        "known_host_keys": ["ssh-ed25519 AAAA"],
        "trust_first_contact": False,
    }
    return {**base, **over}


DIFFS = [
    pytest.param({}, False, id="same inputs: no change"),
    pytest.param({"digest": "d2"}, True, id="new bundle digest: update"),
    pytest.param({"ip": "198.18.50.171"}, True, id="new address: update"),
    pytest.param({"known_host_keys": ["ssh-rsa BBBB"]}, True, id="new host keys: update"),
    # where a new VM's node is looked at: no reason to converge a running node again
    pytest.param({"config": {"repo-cluster:vip": "x"}}, False, id="new config map: no change"),
]


@pytest.mark.parametrize(("over", "changes"), DIFFS)
def test_diff_updates_a_node_in_place(over, changes):
    olds = {**props(), "changed": ["/x"], "count": 1, "__provider": "p"}
    d = cr.NodeConvergeProvider(FakeRunner()).diff("repo1-converge", olds, props(**over))
    assert d.changes is changes
    assert not d.replaces
    assert not d.delete_before_replace


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # what a dynamic provider sees for unknowns


@pytest.mark.parametrize("vm_id", ["4216a0c4-0002", UNKNOWN])
def test_a_replaced_vm_replaces_the_step_deleting_first(vm_id):
    """The engine then deletes the step (its delete releases the volume on the old VM) before
    the old VM goes; the new step's create converges the new VM."""
    olds = {**props(), "changed": ["/x"], "count": 1, "__provider": "p"}
    d = cr.NodeConvergeProvider(FakeRunner()).diff("repo1-converge", olds, props(vm_id=vm_id))
    assert d.changes and d.replaces == ["vm_id"] and d.delete_before_replace


def test_create_and_update_converge_and_keep_inputs():
    runner = FakeRunner()
    provider = cr.NodeConvergeProvider(runner)
    created = provider.create({**props(), "changed": None, "count": None, "__provider": "p"})
    assert created.id == "repo1-converge"
    assert created.outs == {**props(), "changed": ["/etc/a"], "count": 1,
                            "first_contact_fingerprint": None, "deferred": None,
                            "host_key": "SHA256:k", "verified": "published"}  # fmt: skip
    assert runner.converged == [props()]  # results and __provider are not runner inputs
    updated = provider.update("repo1-converge", created.outs, props(digest="d2"))
    assert updated.outs["digest"] == "d2"
    assert runner.converged[-1]["digest"] == "d2"


def test_only_a_new_vm_is_trusted_by_the_key_it_publishes():
    """Create and a replaced VM: the node is new (its published key read, record forgotten);
    any other update: the node was converged and serves the shared key."""
    runner = FakeRunner()
    provider = cr.NodeConvergeProvider(runner)
    created = provider.create(props())
    provider.update("repo1-converge", created.outs, props(digest="d2"))
    provider.update("repo1-converge", created.outs, props(vm_id="4216a0c4-0002"))
    assert runner.new_vm == [True, False, True]


VCENTER = {
    "server": "127.0.0.1:8989",
    "user": "user",
    "unverified_ssl": True,
    "stack_id": "repo-cluster/sim",
}


def test_runner_reads_the_published_key_from_vcenter_and_trusts_exactly_it(tmp_path, monkeypatch):
    """A new VM: the key is waited for (the VM is booting) with the stack's vCenter and
    marker; with trust_first_contact it is read once (a VM publishing none is then a first
    contact). The target trusts exactly that key, for that node."""
    from components.vcenter import published

    key = hostkeys.generate("root@repo1")[0].public
    calls: list[tuple[str, Any]] = []

    def wait(vc, stack_id, node, timeout, log=None):
        calls.append(("wait", (vc, stack_id, node)))
        return key

    def read(vc, stack_id, names):
        calls.append(("read", (vc, stack_id, tuple(names))))
        return {}

    monkeypatch.setattr(published, "wait", wait)
    monkeypatch.setattr(published, "read", read)
    p = props(vcenter=VCENTER, vcenter_password="pass", record=str(tmp_path / "r.json"))
    runner = cr.SshRunner()
    assert runner._published(p, once=False) == key
    vc = published.VCenter("127.0.0.1:8989", "user", "pass", True)
    assert calls == [("wait", (vc, "repo-cluster/sim", "repo1"))]
    assert runner._published(p, once=True) is None
    assert calls[-1] == ("read", (vc, "repo-cluster/sim", ("repo1",)))
    assert runner._published(props(), once=False) is None  # no vCenter given
    target = runner._target(p, False, key)
    assert (target.published_key, target.record) == (key, str(tmp_path / "r.json"))
    assert runner._target(p, False).published_key is None
    assert target.first_contact_secrets is False
    assert "pass" not in repr(vc)  # the password never shows in a message


class DownRunner(FakeRunner):
    def converge(self, props: dict[str, Any], new_vm: bool) -> dict[str, Any]:
        raise cr.NodeUnreachable("198.18.50.161:22: no SSH after 30s")


def test_a_node_that_is_down_defers_its_update_and_holds_up_no_other_node():
    """The steps run in start order: a failed repo1 step would skip repo2's. A down node's
    update is deferred instead: its outputs keep the old digest, so the next up tries again
    (and the ClusterCheck fails this one, naming the node)."""
    provider = cr.NodeConvergeProvider(DownRunner())
    olds = {**props(), "changed": ["/x"], "count": 1, "deferred": None, "__provider": "p"}
    outs = provider.update("repo1-converge", olds, props(digest="d2")).outs
    assert outs["digest"] == "d1" and outs["changed"] == ["/x"]
    assert "repo1: converge deferred to the next pulumi up" in outs["deferred"]
    assert provider.diff("repo1-converge", outs, props(digest="d2")).changes
    with pytest.raises(cr.NodeUnreachable):  # a new VM must converge: no deferring a create
        provider.create(props())


def test_wait_for_ssh_gives_up_on_a_closed_port_with_node_unreachable():
    with pytest.raises(cr.NodeUnreachable, match="no SSH after 1s"):
        cr.wait_for_ssh("127.0.0.1", port=9, timeout=1)


def test_create_fails_with_the_converge_error():
    provider = cr.NodeConvergeProvider(FakeRunner(error="repo1: keepalived: boom"))
    with pytest.raises(RuntimeError, match="repo1: keepalived: boom"):
        provider.create(props())


def test_delete_releases():
    runner = FakeRunner()
    cr.NodeConvergeProvider(runner).delete("repo1-converge", props())
    assert runner.released == [props()]
    assert runner.converged == []


def test_release_unmounts_before_keepalived_stops_and_never_lazily():
    cmd = cr.release_command()
    assert "umount -l" not in cmd and "--lazy" not in cmd
    # the notify script's STOP (locked, holders killed, labelled volume only) comes first ...
    assert cmd.index("/usr/local/bin/keepalivednotify.sh INSTANCE pulumi-delete STOP") < cmd.index(
        "systemctl stop keepalived.service"
    )
    # ... and a failed release stops before keepalived would hand the VIP to the peer
    assert "|| { echo 'volume not released: keepalived left running' >&2; exit 1; }" in cmd


def test_release_is_run_by_the_shell_in_that_order(tmp_path):
    """Run the command for real with stand-ins on PATH: a failing release never stops keepalived."""
    import subprocess

    log = tmp_path / "log"
    for fails in (False, True):
        log.write_text("")
        script = tmp_path / "keepalivednotify.sh"
        script.write_text(f"#!/bin/sh\necho release >> {log}\nexit {1 if fails else 0}\n")
        script.chmod(0o755)
        (tmp_path / "systemctl").write_text(f"#!/bin/sh\necho stop >> {log}\n")
        (tmp_path / "systemctl").chmod(0o755)
        cmd = cr.release_command().replace(PATHS.notify_script, str(script))
        r = subprocess.run(
            ["sh", "-c", cmd], env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True
        )
        assert log.read_text().split() == (["release"] if fails else ["release", "stop"])
        assert (r.returncode != 0) is fails


def test_bundle_json_round_trip(bundle):
    back = cr.bundle_from_json(cr.bundle_to_json(bundle))
    assert back.node == bundle.node
    assert back.files == bundle.files
    assert (back.packages, back.services, back.package_sources) == (
        bundle.packages,
        bundle.services,
        bundle.package_sources,
    )


# --------------------------------------------------------------------------- under mocks


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, dict[str, Any]] = {}
        self.dependencies: dict[str, list[str]] = {}
        self.secret_outputs: dict[str, list[str]] = {}

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[args.name] = args.inputs
        return f"{args.name}-id", {k: v for k, v in args.inputs.items() if k != "__provider"}

    def call(self, args: Any) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


class Monitor(MockMonitor):
    def RegisterResource(self, request: Any) -> Any:
        assert isinstance(self.mocks, Recorder)
        self.mocks.dependencies[request.name] = list(request.dependencies)
        self.mocks.secret_outputs[request.name] = list(request.additionalSecretOutputs)
        return super().RegisterResource(request)


def test_registration_under_mocks(bundle):
    mocks = Recorder()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="repo-cluster", stack="sim", preview=False,
                             monitor=Monitor(mocks))  # fmt: skip
    publics = [k.public for k in KEYS]

    @pulumi.runtime.test
    def program() -> None:
        vm = pulumi.CustomResource("vsphere:index/virtualMachine:VirtualMachine", "repo1-vm", {})
        cr.NodeConverge(
            "repo1-converge",
            cr.NodeConvergeArgs(
                vm_id=vm.id,
                bundle=pulumi.Output.secret(bundle),
                ip=str(bundle.node.ip),
                ssh_user="root",
                key_file="/keys/operator",
                known_host_keys=publics,
                trust_first_contact=True,
            ),
            opts=pulumi.ResourceOptions(depends_on=[vm]),
        )

    program()
    inputs = mocks.inputs["repo1-converge"]
    assert rpc.is_rpc_secret(inputs["bundle"]), "the serialized bundle must be a secret input"
    back = cr.bundle_from_json(rpc.unwrap_rpc_secret(inputs["bundle"]))
    assert back.files == bundle.files
    assert inputs["digest"] == bundle.digest, "the digest is public: previews show it change"
    assert inputs["node"] == "repo1"
    assert inputs["vm_id"] == "repo1-vm-id"
    assert inputs["ip"] == "198.18.50.161"
    assert inputs["known_host_keys"] == publics
    assert inputs["trust_first_contact"] is True
    assert "__provider" in inputs
    assert mocks.secret_outputs["repo1-converge"] == ["bundle", "vcenter_password"]
    deps = mocks.dependencies["repo1-converge"]
    assert [d.rsplit("$", 1)[-1] for d in deps] == [
        "vsphere:index/virtualMachine:VirtualMachine::repo1-vm"
    ], f"NodeConverge must depend on its VM, got {deps}"
    # no secret value anywhere in the public inputs
    public = {k: v for k, v in inputs.items() if k not in ("bundle", "__provider")}
    for key in KEYS:
        assert key.private.splitlines()[-2] not in repr(public)
    assert "unit1234" not in repr(public)


def test_wait_for_ssh_returns_once_the_port_listens_and_times_out_otherwise():
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cr.wait_for_ssh("127.0.0.1", srv.getsockname()[1], timeout=5)
        port = srv.getsockname()[1]
    with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port}: no SSH after 0s"):
        cr.wait_for_ssh("127.0.0.1", port, timeout=0)
