"""The host key's publication (repo-cluster-publish-host-key): shellcheck accepts it, and run
for real it hands VMware Tools' RPC exactly the ed25519 public key (type and key, no comment)
under the guestinfo key the converge reads; without vmware-rpctool it says so and publishes
nothing; without a key it fails. The unit that runs it at boot is checked by systemd-analyze
(test_render_files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.bundle import PATHS
from tests.kit import vm_host_key
from tests.render.renderkit import VARIANT_IDS, run

pytestmark = pytest.mark.render

KEY = f"{PATHS.host_key('ed25519')}.pub"


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_shellcheck_and_bash_n(vid, renders, tmp_path) -> None:
    for node, bundle in renders[vid].bundles.items():
        f = bundle.file(PATHS.publish_host_key)
        assert f.mode == 0o755 and f.content.startswith(b"#!/bin/bash\n")
        assert KEY.encode() in f.content and PATHS.host_key_guestinfo.encode() in f.content
        path = tmp_path / f"{node}.sh"
        path.write_bytes(f.content)
        assert run("bash", "-n", str(path)).returncode == 0
        r = run("shellcheck", "--shell=bash", "--severity=style", str(path))
        assert r.returncode == 0, r.stdout


def script(renders, tmp_path: Path, key_file: Path) -> Path:
    """The rendered script, its key path pointed at ``key_file`` (this host's own
    /etc/ssh is not the node's)."""
    content = renders["lab-el7"].bundles["repo1"].file(PATHS.publish_host_key).content
    path = tmp_path / "publish"
    path.write_bytes(content.replace(KEY.encode(), str(key_file).encode()))
    path.chmod(0o755)
    return path


def rpctool(tmp_path: Path) -> tuple[Path, Path]:
    """A recording vmware-rpctool in a directory of its own; returns (dir, calls file)."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    tool = bindir / "vmware-rpctool"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {calls}\n')
    tool.chmod(0o755)
    return bindir, calls


def test_it_publishes_the_ed25519_public_key_and_nothing_else(renders, tmp_path) -> None:
    key = vm_host_key("root@repo1 made at first boot")
    pub = tmp_path / "ssh_host_ed25519_key.pub"
    pub.write_text(key.public + "\n")
    bindir, calls = rpctool(tmp_path)
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}
    r = run(str(script(renders, tmp_path, pub)), env=env)
    assert r.returncode == 0, r.stderr
    kind, blob = key.public.split()[:2]
    assert calls.read_text().splitlines() == [f"info-set {PATHS.host_key_guestinfo} {kind} {blob}"]
    assert "made at first boot" not in calls.read_text()


def test_without_vmware_tools_it_says_so_and_publishes_nothing(renders, tmp_path) -> None:
    pub = tmp_path / "ssh_host_ed25519_key.pub"
    pub.write_text(vm_host_key("k").public + "\n")
    assert run("sh", "-c", "command -v vmware-rpctool", env={"PATH": "/usr/bin:/bin"}).returncode
    r = run(str(script(renders, tmp_path, pub)), env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0
    assert "no vmware-rpctool" in r.stderr and "--trust-first-contact" in r.stderr


def test_without_an_ed25519_key_it_fails(renders, tmp_path) -> None:
    bindir, calls = rpctool(tmp_path)
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}
    missing = tmp_path / "none.pub"
    r = run(str(script(renders, tmp_path, missing)), env=env)
    assert r.returncode == 1 and "no ed25519 host public key" in r.stderr
    rsa = tmp_path / "rsa.pub"
    rsa.write_text("ssh-rsa AAAAB3NzaC1yc2E root@x\n")
    r = run(str(script(renders, tmp_path, rsa)), env=env)
    assert r.returncode == 1
    assert not calls.exists()
