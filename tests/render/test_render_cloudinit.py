"""cloud-init documents: `cloud-init schema` accepts every user-data, and every bundle file
reaches the node byte for byte (write_files, or ssh_keys for the host keys)."""

from __future__ import annotations

import base64

import pytest
import yaml

from components.bundle import Bundle, Secrets, render_node
from components.cloudinit import host_key_paths
from tests.render.renderkit import AUTHORIZED, VARIANT_IDS, run, variant

pytestmark = pytest.mark.render


def schema_check(user_data: str, tmp_path) -> None:
    path = tmp_path / "user-data"
    path.write_text(user_data, encoding="utf-8")
    r = run("cloud-init", "schema", "--config-file", str(path))
    assert r.returncode == 0, f"cloud-init schema: {r.stdout}{r.stderr}"
    assert "Valid cloud-config" in r.stdout


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_cloud_init_schema_accepts_user_data(vid, renders, tmp_path) -> None:
    for bundle in renders[vid].bundles.values():
        assert bundle.user_data.startswith("#cloud-config\n")
        schema_check(bundle.user_data, tmp_path)


def test_schema_check_can_fail(renders, tmp_path) -> None:
    doc = yaml.safe_load(renders["lab-el7"].bundles["repo1"].user_data)
    doc["write_files"][0]["permissions"] = 420  # an int, not the octal string
    path = tmp_path / "bad"
    path.write_text("#cloud-config\n" + yaml.safe_dump(doc), encoding="utf-8")
    assert run("cloud-init", "schema", "--config-file", str(path)).returncode != 0


def test_schema_accepts_provisioning_user(host_keys, tmp_path) -> None:
    s = variant("lab", "el9", sshUser="veeamops")
    bundle = render_node(s, s.nodes[0], Secrets.resolve(s, host_keys=host_keys), AUTHORIZED)
    doc = yaml.safe_load(bundle.user_data)
    user = doc["users"][1]
    assert user["name"] == "veeamops" and user["ssh_authorized_keys"] == list(AUTHORIZED)
    assert "disable_root" not in doc
    schema_check(bundle.user_data, tmp_path)


def assert_delivered(bundle: Bundle) -> None:
    doc = yaml.safe_load(bundle.user_data)
    host_keys = {f.path for f in bundle.files} & host_key_paths(
        [type("K", (), {"type": t})() for t in ("ed25519", "ecdsa", "rsa")]
    )
    assert len(host_keys) == 6
    written = {w["path"]: w for w in doc["write_files"]}
    assert set(written) == {f.path for f in bundle.files} - host_keys  # nothing more, or less
    for f in bundle.files:
        if f.path in host_keys:
            kind = f.path.removeprefix("/etc/ssh/ssh_host_").removesuffix(".pub")
            kind = kind.replace("_key", "_public" if f.path.endswith(".pub") else "_private")
            assert doc["ssh_keys"][kind].encode() == f.content, f.path
            continue
        w = written[f.path]
        assert w["encoding"] == "b64"
        assert base64.b64decode(w["content"], validate=True) == f.content, f.path
        assert w["permissions"] == f"{f.mode:04o}" and w["owner"] == f"{f.owner}:{f.group}"


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_every_file_is_in_user_data_byte_identical(vid, renders) -> None:
    r = renders[vid]
    for bundle in r.bundles.values():
        assert_delivered(bundle)
        doc = yaml.safe_load(bundle.user_data)
        node = bundle.node
        assert doc["hostname"] == node.name
        assert doc["fqdn"] == f"{node.name}.{r.settings.domain}"
        assert doc["manage_etc_hosts"] is True and doc["ssh_deletekeys"] is True
        assert doc["disable_root"] is False and doc["ssh_authorized_keys"] == list(AUTHORIZED)
        assert doc["packages"] == list(bundle.packages)
        assert ("apt" in doc) == (r.os_family in ("debian", "ubuntu"))
        runcmd = doc["runcmd"]
        assert ["sysctl", "-p", "/etc/sysctl.d/90-repo-cluster.conf"] in runcmd
        assert ["systemctl", "daemon-reload"] in runcmd
        enabled = [c[-1] for c in runcmd if c[:3] == ["systemctl", "enable", "--now"]]
        assert enabled == ["rbd-veeamrepo.service", "keepalived.service"]
        meta = yaml.safe_load(bundle.meta_data)
        assert meta["local-hostname"] == node.name
        assert meta["instance-id"].startswith(f"{node.name}-")


def test_instance_id_follows_the_bundle(renders, host_keys) -> None:
    r = renders["lab-el7"]
    node = r.settings.nodes[0]
    again = render_node(r.settings, node, r.secrets, AUTHORIZED)
    assert again.meta_data == r.bundles[node.name].meta_data  # stable
    other = render_node(r.settings, node, r.secrets, (*AUTHORIZED, AUTHORIZED[0] + "2"))
    assert (
        yaml.safe_load(other.meta_data)["instance-id"]
        != yaml.safe_load(again.meta_data)["instance-id"]
    )
