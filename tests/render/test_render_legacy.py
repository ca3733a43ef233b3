"""The lab's stand-in for the article's single repository server (node/legacy): `cloud-init
schema` accepts its user-data, systemd accepts its unit (map, mount at boot: the article's Part 6),
and neither the Ceph key nor any private key is in what goes to the VM's extraConfig."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from components.bundle import PATHS
from components.lab.legacy import documents
from tests.render.renderkit import AUTHORIZED
from tests.render.test_render_cloudinit import schema_check
from tests.render.test_render_files import systemd_root, verify_unit  # noqa: F401 (fixture)

pytestmark = pytest.mark.render


@pytest.fixture(scope="module")
def legacy(renders) -> tuple[str, str, dict[str, bytes], object]:
    r = renders["sim-debian"]
    return (*documents(r.settings, "repo1", r.secrets, AUTHORIZED), r)


def test_cloud_init_schema_accepts_the_user_data(legacy, tmp_path: Path) -> None:
    user_data, meta_data, _files, _r = legacy
    schema_check(user_data, tmp_path)
    assert 'local-hostname: "repo1"' in meta_data  # its own address, as a node boots


def test_systemd_accepts_the_article_unit(legacy, systemd_root: Path) -> None:  # noqa: F811
    user_data, _meta, _files, r = legacy
    for binary in ("/usr/bin/mkdir", "/usr/bin/mount", "/usr/bin/umount"):
        shutil.copy2(binary, systemd_root / binary.lstrip("/"))
    name = PATHS.rbd_unit(r.settings.rbd_image)
    (unit,) = [w for w in yaml.safe_load(user_data)["write_files"] if w["path"].endswith(name)]
    assert "WantedBy=multi-user.target" in unit["content"]  # mapped and mounted at boot
    assert f"mount -L {r.settings.xfs_label} {r.settings.mount_point}" in unit["content"]
    assert verify_unit(systemd_root, name, unit["content"].encode()) == "exit 0"


def test_no_key_goes_to_the_vm_configuration(legacy) -> None:
    user_data, meta_data, files, r = legacy
    keyring = files[PATHS.ceph_keyring(r.settings.ceph_user)].decode()
    key = next(ln.split("=", 1)[1].strip() for ln in keyring.splitlines() if "key" in ln)
    for doc in (user_data, meta_data):
        assert key not in doc and "PRIVATE KEY" not in doc
    assert set(files) == {PATHS.ceph_conf, PATHS.ceph_keyring(r.settings.ceph_user)}
