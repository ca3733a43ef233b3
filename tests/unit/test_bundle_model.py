"""The bundle model: deterministic rendering, secrets resolution, package sources per OS
family, authorized keys, host keys."""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config as settings
from components.bundle import (
    Bundle,
    Secrets,
    authorized_keys,
    hostkeys,
    packages,
    render_cluster,
    render_node,
)
from components.bundle.secrets import PLACEHOLDER_AUTHORIZED_KEY
from components.config import Secret

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
AUTHORIZED = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPMVzB2D7bQS3uvvnvTcOb0/+gzrNfCGhOyIXrveXRz op",
)
CEPH_REPOS = {
    "el7": "https://download.ceph.com/rpm-nautilus/el7/x86_64/",
    "el8": "https://download.ceph.com/rpm-reef/el8/x86_64/",
    "el9": "https://mirror.example.org/ceph/rpm-reef/el9/$basearch",
}


def lab(os_family: str = "el7", **overrides: Any) -> settings.Settings:
    doc = yaml.safe_load((ROOT / "Pulumi.lab.yaml").read_text(encoding="utf-8"))
    config = copy.deepcopy(doc["config"])
    config["repo-cluster:osFamily"] = os_family
    if os_family in CEPH_REPOS:
        config["repo-cluster:cephRepoUrl"] = CEPH_REPOS[os_family]
    config.update({f"repo-cluster:{k}": v for k, v in overrides.items()})
    return settings.load(config)


@pytest.fixture(scope="module")
def keys() -> tuple[hostkeys.HostKey, ...]:
    return hostkeys.generate("unit")


def test_rendering_is_deterministic(keys) -> None:
    s = lab()
    sec = Secrets.resolve(s, host_keys=keys, vrrp_auth_pass="abc")
    a = render_cluster(s, sec, AUTHORIZED)
    b = render_cluster(lab(), Secrets.resolve(lab(), keys, "abc"), AUTHORIZED)
    assert a == b
    for name in a:
        assert a[name].digest == b[name].digest
        assert [f.content for f in a[name].files] == [f.content for f in b[name].files]
    assert a["repo1"].digest != a["repo2"].digest


@pytest.mark.parametrize(
    "change",
    [
        lambda b: dataclasses.replace(b, packages=(*b.packages, "vim")),
        lambda b: dataclasses.replace(b, services=(*b.services, "other.service")),
        lambda b: dataclasses.replace(b, on_demand=()),
        lambda b: dataclasses.replace(b, image="rbd/other"),
        lambda b: dataclasses.replace(b, meta_data=b.meta_data + "\n"),
        lambda b: dataclasses.replace(
            b, files=(dataclasses.replace(b.files[0], mode=0o640), *b.files[1:])
        ),
        lambda b: dataclasses.replace(
            b, files=(dataclasses.replace(b.files[0], content=b"x"), *b.files[1:])
        ),
    ],
)
def test_digest_covers_everything(keys, change) -> None:
    s = lab()
    b = render_node(s, s.nodes[0], Secrets.resolve(s, keys, "abc"), AUTHORIZED)
    assert len(b.digest) == 64
    assert change(b).digest != b.digest
    # the order files are listed in does not matter
    assert dataclasses.replace(b, files=b.files[::-1]).digest == b.digest


def test_secrets_resolve_order(keys) -> None:
    s = lab()
    placeholder = Secrets.resolve(s)
    assert placeholder.placeholder
    assert placeholder.vrrp_auth_pass == "PLACEHLD"
    assert placeholder.ceph_keyring.startswith("PLACEHOLDER")
    assert len(base64.b64decode(placeholder.ceph_keyring, validate=True)) == 28  # a Ceph key
    assert {k.comment for k in placeholder.host_keys} == {"PLACEHOLDER-not-the-stack-key"}
    assert set(placeholder.placeholders) == {
        "repo-cluster:vrrpAuthPass",
        "repo-cluster:cephKeyring",
        "SSH host keys",
    }
    from_settings = dataclasses.replace(
        s, vrrp_auth_pass=Secret("fromcfg"), ceph_keyring=Secret("AQB+key==")
    )
    real = Secrets.resolve(from_settings, host_keys=keys)
    assert (real.vrrp_auth_pass, real.ceph_keyring, real.host_keys) == (
        "fromcfg",
        "AQB+key==",
        keys,
    )
    assert not real.placeholder and real.placeholders == ()
    assert (
        Secrets.resolve(from_settings, keys, vrrp_auth_pass="argwins").vrrp_auth_pass == "argwins"
    )
    with pytest.raises(ValueError):
        Secrets.resolve(s, keys, vrrp_auth_pass="longer than eight")
    with pytest.raises(ValueError):
        Secrets.resolve(s, keys[:2])
    assert "fromcfg" not in repr(real) and "PRIVATE" not in repr(real)


def test_secret_files_are_marked(keys) -> None:
    s = lab()
    b = render_node(s, s.nodes[0], Secrets.resolve(s, keys, "abc"), AUTHORIZED)
    secret = {f.path for f in b.files if f.secret}
    assert secret == {
        "/etc/keepalived/keepalived.conf",  # auth_pass
        "/etc/ceph/ceph.client.veeamrepo.keyring",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_ecdsa_key",
        "/etc/ssh/ssh_host_rsa_key",
    }
    assert all(f.mode == 0o600 for f in b.files if f.secret)
    dropin = b.file("/etc/systemd/system/keepalived.service.d/10-repo-cluster.conf")
    assert dropin.mode == 0o644 and not dropin.secret
    assert all(f.owner == f.group == "root" for f in b.files)
    assert b.file("/usr/local/bin/keepalivednotify.sh").mode == 0o755
    with pytest.raises(KeyError):
        b.file("/etc/fstab")


def repo_files(b: Bundle) -> dict[str, str]:
    return {f.path: f.content.decode() for f in b.files if f.path.startswith("/etc/yum.repos.d/")}


@pytest.mark.parametrize("family", settings.OS_FAMILIES)
def test_package_sources_per_family(keys, family) -> None:
    s = lab(family)
    b = render_node(s, s.nodes[0], Secrets.resolve(s, keys, "abc"), AUTHORIZED)
    assert b.os_family == family
    assert b.services == ("repo-cluster-publish-host-key.service", "keepalived.service")
    # the rbd unit is installed, never enabled: only the MASTER maps, through its notify script
    assert b.on_demand == ("rbd-veeamrepo.service",)
    unit = b.file("/etc/systemd/system/rbd-veeamrepo.service").content.decode()
    assert "[Install]" not in unit.splitlines()
    base = ("keepalived", "psmisc", "xfsprogs", "ceph-common")
    repos = repo_files(b)
    if family == "el7":
        assert b.packages == ("epel-release", *base)
        assert set(repos) == {
            "/etc/yum.repos.d/CentOS-Base.repo",
            "/etc/yum.repos.d/epel.repo",
            "/etc/yum.repos.d/ceph.repo",
        }
        centos = repos["/etc/yum.repos.d/CentOS-Base.repo"]
        urls = re.findall(r"^baseurl=(.*)$", centos, re.M)
        assert urls == [
            f"https://vault.centos.org/7.9.2009/{d}/$basearch/" for d in ("os", "updates", "extras")
        ]
        assert re.findall(r"^\[(\w+)\]$", centos, re.M) == ["base", "updates", "extras"]
        assert "mirrorlist=" not in centos
        epel = repos["/etc/yum.repos.d/epel.repo"]
        assert "baseurl=https://archives.fedoraproject.org/pub/archive/epel/7/$basearch" in epel
        assert "metalink=" not in epel
        # epel-release (and with it the key epel.repo names) on its own, before the refresh
        assert b.package_sources == (
            "yum -y clean metadata",
            "rpm -q epel-release >/dev/null || yum -y install epel-release",
            "yum -y makecache fast",
        )
        assert "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-7" in epel.splitlines()
    elif family in ("el8", "el9"):
        assert b.packages == base
        assert set(repos) == {"/etc/yum.repos.d/ceph.repo"}
        assert all(c.startswith("dnf ") for c in b.package_sources)
    else:
        assert b.packages == base and repos == {}
        assert b.package_sources == ("apt-get update -qq",)
    if family in CEPH_REPOS:
        ceph = repos["/etc/yum.repos.d/ceph.repo"]
        url = CEPH_REPOS[family]
        assert f"baseurl={url}" in ceph.splitlines()
        noarch = re.sub(r"(x86_64|\$basearch)(/?)$", r"noarch\2", url)
        assert f"baseurl={noarch}" in ceph.splitlines()
        host = re.match(r"https://[^/]+", url)
        assert host and f"gpgkey={host.group(0)}/keys/release.asc" in ceph.splitlines()
    dialect = "1.3" if family == "el7" else "2"
    assert (
        f"keepalived {dialect}.x dialect"
        in b.file("/etc/keepalived/keepalived.conf").content.decode()
    )


def test_el7_epel_release_command_is_idempotent(tmp_path) -> None:
    """The command, run by sh with stand-in rpm/yum: yum runs only when rpm -q says the package
    is missing, and the command succeeds either way."""
    cmd = next(c for c in packages.commands(lab("el7")) if "epel-release" in c)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for tool, body in (("rpm", 'exit "$RPM_Q"'), ("yum", "exit 0")):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"$LOG"\n{body}\n')
        (bin_dir / tool).chmod(0o755)
    for installed, calls in ((False, 2), (True, 1)):
        log.write_text("")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "LOG": str(log),
            "RPM_Q": "0" if installed else "1",
        }
        assert subprocess.run(["sh", "-c", cmd], env=env, check=False).returncode == 0
        lines = log.read_text().splitlines()
        assert lines[0] == "rpm -q epel-release" and len(lines) == calls
        if not installed:
            assert lines[1] == "yum -y install epel-release"


def test_meta_data_is_stable_and_static(keys) -> None:
    s = lab()
    b = render_node(s, s.nodes[1], Secrets.resolve(s, keys, "abc"), AUTHORIZED)
    meta = yaml.safe_load(b.meta_data)
    assert meta["instance-id"] == "repo2.skunkworks.local"
    nic = meta["network"]["ethernets"]["ens160"]
    assert nic["match"] == {"name": "ens160"} and nic["addresses"] == ["10.2.50.162/24"]
    assert nic["gateway4"] == "10.2.50.1" and "dhcp4" not in nic
    assert nic["nameservers"] == {"addresses": ["10.2.50.10"], "search": ["skunkworks.local"]}
    other = render_node(s, s.nodes[1], Secrets.resolve(s, keys, "xyz"), AUTHORIZED)
    # another auth_pass changes keepalived.conf, which never rides in the user-data
    assert other.user_data == b.user_data and other.meta_data == b.meta_data
    conf = "/etc/keepalived/keepalived.conf"
    assert other.file(conf) != b.file(conf)
    operator = render_node(s, s.nodes[1], Secrets.resolve(s, keys, "abc"), (*AUTHORIZED, "x y"))
    assert operator.user_data != b.user_data and operator.meta_data == b.meta_data


def test_authorized_keys(tmp_path) -> None:
    s = lab(sshKeyFile="keys/operator")
    assert authorized_keys(s, tmp_path) == (PLACEHOLDER_AUTHORIZED_KEY,)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/operator.pub").write_text(f"# operator\n\n{AUTHORIZED[0]}\n")
    assert authorized_keys(s, tmp_path) == AUTHORIZED
    absolute = lab(sshKeyFile=str(tmp_path / "keys/operator"))
    assert authorized_keys(absolute, Path("/nonexistent")) == AUTHORIZED
    home = lab(sshKeyFile="~/no-such-dir-for-tests/id")
    assert authorized_keys(home, tmp_path) == (PLACEHOLDER_AUTHORIZED_KEY,)
    assert "PLACEHOLDER" in PLACEHOLDER_AUTHORIZED_KEY.split()[-1]
    assert len(base64.b64decode(PLACEHOLDER_AUTHORIZED_KEY.split()[1])) == 51  # ed25519 blob


def test_host_keys_generate() -> None:
    keys = hostkeys.generate("repo-cluster")
    assert [k.type for k in keys] == ["ed25519", "ecdsa", "rsa"]
    prefixes = ["ssh-ed25519 ", "ecdsa-sha2-nistp256 ", "ssh-rsa "]
    for k, prefix in zip(keys, prefixes, strict=True):
        assert k.public.startswith(prefix) and k.public.endswith(" repo-cluster")
        assert k.private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", k.fingerprint)
        assert k.private not in repr(k)
    assert len({k.fingerprint for k in keys + hostkeys.generate("x")}) == 6
