"""The other node files, each checked by the tool that reads it on the node: sshd (host keys),
systemd-analyze (rbd unit), sysctl (drop-in), plus the article's facts about them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.bundle import SYSCTL_CONF, rbd_unit_name
from components.hostkeys import KEY_TYPES
from tests.render.renderkit import VARIANT_IDS, run

pytestmark = pytest.mark.render


def test_sshd_accepts_each_host_key(renders, host_keys, tmp_path) -> None:
    bundle = renders["lab-el7"].bundles["repo1"]
    config = tmp_path / "sshd_config"
    config.write_text("# minimal: defaults plus the key given with -h\n")
    assert [k.type for k in host_keys] == list(KEY_TYPES)
    for key in host_keys:
        private = bundle.file(f"/etc/ssh/ssh_host_{key.type}_key")
        public = bundle.file(f"/etc/ssh/ssh_host_{key.type}_key.pub")
        assert private.secret and private.mode == 0o600 and not public.secret
        path = tmp_path / f"ssh_host_{key.type}_key"
        path.write_bytes(private.content)
        path.chmod(0o600)
        Path(f"{path}.pub").write_bytes(public.content)
        # sshd -t wants /run/sshd: give it a private /run instead of touching the host's
        r = run(
            "unshare",
            "--mount",
            "sh",
            "-c",
            'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec sshd -t -f "$1" -h "$2"',
            "sshd-t",
            str(config),
            str(path),
        )
        assert r.returncode == 0, f"sshd -t refused the {key.type} key: {r.stderr}"
        derived = run("ssh-keygen", "-y", "-f", str(path)).stdout.split()[:2]
        assert derived == key.public.split()[:2]
        listed = run("ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub").stdout.split()
        assert listed[1] == key.fingerprint
        assert listed[-1] == {"ed25519": "(ED25519)", "ecdsa": "(ECDSA)", "rsa": "(RSA)"}[key.type]
        if key.type == "rsa":
            assert listed[0] == "3072"
        if key.type == "ecdsa":
            assert key.public.startswith("ecdsa-sha2-nistp256 ")


def test_sshd_check_can_fail(tmp_path) -> None:
    bad = tmp_path / "bad_key"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    bad.chmod(0o600)
    (tmp_path / "cfg").write_text("")
    r = run(
        "unshare",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec sshd -t -f "$1" -h "$2"',
        "sshd-t",
        str(tmp_path / "cfg"),
        str(bad),
    )
    assert r.returncode != 0


@pytest.fixture(scope="session")
def systemd_root(tmp_path_factory) -> Path:
    """A root for ``systemd-analyze verify --root``: the host's unit files (so targets resolve)
    and an executable stub /usr/bin/rbd (ceph-common is not installed here). With it, verify
    reports nothing for a good unit: any output is a real finding."""
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    rbd = root / "usr/bin/rbd"
    rbd.parent.mkdir(parents=True)
    rbd.write_text("#!/bin/sh\nexit 0\n")
    rbd.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def verify_unit(root: Path, name: str, content: bytes) -> str:
    path = root / "etc/systemd/system" / name
    path.write_bytes(content)
    try:
        r = run(
            "systemd-analyze", "verify", "--man=no", f"--root={root}", f"/etc/systemd/system/{name}"
        )
    finally:
        path.unlink()
    return f"exit {r.returncode}\n{r.stdout}{r.stderr}".strip()


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_systemd_accepts_rbd_unit(vid, renders, systemd_root) -> None:
    r = renders[vid]
    name = rbd_unit_name(r.settings)
    for bundle in r.bundles.values():
        f = bundle.file(f"/etc/systemd/system/{name}")
        assert verify_unit(systemd_root, name, f.content) == "exit 0"


def test_systemd_check_can_fail(renders, systemd_root) -> None:
    r = renders["lab-el7"]
    name = rbd_unit_name(r.settings)
    good = r.bundles["repo1"].file(f"/etc/systemd/system/{name}").content
    for broken in (
        good.replace(b"Type=oneshot", b"Type=oneshoot"),
        good.replace(b"ExecStop=", b"ExecStpo="),
    ):
        assert verify_unit(systemd_root, name, broken) != "exit 0"
    rbd = systemd_root / "usr/bin/rbd"
    rbd.chmod(0o644)
    try:
        assert "not executable" in verify_unit(systemd_root, name, good)
    finally:
        rbd.chmod(0o755)


def test_rbd_unit_article_facts(renders) -> None:
    r = renders["lab-el7"]
    for bundle in r.bundles.values():
        unit = bundle.file("/etc/systemd/system/rbd-veeamrepo.service").content.decode()
        directives = [ln for ln in unit.splitlines() if ln and not ln.startswith("#")]
        # the article's point: no automount; only the MASTER's notify script mounts
        commands = [ln.split("=", 1)[1] for ln in directives if ln.startswith("Exec")]
        assert len(commands) == 2 and not [c for c in commands if "mount" in c]
        assert not [ln for ln in directives if "Mount" in ln]
        assert "Type=oneshot" in directives and "RemainAfterExit=yes" in directives
        assert "After=network-online.target" in directives
        assert "ExecStart=/usr/bin/rbd map rbd/veeamrepo --id admin" in directives
        assert "ExecStop=/usr/bin/rbd unmap rbd/veeamrepo" in directives
        keyring = bundle.file("/etc/ceph/ceph.client.admin.keyring")
        assert keyring.secret and keyring.mode == 0o600
        assert keyring.content.startswith(b"[client.admin]\n\tkey = ")
        conf = bundle.file("/etc/ceph/ceph.conf").content.decode()
        assert "mon_host = 10.2.50.201,10.2.50.202,10.2.50.203" in conf.splitlines()


@pytest.mark.parametrize("vid", ["lab-el7", "sim-debian"])
def test_sysctl_applies_nonlocal_bind(vid, renders, netns, tmp_path) -> None:
    """sysctl reads the drop-in; applied in a throwaway namespace (the setting is per netns)."""
    f = renders[vid].bundles["repo1"].file(SYSCTL_CONF)
    assert "net.ipv4.ip_nonlocal_bind = 1" in f.content.decode().splitlines()
    path = tmp_path / "90-repo-cluster.conf"
    path.write_bytes(f.content)
    ns = netns("ens160")
    r = run("ip", "netns", "exec", ns, "sysctl", "-p", str(path))
    assert r.returncode == 0, r.stderr
    read = run("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_nonlocal_bind")
    assert read.stdout.strip() == "1"
