"""cloud-init documents: `cloud-init schema` accepts every user-data, every non-secret bundle
file reaches the node byte for byte (write_files) and no secret one does, no key at all (the
node makes its own ed25519 host key), packages are installed in the converge's order and no
service but the host key's publication is started, and cloud-init's own VMware datasource and
network renderer turn the meta-data into the customization's static address."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from components.bundle import PATHS, Bundle, render_node
from components.bundle.cloudinit import host_key_paths
from components.bundle.packages import install_commands as install_packages
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


def assert_delivered(bundle: Bundle) -> None:
    doc = yaml.safe_load(bundle.user_data)
    host_keys = {f.path for f in bundle.files} & host_key_paths(
        [type("K", (), {"type": t})() for t in ("ed25519", "ecdsa", "rsa")]
    )
    assert len(host_keys) == 6
    secret = {f.path for f in bundle.files if f.secret}
    assert secret >= {PATHS.keepalived_conf, "/etc/ceph/ceph.client.veeamrepo.keyring"}
    written = {w["path"]: w for w in doc["write_files"]}
    # nothing more, or less: no secret file, no host key file (the converge brings them), no
    # rank config (the priorities: the converge brings it with keepalived.conf)
    converged = host_keys | secret | {PATHS.rank_conf}
    assert set(written) == {f.path for f in bundle.files} - converged
    assert "ssh_keys" not in doc and "PRIVATE KEY" not in bundle.user_data
    assert (doc["ssh_deletekeys"], doc["ssh_genkeytypes"]) == (True, ["ed25519"])
    for f in bundle.files:
        if f.path in converged:
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
        assert ("apt" in doc) == (r.os_family in ("debian", "ubuntu"))
        # the drop-in reaches the node with the rest (assert_delivered checked its bytes)
        assert PATHS.keepalived_dropin in {w["path"] for w in doc["write_files"]}
        # packages come from runcmd, in the converge's own commands, never from cloud-init's
        # one-transaction `packages` module
        assert "packages" not in doc and "package_update" not in doc
        install = install_packages(r.os_family, bundle.package_sources, bundle.packages)
        runcmd = doc["runcmd"]
        # first the VM publishes its own host key (the converge waits for it); no other service
        # enabled or started: keepalived and the rbd unit need the secret files, which only the
        # converge brings (it enables and starts them)
        assert runcmd == [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", PATHS.publish_host_key_unit],
            *install,
            ["sysctl", "-p", "/etc/sysctl.d/90-repo-cluster.conf"],
            ["systemctl", "daemon-reload"],
        ]


def test_el7_first_boot_installs_epel_release_alone_first(renders) -> None:
    """The EPEL key comes with epel-release: it must be installed, on its own, before the
    metadata refresh and before the one install that pulls ceph-common's EPEL dependencies."""
    runcmd = yaml.safe_load(renders["lab-el7"].bundles["repo1"].user_data)["runcmd"]
    shell = [c for c in runcmd if isinstance(c, str)]
    assert shell == [
        "yum -y clean metadata",
        "rpm -q epel-release >/dev/null || yum -y install epel-release",
        "yum -y makecache fast",
        "yum -y -q install epel-release keepalived psmisc xfsprogs ceph-common",
    ]
    assert runcmd[2 : 2 + len(shell)] == shell  # after the key's publication, before the rest


def test_meta_data_network_matches_customization(renders) -> None:
    """A static network config v2 with what the guest customization sets, so cloud-init never
    falls back to DHCP; instance-id is the node's FQDN."""
    for vid, r in renders.items():
        s = r.settings
        for name, bundle in r.bundles.items():
            node = s.node(name)
            meta = yaml.safe_load(bundle.meta_data)
            assert meta["instance-id"] == f"{name}.{s.domain}", vid
            assert meta["local-hostname"] == name
            prefix = ipaddress.IPv4Interface(f"{node.ip}/{s.vip.network.prefixlen}")
            assert meta["network"] == {
                "version": 2,
                "ethernets": {
                    s.interface: {
                        "match": {"name": s.interface},
                        "addresses": [prefix.with_prefixlen],
                        "gateway4": str(s.gateway),
                        "nameservers": {
                            "addresses": [str(a) for a in s.nameservers],
                            "search": [s.domain],
                        },
                    }
                },
            }, vid


DATASOURCE = """
import json, sys
from cloudinit.sources.DataSourceVMware import load_json_or_yaml, process_metadata
print(json.dumps(process_metadata(load_json_or_yaml(sys.stdin.read()))))
"""


def vmware_datasource(meta_data: str) -> dict:
    """meta-data as cloud-init's VMware datasource reads guestinfo.metadata (its own code)."""
    r = run("/usr/bin/python3", "-c", DATASOURCE, input=meta_data)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ifcfg(network: dict, interface: str, tmp_path: Path) -> dict[str, str]:
    """The ifcfg file cloud-init's sysconfig renderer (CentOS's) writes from ``network``."""
    tmp_path.mkdir(parents=True)
    src = tmp_path / "network.json"
    src.write_text(json.dumps(network), encoding="utf-8")
    out = tmp_path / "out"
    r = run(
        "cloud-init",
        "devel",
        "net-convert",
        "-p",
        str(src),
        "-k",
        "yaml",
        "-D",
        "centos",
        "-O",
        "sysconfig",
        "-d",
        str(out),
    )
    assert r.returncode == 0, f"{r.stdout}{r.stderr}"
    text = (out / f"etc/sysconfig/network-scripts/ifcfg-{interface}").read_text()
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


@pytest.mark.parametrize("vid", ["lab-el7", "sim-el7", "sim-debian"])
def test_vmware_datasource_configures_the_static_address(vid, renders, tmp_path) -> None:
    r = renders[vid]
    s = r.settings
    for name, bundle in r.bundles.items():
        meta = vmware_datasource(bundle.meta_data)
        assert meta["instance-id"] == f"{name}.{s.domain}"
        assert "config" in meta["network"], "the datasource did not take our network key"
        conf = ifcfg(meta["network"]["config"], s.interface, tmp_path / name)
        assert conf["BOOTPROTO"] == "none" and conf["ONBOOT"] == "yes"  # static, no DHCP
        assert conf["IPADDR"] == str(s.node(name).ip)
        assert conf["NETMASK"] == str(s.vip.network.netmask)
        assert conf["GATEWAY"] == str(s.gateway)
        assert [conf[f"DNS{i + 1}"] for i in range(len(s.nameservers))] == [
            str(a) for a in s.nameservers
        ]
        assert conf["DOMAIN"] == s.domain


def test_without_network_key_the_datasource_has_none(renders) -> None:
    """The check can fail: meta-data without `network` leaves the datasource to its fallback
    (DHCP on the first NIC)."""
    meta = yaml.safe_load(renders["lab-el7"].bundles["repo1"].meta_data)
    del meta["network"]
    assert "network" not in vmware_datasource(yaml.safe_dump(meta))


def test_instance_id_is_stable_for_the_node_life(renders) -> None:
    """A config change changes the user-data but not the instance-id: the next reboot is not a
    new instance (which would rerun every first-boot module)."""
    r = renders["lab-el7"]
    node = r.settings.nodes[0]
    before = r.bundles[node.name]
    for changed in (
        render_node(r.settings, node, r.secrets, (*AUTHORIZED, AUTHORIZED[0] + "2")),
        render_node(variant("lab", "el7", mountPoint="/srv/veeam"), node, r.secrets, AUTHORIZED),
    ):
        assert changed.user_data != before.user_data
        assert changed.meta_data == before.meta_data
    ids = {yaml.safe_load(b.meta_data)["instance-id"] for b in r.bundles.values()}
    assert len(ids) == len(r.bundles)  # one per node


REDACT = """
import sys
from cloudinit.sources import DataSourceVMware as ds
meta = ds.load_json_or_yaml(sys.stdin.read())
ds.guestinfo_redact_keys(meta[ds.CLEANUP_GUESTINFO], sys.argv[1])
"""


def test_datasource_clears_the_user_data_once_read(renders, tmp_path) -> None:
    """Nothing secret is in the user-data, and it is cleared all the same once read: cloud-init's
    own code, given our meta-data, overwrites guestinfo.userdata through VMware Tools (a
    recording stand-in for vmware-rpctool here)."""
    calls = tmp_path / "calls"
    rpctool = tmp_path / "vmware-rpctool"
    rpctool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    rpctool.chmod(0o755)
    bundle = renders["lab-el7"].bundles["repo1"]
    r = run("/usr/bin/python3", "-c", REDACT, str(rpctool), input=bundle.meta_data)
    assert r.returncode == 0, r.stderr
    assert [line.rstrip() for line in calls.read_text().splitlines()] == [
        "info-set guestinfo.userdata ---",
        "info-set guestinfo.userdata.encoding",
    ]
