"""The Pulumi program under mocks: what it asks vSphere to build, and what it keeps secret."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc

from components import config as settings
from components.bundle import Secrets, authorized_keys, render_node
from components.bundle.guestinfo import encode
from components.bundle.hostkeys import HostKey
from tests.unit.pulumi_mocks import TSIG_SECRET

pytestmark = pytest.mark.unit

VM = "vsphere:index/virtualMachine:VirtualMachine"
PROVIDER = "pulumi:providers:vsphere"
HOST_KEYS = "pulumi-python:dynamic/repo-cluster:HostKeys"
AUTH_PASS = "pulumi-python:dynamic/repo-cluster:AuthPass"
RULE = "vsphere:index/computeClusterVmAntiAffinityRule:ComputeClusterVmAntiAffinityRule"
PASSWORD = "vc-Pa55-word"
KEYRING = "AQBvaBFZAAAAABAAcUVJcmyBJ2uZ0lA7cHl2AQ=="
SECRET_KEYS = ("vsphere:password", "repo-cluster:cephKeyring")


@pytest.fixture(scope="session")
def lab_config(stack_config: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The lab stack with its secrets set (``pulumi config set --secret``), plus overrides."""

    def make(**overrides: Any) -> dict[str, Any]:
        extra = {"vsphere:password": PASSWORD, "repo-cluster:cephKeyring": KEYRING}
        return stack_config("lab", **{**extra, **overrides})

    return make


@pytest.fixture(scope="session")
def run_lab(run_stack: Callable[..., Any], lab_config: Callable[..., Any]) -> Callable[..., Any]:
    def run(**kw: Any) -> Any:
        config = kw.pop("config", None) or lab_config()
        return run_stack(config, secret_keys=kw.pop("secret_keys", SECRET_KEYS), **kw)

    return run


def program_secrets(run: Any) -> tuple[tuple[HostKey, ...], str]:
    """The host keys and auth_pass the program got from its (mocked) dynamic resources."""
    (keys,) = run.of_type(HOST_KEYS)
    out = {k: rpc.unwrap_rpc_secret(v) for k, v in keys.outputs.items()}
    host_keys = tuple(
        HostKey(t, priv, pub)
        for t, priv, pub in zip(out["types"], out["private_keys"], out["public_keys"], strict=True)
    )
    (auth,) = run.of_type(AUTH_PASS)
    return host_keys, rpc.unwrap_rpc_secret(auth.outputs["result"])


def decode(value: str) -> bytes:
    return gzip.decompress(base64.b64decode(value))


def plain_strings(value: Any) -> Iterator[str]:
    """Every string in a registered value that is NOT under a secret marker."""
    if rpc.is_rpc_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v)


@pytest.fixture(scope="module")
def lab(run_lab) -> Any:
    result = run_lab()
    assert result.error is None, result.error
    return result


# --------------------------------------------------------------------------- what gets built


def test_lab_builds_two_vms_cloned_and_customized(lab) -> None:
    vc = lab.mocks
    assert sorted(lab.vms) == ["repo1", "repo2"]
    assert len(lab.of_type(VM)) == 2
    for name, ip in (("repo1", "10.2.50.161"), ("repo2", "10.2.50.162")):
        vm = lab.vms[name].inputs
        assert (vm["numCpus"], vm["memory"]) == (2, 2048)
        assert vm["disks"] == [
            {"label": "disk0", "size": 20, "thinProvisioned": True, "eagerlyScrub": False}
        ]
        assert (vm["guestId"], vm["scsiType"], vm["firmware"]) == (
            vc.TEMPLATE["guestId"],
            vc.TEMPLATE["scsiType"],
            vc.TEMPLATE["firmware"],
        )
        assert vm["networkInterfaces"] == [{"networkId": vc.NETWORK_ID, "adapterType": "vmxnet3"}]
        assert (vm["resourcePoolId"], vm["datastoreId"]) == (vc.RESOURCE_POOL_ID, vc.DATASTORE_ID)
        assert vm["waitForGuestNetRoutable"] is False
        assert vm["extraConfigRebootRequired"] is False
        clone = vm["clone"]
        assert clone["templateUuid"] == vc.TEMPLATE_UUID
        assert clone["customize"] == {
            "linuxOptions": {"hostName": name, "domain": "skunkworks.local"},
            "networkInterfaces": [{"ipv4Address": ip, "ipv4Netmask": 24}],
            "ipv4Gateway": "10.2.50.1",
            "dnsServerLists": ["10.2.50.10"],
            "dnsSuffixLists": ["skunkworks.local"],
        }


def test_guestinfo_is_the_rendered_first_boot_documents(lab, lab_config, root) -> None:
    """guestinfo holds the first-boot documents rendered with the state's secrets: byte for
    byte, and no longer the bundle's files (the secret ones arrive with the converge)."""
    s = settings.load(lab_config())
    host_keys, auth_pass = program_secrets(lab)
    secrets = Secrets.resolve(s, host_keys=host_keys, vrrp_auth_pass=auth_pass)
    authorized = authorized_keys(s, root)
    for node in s.nodes:
        bundle = render_node(s, node, secrets, authorized)
        extra = rpc.unwrap_rpc_secret(lab.vms[node.name].inputs["extraConfig"])
        assert extra["guestinfo.userdata.encoding"] == "gzip+base64"
        assert extra["guestinfo.metadata.encoding"] == "gzip+base64"
        assert decode(extra["guestinfo.userdata"]) == bundle.user_data.encode()
        assert decode(extra["guestinfo.metadata"]) == bundle.meta_data.encode()
        assert extra["repo-cluster.stack"] == "repo-cluster/lab"
        # no key in it at all: the VM makes its own and publishes the public half
        assert "ssh_keys" not in yaml.safe_load(bundle.user_data)
        assert b"PRIVATE KEY" not in decode(extra["guestinfo.userdata"])


def test_no_secret_byte_in_any_vm_extra_config(lab) -> None:
    """Whoever reads the VM (vCenter, .vmx, backup, clone) finds no shared private key, no
    keyring, no auth_pass: every extraConfig value decoded, every written file decoded."""
    host_keys, auth_pass = program_secrets(lab)
    needles = [KEYRING, auth_pass, "auth_pass", "BEGIN CEPH", "[client."]
    needles += [line for k in host_keys for line in k.private.splitlines()[-3:-1]]
    for name, vm in lab.vms.items():
        extra = rpc.unwrap_rpc_secret(vm.inputs["extraConfig"])
        texts = [str(v) for v in extra.values()]
        texts += [decode(extra[k]).decode() for k in ("guestinfo.userdata", "guestinfo.metadata")]
        doc = yaml.safe_load(decode(extra["guestinfo.userdata"]))
        texts += [base64.b64decode(w["content"]).decode() for w in doc["write_files"]]
        for needle in needles:
            assert not any(needle in text for text in texts), f"{name}: {needle[:12]}..."
        paths = {w["path"] for w in doc["write_files"]}
        assert "/etc/keepalived/keepalived.conf" not in paths
        assert not any(p.startswith("/etc/ssh/") or p.endswith(".keyring") for p in paths)


def test_a_replaced_vm_is_deleted_before_its_successor_is_created(lab) -> None:
    """The successor has the same name and IP: vCenter refuses it while the old VM exists."""
    assert {n: lab.mocks.delete_before_replace[f"repo-cluster-{n}-vm"] for n in lab.vms} == {
        "repo1": True,
        "repo2": True,
    }


def test_lookups_and_resources_use_the_explicit_provider(lab) -> None:
    (provider,) = lab.of_type(PROVIDER)
    assert provider.inputs["vsphereServer"] == "vcenter.skunkworks.local"
    fns = sorted(c.token.rsplit(":", 1)[-1] for c in lab.mocks.calls)
    assert fns == sorted(
        ["getDatacenter", "getComputeCluster", "getDatastore", "getNetwork", "getVirtualMachine"]
    )
    assert all("repo-cluster-vsphere::" in c.provider for c in lab.mocks.calls)
    # every vSphere resource too: a default provider would read the password in clear
    vsphere_resources = [r for r in lab.mocks.registrations if r.typ.startswith("vsphere:")]
    assert len(vsphere_resources) == 3
    assert all("repo-cluster-vsphere::" in r.provider for r in vsphere_resources)


def test_anti_affinity_rule_holds_both_vms(lab) -> None:
    (rule,) = lab.of_type(RULE)
    assert rule.inputs["computeClusterId"] == lab.mocks.CLUSTER_ID
    assert rule.inputs["virtualMachineIds"] == [lab.vms["repo1"].id, lab.vms["repo2"].id]


def test_exports(lab) -> None:
    assert lab.exports["vip"] == "10.2.50.160"
    assert lab.exports["dns_name"] == "repo-cluster.skunkworks.local"
    assert lab.exports["nodes"] == {
        "repo1": {"ip": "10.2.50.161", "vm_uuid": lab.vms["repo1"].id, "priority": 101},
        "repo2": {"ip": "10.2.50.162", "vm_uuid": lab.vms["repo2"].id, "priority": 100},
    }
    host_keys, _ = program_secrets(lab)
    assert lab.exports["ssh_host_key_fingerprints"] == {k.type: k.fingerprint for k in host_keys}
    assert set(lab.exports["ssh_host_key_fingerprints"]) == {"ed25519", "ecdsa", "rsa"}


def test_sim_stack_has_no_anti_affinity_rule(run_stack, stack_config) -> None:
    sim = run_stack(stack_config("sim"), stack="sim")
    assert sim.error is None, sim.error
    assert sorted(sim.vms) == ["repo1", "repo2"]
    assert sim.vms["repo2"].inputs["clone"]["customize"]["networkInterfaces"] == [
        {"ipv4Address": "198.18.50.162", "ipv4Netmask": 24}
    ]
    assert sim.of_type(RULE) == []
    # resourcePool: the VMs go to the named pool (the lab stack keeps the cluster's own)
    pools = {vm.inputs["resourcePoolId"] for vm in sim.vms.values()}
    assert pools == {sim.mocks.HOST_POOL_ID}


DNS = "pulumi-python:dynamic/repo-cluster:DnsRecord"


def test_dns_record_carries_the_vip_and_a_secret_key(run_stack, stack_config) -> None:
    sim = run_stack(stack_config("sim"), stack="sim")
    assert sim.error is None, sim.error
    [rec] = sim.of_type(DNS)
    inputs = {k: rpc.unwrap_rpc_secret(v) for k, v in rec.inputs.items()}
    assert (inputs["server"], inputs["port"], inputs["zone"]) == (
        "127.0.0.1",
        5353,
        "skunkworks.test",
    )
    assert (inputs["name"], inputs["fqdn"], inputs["address"]) == (
        "repo-cluster",
        "repo-cluster.skunkworks.test",
        "198.18.50.160",
    )
    assert rpc.is_rpc_secret(rec.inputs["tsig_secret"])
    assert inputs["tsig_secret"] == TSIG_SECRET
    assert "tsig_secret" in sim.mocks.secret_outputs[rec.name]
    assert TSIG_SECRET not in json.dumps(sim.exports)


def test_no_dns_server_no_record(run_stack, stack_config) -> None:
    run = run_stack(stack_config("sim", **{"repo-cluster:dnsServer": None}), stack="sim")
    assert run.error is None, run.error
    assert run.of_type(DNS) == []


def test_dns_without_its_secret_stops_before_any_resource(run_stack, stack_config) -> None:
    run = run_stack(stack_config("sim", **{"repo-cluster:dnsTsigSecret": None}), stack="sim")
    assert "repo-cluster:dnsTsigSecret: required when repo-cluster:dnsTsigKeyName" in str(run.error)
    assert run.mocks.registrations == [] or all(
        r.typ.startswith("pulumi:pulumi:Stack") for r in run.mocks.registrations
    )


CONVERGE = "pulumi-python:dynamic/repo-cluster:NodeConverge"


def test_each_node_gets_a_converge_step_with_its_bundle_as_a_secret(lab) -> None:
    steps = {r.name: r for r in lab.of_type(CONVERGE)}
    assert sorted(steps) == ["repo-cluster-repo1-converge", "repo-cluster-repo2-converge"]
    for name, ip in (("repo1", "10.2.50.161"), ("repo2", "10.2.50.162")):
        step = steps[f"repo-cluster-{name}-converge"]
        assert step.inputs["ip"] == ip
        assert step.inputs["vm_id"] == lab.vms[name].id
        assert rpc.is_rpc_secret(step.inputs["bundle"])
        assert step.inputs["trust_first_contact"] is False
        # the first converge reads the key the VM publishes from this vCenter, for this stack
        assert step.inputs["vcenter"] == {
            "server": "vcenter.skunkworks.local",
            "user": "administrator@vsphere.local",
            "unverified_ssl": False,
            "stack_id": "repo-cluster/lab",
        }
        assert rpc.unwrap_rpc_secret(step.inputs["vcenter_password"]) == PASSWORD
        assert step.inputs.get("confirmed_host_key") is None  # nodes[].hostKey not set
        assert step.inputs["first_contact_secrets"] is False  # not a lab stack
        assert step.inputs["record"].endswith("/repo-cluster/lab/first-contact.json")


def _node_dependencies(run: Any) -> dict[str, list[str]]:
    """Each converge step's dependencies on VMs and other converge steps (not on the secrets
    its bundle is made of)."""
    return {
        name: [d for d in deps if d.endswith(("-vm", "-converge"))]
        for name, deps in run.mocks.dependencies.items()
    }


def test_nodes_converge_one_after_the_other_highest_priority_first(lab) -> None:
    """The first keepalived start decides the first MASTER (nopreempt): repo1 (101) first."""
    deps = _node_dependencies(lab)
    assert deps["repo-cluster-repo1-converge"] == ["repo-cluster-repo1-vm"]
    assert deps["repo-cluster-repo2-converge"] == [
        "repo-cluster-repo1-converge",
        "repo-cluster-repo2-vm",
    ]


CHECK = "pulumi-python:dynamic/repo-cluster:ClusterCheck"


def test_up_ends_with_the_cluster_check_after_every_converge(lab) -> None:
    [check] = lab.of_type(CHECK)
    assert sorted(d for d in lab.mocks.dependencies[check.name] if d.endswith("-converge")) == [
        "repo-cluster-repo1-converge",
        "repo-cluster-repo2-converge",
    ]
    inputs = {k: rpc.unwrap_rpc_secret(v) for k, v in check.inputs.items()}
    # what the check rebuilds its settings from: the stack's config, no secret in it
    assert inputs["config"]["repo-cluster:vip"] == "10.2.50.160/24"
    assert not any(k.endswith(("Secret", "Pass", "Keyring", "password")) for k in inputs["config"])
    assert len(inputs["digests"]) == 2 and all(len(d) == 64 for d in inputs["digests"])


def test_converge_order_follows_priority_not_the_list(run_lab, lab_config) -> None:
    nodes = [dict(n) for n in lab_config()["repo-cluster:nodes"]]
    nodes[0]["priority"], nodes[1]["priority"] = 100, 101
    run = run_lab(config=lab_config(**{"repo-cluster:nodes": nodes}))
    assert run.error is None, run.error
    assert _node_dependencies(run)["repo-cluster-repo1-converge"] == [
        "repo-cluster-repo1-vm",
        "repo-cluster-repo2-converge",
    ]


def day_two(
    run_lab: Any,
    lab_config: Any,
    monkeypatch: Any,
    existing: set[str],
    masters: frozenset[str] = frozenset(),
) -> Any:
    """The program on a stack whose nodes' VMs the preflight found (``existing``; those that
    report keepalived's MASTER state: ``masters``)."""
    from components.vcenter import preflight

    found = preflight.Found(frozenset(existing), masters=masters)
    monkeypatch.setattr(preflight, "run", lambda _s, _stack: found)
    run = run_lab(config=lab_config(**{"repo-cluster:preflight": True}))
    assert run.error is None, run.error
    return run


def test_once_the_vms_exist_one_node_changes_after_the_other_lowest_priority_first(
    run_lab, lab_config, monkeypatch
) -> None:
    """Day 2: repo2 (100) first, and repo1's VM (the MASTER's, 101) only after repo2's
    converge step, which ends with repo2 serving again: a change replacing both VMs
    replaces the BACKUP first and the MASTER last, so the VIP moves once."""
    run = day_two(run_lab, lab_config, monkeypatch, {"repo1", "repo2"})
    deps = _node_dependencies(run)
    assert deps["repo-cluster-repo2-vm"] == []
    assert deps["repo-cluster-repo2-converge"] == ["repo-cluster-repo2-vm"]
    assert deps["repo-cluster-repo1-vm"] == ["repo-cluster-repo2-converge"]
    assert deps["repo-cluster-repo1-converge"] == [
        "repo-cluster-repo1-vm",
        "repo-cluster-repo2-converge",
    ]
    order = [r.name for r in run.mocks.registrations]
    assert order.index("repo-cluster-repo1-vm") > order.index("repo-cluster-repo2-converge")
    [rollout] = run.of_type(ROLLOUT)
    assert rollout.inputs["existing"] == ["repo1", "repo2"]
    assert not any(d.endswith(("-vm", "-converge")) for d in run.mocks.dependencies[rollout.name])
    # the same resources as a first build: only the order differs
    first = run_lab()
    assert sorted((r.typ, r.name) for r in run.mocks.registrations) == sorted(
        (r.typ, r.name) for r in first.mocks.registrations
    )


def test_the_vm_that_reports_master_changes_last_whatever_its_priority(
    run_lab, lab_config, monkeypatch
) -> None:
    """After a failover repo2 (100) is MASTER: repo1's VM (the BACKUP, 101) goes first, and
    repo2's only after repo1 serves again, so the VIP moves once."""
    run = day_two(
        run_lab, lab_config, monkeypatch, {"repo1", "repo2"}, masters=frozenset({"repo2"})
    )
    deps = _node_dependencies(run)
    assert deps["repo-cluster-repo1-vm"] == []
    assert deps["repo-cluster-repo2-vm"] == ["repo-cluster-repo1-converge"]
    # no role reported (a VM without the tools' channel): by priority, as before
    run = day_two(run_lab, lab_config, monkeypatch, {"repo1", "repo2"})
    assert _node_dependencies(run)["repo-cluster-repo1-vm"] == ["repo-cluster-repo2-converge"]


def test_a_first_build_makes_every_vm_at_once(lab) -> None:
    assert _node_dependencies(lab)["repo-cluster-repo1-vm"] == []
    assert _node_dependencies(lab)["repo-cluster-repo2-vm"] == []


def test_a_node_whose_vm_is_gone_is_a_new_machine_for_the_rollout(
    run_lab, lab_config, monkeypatch
) -> None:
    run = day_two(run_lab, lab_config, monkeypatch, {"repo1"})
    [rollout] = run.of_type(ROLLOUT)
    assert rollout.inputs["existing"] == ["repo1"]
    assert _node_dependencies(run)["repo-cluster-repo1-vm"] == ["repo-cluster-repo2-converge"]


def test_converge_off_registers_no_converge_step(run_lab, lab_config) -> None:
    run = run_lab(config=lab_config(**{"repo-cluster:converge": False}))
    assert run.error is None, run.error
    assert sorted(run.vms) == ["repo1", "repo2"]
    assert run.of_type(CONVERGE) == []
    assert run.of_type(CHECK) == []


# --------------------------------------------------------------------------- change and stability


def _inputs_by_name(run: Any) -> dict[str, dict[str, Any]]:
    """Each registration's inputs; a converge step's without ``config`` (where it looks for
    a new VM's node serving: no input its diff watches)."""
    return {
        r.name: {k: v for k, v in r.inputs.items() if not (r.typ == CONVERGE and k == "config")}
        for r in run.mocks.registrations
    }


def test_second_up_registers_identical_inputs(lab, run_lab) -> None:
    state = {r.name: r for r in lab.mocks.registrations}
    again = run_lab(state=state)
    assert again.error is None, again.error
    assert _inputs_by_name(again) == _inputs_by_name(lab)


@pytest.mark.parametrize(
    "change",
    [
        {"priority": 99},  # repo2's VRRP priority: every node's rank config reads it
        {"ip": "10.2.50.170"},  # repo2's address: its customization and bundle change
    ],
    ids=["priority", "ip"],
)
def test_changing_one_node_changes_only_that_node(lab, run_lab, lab_config, change) -> None:
    nodes = [dict(n) for n in lab_config()["repo-cluster:nodes"]]
    nodes[1].update(change)
    state = {r.name: r for r in lab.mocks.registrations}
    changed = run_lab(config=lab_config(**{"repo-cluster:nodes": nodes}), state=state)
    assert changed.error is None, changed.error
    before, after = _inputs_by_name(lab), _inputs_by_name(changed)
    assert before.keys() == after.keys()
    differing = sorted(name for name in before if before[name] != after[name])
    # both converge steps (every node's rank config names the priorities it must outrank); the
    # cluster check runs again, and so does the VRRP rollout's look (for a per-node change it
    # finds nothing to roll). Priorities live in keepalived.conf (a secret file) and the rank
    # config, both brought by the converge only: no VM changes
    expected = ["repo-cluster-check", "repo-cluster-repo2-converge", "repo-cluster-vrrp"]
    expected += ["repo-cluster-repo1-converge"]
    if "ip" in change:  # the customization and the meta-data change; and every node's notify
        # script names the nodes' addresses (the only Ceph clients its fence may touch), a
        # file its first boot carries too: repo1's guestinfo changes (in place, no reboot)
        expected += ["repo-cluster-repo2-vm", "repo-cluster-repo1-vm"]
    assert differing == sorted(expected)


# --------------------------------------------------------------------------- secrets


def test_secrets_are_secret_outputs(lab, resolve) -> None:
    cluster = lab.namespace["cluster"]
    assert resolve(cluster.host_keys.private_keys)[1] is True
    assert resolve(cluster.host_keys.keys)[1] is True
    assert resolve(cluster.host_keys.public_keys)[1] is False
    assert resolve(cluster.auth_pass)[1] is True
    assert resolve(cluster.secrets)[1] is True
    for bundle in cluster.bundles.values():
        assert resolve(bundle)[1] is True


def test_secret_inputs_carry_the_secret_marker(lab) -> None:
    (provider,) = lab.of_type(PROVIDER)
    assert rpc.is_rpc_secret(provider.inputs["password"])
    assert rpc.unwrap_rpc_secret(provider.inputs["password"]) == PASSWORD
    for vm in lab.vms.values():
        assert rpc.is_rpc_secret(vm.inputs["extraConfig"])
    for step in lab.of_type(CONVERGE):
        assert rpc.is_rpc_secret(step.inputs["vcenter_password"])


def test_no_secret_in_clear_anywhere(lab) -> None:
    host_keys, auth_pass = program_secrets(lab)
    secret_values = [PASSWORD, KEYRING, auth_pass]
    # a line of each private key's secret part (its first lines are the same for every key)
    secret_values += [k.private.splitlines()[-2] for k in host_keys]
    registered = [r.inputs for r in lab.mocks.registrations]
    registered += [r.outputs for r in lab.mocks.registrations]
    clear = [s for value in registered for s in plain_strings(value)]
    clear.append(json.dumps(lab.exports))
    for secret in secret_values:
        assert not any(secret in text for text in clear)
    assert not any(lab.exports_secret.values())


def test_configured_auth_pass_is_used_and_secret(run_lab, lab_config, resolve) -> None:
    config = lab_config(**{"repo-cluster:vrrpAuthPass": "Xy7pQ2zR"})
    run = run_lab(config=config, secret_keys=(*SECRET_KEYS, "repo-cluster:vrrpAuthPass"))
    assert run.error is None, run.error
    assert run.of_type(AUTH_PASS) == []
    cluster = run.namespace["cluster"]
    secrets, is_secret = resolve(cluster.secrets)
    assert (secrets.vrrp_auth_pass, is_secret) == ("Xy7pQ2zR", True)
    assert resolve(cluster.auth_pass) == ("Xy7pQ2zR", True)


# --------------------------------------------------------------------------- failures


def test_invalid_config_stops_before_any_resource(run_lab, lab_config) -> None:
    config = lab_config(
        **{"repo-cluster:cpus": 0, "repo-cluster:vip": "10.2.50", "repo-cluster:datacenter": None}
    )
    run = run_lab(config=config)
    assert isinstance(run.error, pulumi.RunError)
    message = str(run.error)
    assert "3 problem(s)" in message
    for key in ("repo-cluster:cpus", "repo-cluster:vip", "repo-cluster:datacenter"):
        assert key in message
    assert run.mocks.registrations == []
    assert run.mocks.calls == []


def test_missing_operator_key_stops_before_any_resource(run_lab, lab_config, tmp_path) -> None:
    run = run_lab(config=lab_config(**{"repo-cluster:sshKeyFile": str(tmp_path / "nokey")}))
    assert isinstance(run.error, pulumi.RunError)
    assert f"repo-cluster:sshKeyFile: no public key in {tmp_path / 'nokey.pub'}" in str(run.error)
    assert run.mocks.registrations == []


def test_template_disk_larger_than_configured_disk_is_an_error(run_lab) -> None:
    run = run_lab(template_disk_gb=40)
    assert isinstance(run.error, pulumi.RunError)
    message = str(run.error)
    assert "20 GB" in message and "40 GB" in message and "'centos7-cloudinit'" in message
    kinds = {r.typ for r in run.mocks.registrations}
    assert kinds == {"repo-cluster:index:RepoCluster", PROVIDER}, "nothing built before the check"


def test_unknown_template_fails(run_lab, lab_config) -> None:
    run = run_lab(config=lab_config(**{"repo-cluster:template": "no-such-template"}))
    assert run.error is not None
    assert "no-such-template" in str(run.error)
    assert run.of_type(VM) == []


def test_encode_is_deterministic_gzip_base64(monkeypatch) -> None:
    text = "#cloud-config\nhostname: repo1\n" * 50
    monkeypatch.setattr("time.time", lambda: 1_000_000_000.0)
    first = encode(text)
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)
    assert encode(text) == first, "gzip must not stamp the current time"
    assert decode(encode(text)) == text.encode()
    assert len(encode(text)) < len(base64.b64encode(text.encode()))


ROLLOUT = "pulumi-python:dynamic/repo-cluster:VrrpRollout"


def test_a_cluster_wide_vrrp_change_goes_before_every_node_step(lab) -> None:
    """The rollout gets every node's keepalived.conf as one secret, and runs first."""
    [rollout] = lab.of_type(ROLLOUT)
    assert rpc.is_rpc_secret(rollout.inputs["confs"])
    confs = rpc.unwrap_rpc_secret(rollout.inputs["confs"])
    assert sorted(confs) == ["repo1", "repo2"]
    # the nodes, and those whose VM the program found (none looked at: preflight is off)
    assert rollout.inputs["nodes"] == ["repo1", "repo2"]
    assert rollout.inputs.get("existing") is None
    assert not any(d.endswith("-vm") for d in lab.mocks.dependencies[rollout.name])
    _, auth_pass = program_secrets(lab)
    for text in confs.values():
        assert f"auth_pass {auth_pass}" in base64.b64decode(text).decode()
    for step in lab.of_type(CONVERGE):
        assert rollout.name in lab.mocks.dependencies[step.name], step.name
