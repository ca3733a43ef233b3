"""stack_secrets: a stack's host keys, auth_pass and config from `pulumi stack export` /
`pulumi config` JSON (sample documents shaped like the CLI's; the real CLI is the e2e tier's)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from components.bundle import hostkeys
from components.cli import stack_state as stack_secrets
from tests.kit import ROOT

pytestmark = pytest.mark.unit

SIG = "4dabf18193072939515e22adb298388d"
SECRET = "1b47061264138c4ac30d75fd1eb44270"
KEYS = hostkeys.generate("root@repo-cluster.skunkworks.test")
STACK_URN = "urn:pulumi:sim::repo-cluster::pulumi:pulumi:Stack::repo-cluster-sim"
CLUSTER = f"{STACK_URN.rsplit('::', 1)[0]}::repo-cluster:index:RepoCluster::repo-cluster"


def shown(value: object) -> dict[str, str]:
    """A secret as `pulumi stack export --show-secrets` prints it."""
    return {SIG: SECRET, "plaintext": json.dumps(value)}


def export(*, auth: bool = True, private: object = None) -> dict:
    resources = [
        {"urn": STACK_URN, "custom": False, "type": "pulumi:pulumi:Stack"},
        {"urn": CLUSTER, "custom": False, "type": "repo-cluster:index:RepoCluster"},
        {
            "urn": "urn:pulumi:sim::repo-cluster::repo-cluster:index:RepoCluster$"
            "pulumi-python:dynamic/repo-cluster:HostKeys::repo-cluster-host-keys",
            "custom": True,
            "id": "0a1b2c3d4e5f6071",
            "type": stack_secrets.HOST_KEYS_TYPE,
            "outputs": {
                "__provider": shown("gASV..."),
                "comment": "root@repo-cluster.skunkworks.test",
                "types": [k.type for k in KEYS],
                "public_keys": [k.public for k in KEYS],
                "private_keys": private
                if private is not None
                else shown([k.private for k in KEYS]),
                "fingerprints": [k.fingerprint for k in KEYS],
            },
            "parent": CLUSTER,
        },
    ]
    if auth:
        resources.append(
            {
                "urn": "urn:pulumi:sim::repo-cluster::repo-cluster:index:RepoCluster$"
                "pulumi-python:dynamic/repo-cluster:AuthPass::repo-cluster-vrrp-auth-pass",
                "custom": True,
                "id": "99aa",
                "type": stack_secrets.AUTH_PASS_TYPE,
                "outputs": {"__provider": shown("gASV..."), "result": shown("Ab3dE6gH")},
                "parent": CLUSTER,
            }
        )
    return {"version": 3, "deployment": {"manifest": {}, "resources": resources}}


def test_host_keys_and_auth_pass():
    keys, auth = stack_secrets.secrets_from_export("sim", export())
    assert keys == KEYS
    assert auth == "Ab3dE6gH"


def test_stack_that_sets_its_own_auth_pass():
    keys, auth = stack_secrets.secrets_from_export("sim", export(auth=False))
    assert keys == KEYS and auth is None


@pytest.mark.parametrize(
    "doc",
    [{"version": 3, "deployment": {"manifest": {}}}, {"version": 3, "deployment": {}}, {}],
)
def test_no_deployed_state(doc):
    with pytest.raises(stack_secrets.StackStateError) as e:
        stack_secrets.secrets_from_export("sim", doc)
    assert str(e.value) == "stack sim has no deployed state: run make lab / pulumi up first"


def test_encrypted_export_is_refused_without_showing_it():
    doc = export(private={SIG: SECRET, "ciphertext": "v1:abc=="})
    with pytest.raises(stack_secrets.StackStateError, match=r"HostKeys\.private_keys is encrypted"):
        stack_secrets.secrets_from_export("sim", doc)


def test_config_from_json():
    doc = {
        "repo-cluster:nodes": {
            "value": '[{"name":"repo1"}]',
            "objectValue": [{"name": "repo1"}],
            "secret": False,
        },
        "repo-cluster:vrrpAuthPass": {"value": "s3cret", "secret": True},
        "vsphere:user": {"value": "user", "secret": False},
    }
    assert stack_secrets.config_from_json(doc) == {
        "repo-cluster:nodes": [{"name": "repo1"}],
        "repo-cluster:vrrpAuthPass": "s3cret",
        "vsphere:user": "user",
    }


FAKE_PULUMI = """#!/bin/sh
# a stand-in for the pulumi CLI: canned JSON per subcommand
case "$1 $2" in
  "stack export") cat "$(dirname "$0")/export.json" ;;
  "config --show-secrets") cat "$(dirname "$0")/config.json" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `pulumi` in the bootstrap cache (REPO_CLUSTER_CACHE), none on PATH."""
    bindir = tmp_path / "tools" / "bin"
    bindir.mkdir(parents=True)
    cli = bindir / "pulumi"
    cli.write_text(FAKE_PULUMI)
    cli.chmod(0o755)
    monkeypatch.setenv("REPO_CLUSTER_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    stack = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text())["config"]
    config = {k: {"value": v, "secret": False} for k, v in stack.items()}
    (bindir / "config.json").write_text(json.dumps(config))
    (bindir / "export.json").write_text(json.dumps(export()))
    return bindir


def test_load_through_the_cli(fake_cli: Path):
    assert stack_secrets.pulumi_cli() == str(fake_cli / "pulumi")
    s, keys, auth = stack_secrets.load("sim", ROOT)
    assert [n.name for n in s.nodes] == ["repo1", "repo2"]
    assert keys == KEYS and auth == "Ab3dE6gH"


def test_load_without_state(fake_cli: Path):
    (fake_cli / "export.json").write_text(json.dumps({"version": 3, "deployment": {}}))
    with pytest.raises(stack_secrets.StackStateError, match="stack sim has no deployed state"):
        stack_secrets.load("sim", ROOT)


def test_no_cli_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REPO_CLUSTER_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(stack_secrets.StackStateError, match="run scripts/bootstrap-tools"):
        stack_secrets.pulumi_cli()
    assert os.environ["PATH"] == str(tmp_path)
