"""The other node files, each checked by the tool that reads it on the node: sshd (host keys),
systemd-analyze (rbd unit, keepalived's drop-in), sysctl (drop-in), plus the article's facts
about them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from components.bundle import PATHS, Bundle
from components.bundle.build import RELEASE_TIMING
from components.bundle.hostkeys import KEY_TYPES
from tests.render.renderkit import VARIANT_IDS, run

pytestmark = pytest.mark.render


def sshd_t(config: Path, key: Path) -> subprocess.CompletedProcess[str]:
    """`sshd -t` of ``config`` with host key ``key``; sshd wants /run/sshd, so it gets a private
    /run instead of touching the host's."""
    return run(
        "unshare",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec sshd -t -f "$1" -h "$2"',
        "sshd-t",
        str(config),
        str(key),
    )


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
        r = sshd_t(config, path)
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
    r = sshd_t(tmp_path / "cfg", bad)
    assert r.returncode != 0


# Debian's packaged unit (scripts/install-deps installs keepalived): the unit the drop-in extends.
KEEPALIVED_PACKAGED_UNIT = Path("/lib/systemd/system/keepalived.service")


@pytest.fixture(scope="session")
def systemd_root(tmp_path_factory) -> Path:
    """A root for ``systemd-analyze verify --root``: the host's unit files (so targets resolve),
    Debian's keepalived.service with the binaries its Exec lines name, and an executable stub
    /usr/bin/rbd. With it, verify reports nothing for a good unit: any output is a real
    finding."""
    assert KEEPALIVED_PACKAGED_UNIT.is_file(), (
        "keepalived is not installed: run scripts/install-deps"
    )
    root = tmp_path_factory.mktemp("systemd-root")
    units = root / "usr/lib/systemd/system"
    shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    shutil.copyfile(KEEPALIVED_PACKAGED_UNIT, units / "keepalived.service")
    for merged in ("bin", "sbin", "lib"):  # merged /usr, as on Debian 12 and CentOS 7
        (root / merged).symlink_to(f"usr/{merged}")
    for d in ("usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True)
    for binary in ("/usr/sbin/keepalived", "/usr/bin/kill"):  # ExecStart=, ExecReload=
        shutil.copy2(binary, root / binary.lstrip("/"))
    rbd = root / "usr/bin/rbd"
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
    name = PATHS.rbd_unit(r.settings.rbd_image)
    for bundle in r.bundles.values():
        f = bundle.file(f"/etc/systemd/system/{name}")
        assert verify_unit(systemd_root, name, f.content) == "exit 0"


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_systemd_accepts_the_host_key_publication_unit(vid, renders, systemd_root) -> None:
    r = renders[vid]
    name = PATHS.publish_host_key_unit
    script = systemd_root / PATHS.publish_host_key.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    for bundle in r.bundles.values():
        script.write_bytes(bundle.file(PATHS.publish_host_key).content)
        script.chmod(0o755)
        f = bundle.file(PATHS.unit_file(name))
        assert b"\nWantedBy=multi-user.target\n" in f.content  # at every boot
        assert verify_unit(systemd_root, name, f.content) == "exit 0"
        assert verify_unit(systemd_root, name, f.content.replace(b"Type=", b"Typo=")) != "exit 0"


def test_systemd_check_can_fail(renders, systemd_root) -> None:
    r = renders["lab-el7"]
    name = PATHS.rbd_unit(r.settings.rbd_image)
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


def verify_keepalived(root: Path, files: dict[str, tuple[bytes, int]]) -> str:
    """``systemd-analyze verify keepalived.service`` with ``files`` (path on the node ->
    content, mode) laid into the root: the packaged unit plus whatever drop-in is there."""
    placed = []
    try:
        for path, (content, mode) in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
            placed.append(target)
        r = run("systemd-analyze", "verify", "--man=no", f"--root={root}", PATHS.keepalived_unit)
    finally:
        for target in placed:
            target.unlink()
        dropins = root / PurePosixPath(PATHS.keepalived_dropin).parent.relative_to("/")
        if dropins.is_dir():
            dropins.rmdir()
    return f"exit {r.returncode}\n{r.stdout}{r.stderr}".strip()


def keepalived_files(bundle: Bundle, unit: str) -> dict[str, tuple[bytes, int]]:
    """What keepalived.service with the drop-in needs on the node: the rbd unit it requires,
    the drop-in, the notify script its ExecStop runs."""
    paths = (f"/etc/systemd/system/{unit}", PATHS.keepalived_dropin, PATHS.notify_script)
    return {p: (bundle.file(p).content, bundle.file(p).mode) for p in paths}


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_systemd_accepts_keepalived_with_the_drop_in(vid, renders, systemd_root) -> None:
    r = renders[vid]
    name = PATHS.rbd_unit(r.settings.rbd_image)
    for bundle in r.bundles.values():
        assert verify_keepalived(systemd_root, keepalived_files(bundle, name)) == "exit 0"


def test_keepalived_drop_in_check_can_fail(renders, systemd_root) -> None:
    """verify reads the drop-in: a typo, a notify script that cannot run, each is reported."""
    bundle = renders["lab-el7"].bundles["repo1"]
    name = PATHS.rbd_unit(renders["lab-el7"].settings.rbd_image)
    good = keepalived_files(bundle, name)
    dropin, mode = good[PATHS.keepalived_dropin]
    typo = {**good, PATHS.keepalived_dropin: (dropin.replace(b"RestartSec=", b"RestratSec="), mode)}
    assert "Unknown key 'RestratSec'" in verify_keepalived(systemd_root, typo)
    script, _ = good[PATHS.notify_script]
    not_executable = {**good, PATHS.notify_script: (script, 0o644)}
    assert "is not executable" in verify_keepalived(systemd_root, not_executable)


def test_keepalived_drop_in_facts(renders) -> None:
    """keepalived releases the volume before it lets the VIP go; it needs no mapping to start
    (only the MASTER maps, from its notify script)."""
    dropin = "/etc/systemd/system/keepalived.service.d/10-repo-cluster.conf"
    assert dropin == PATHS.keepalived_dropin
    for vid in ("lab-el7", "sim-debian"):
        r = renders[vid]
        rbd = PATHS.rbd_unit(r.settings.rbd_image)
        for bundle in r.bundles.values():
            f = bundle.file(PATHS.keepalived_dropin)
            assert f.mode == 0o644 and not f.secret and f.owner == f.group == "root"
            text = f.content.decode()
            assert text.startswith(f"# {PATHS.keepalived_dropin} on {bundle.node.name}\n")
            directives = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
            assert directives == [
                "[Service]",
                "ExecStop=",  # clears the packaged unit's list
                f"ExecStop={PATHS.notify_script} INSTANCE {r.settings.vrrp_instance} STOP",
                f"TimeoutStopSec={RELEASE_TIMING.stop_timeout}",
                f"ExecStopPost={PATHS.notify_script} INSTANCE {r.settings.vrrp_instance} STOP",
                "Restart=on-failure",
                "RestartSec=2",
            ]
            conf = bundle.file("/etc/keepalived/keepalived.conf").content.decode()
            assert f"vrrp_instance {r.settings.vrrp_instance} {{" in conf.splitlines()
            assert bundle.services == (PATHS.publish_host_key_unit, PATHS.keepalived_unit)
            assert bundle.on_demand == (rbd,)


def test_rbd_unit_article_facts(renders) -> None:
    r = renders["lab-el7"]
    for bundle in r.bundles.values():
        unit = bundle.file("/etc/systemd/system/rbd-veeamrepo.service").content.decode()
        directives = [ln for ln in unit.splitlines() if ln and not ln.startswith("#")]
        # the article's point: no automount; only the MASTER's notify script mounts. And no
        # [Install]: nothing maps at boot, the notify script starts the unit on promotion
        commands = [ln.split("=", 1)[1] for ln in directives if ln.startswith("Exec")]
        assert len(commands) == 2 and not [c for c in commands if "mount" in c]
        assert not [ln for ln in directives if "Mount" in ln]
        assert "[Install]" not in directives
        assert "Type=oneshot" in directives and "RemainAfterExit=yes" in directives
        assert "After=network-online.target" in directives
        timeout = RELEASE_TIMING.osd_request_timeout
        map_line = (
            f"ExecStart=/usr/bin/rbd map -o exclusive,noshare,osd_request_timeout={timeout} "
            "rbd/veeamrepo --id veeamrepo"
        )
        assert map_line in directives
        assert "ExecStop=-/usr/bin/rbd unmap -o force rbd/veeamrepo" in directives
        keyring = bundle.file("/etc/ceph/ceph.client.veeamrepo.keyring")
        assert keyring.secret and keyring.mode == 0o600
        assert keyring.content.startswith(b"[client.veeamrepo]\n\tkey = ")
        conf = bundle.file("/etc/ceph/ceph.conf").content.decode()
        assert "mon_host = 10.2.50.201,10.2.50.202,10.2.50.203" in conf.splitlines()


@pytest.mark.parametrize("vid", ["lab-el7", "sim-debian"])
def test_sysctl_applies_nonlocal_bind(vid, renders, netns, tmp_path) -> None:
    """sysctl reads the drop-in; applied in a throwaway namespace (the setting is per netns)."""
    f = renders[vid].bundles["repo1"].file(PATHS.sysctl_conf)
    assert "net.ipv4.ip_nonlocal_bind = 1" in f.content.decode().splitlines()
    path = tmp_path / "90-repo-cluster.conf"
    path.write_bytes(f.content)
    ns = netns("ens160")
    r = run("ip", "netns", "exec", ns, "sysctl", "-p", str(path))
    assert r.returncode == 0, r.stderr
    read = run("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_nonlocal_bind")
    assert read.stdout.strip() == "1"
