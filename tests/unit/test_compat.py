"""Mixed versions that break a failover (components/converge/compat.py): the decision, and
its parsers fed what the real tools print (keepalived here, mkfs.xfs + xfs_info on a file)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from components.converge import compat
from components.converge.compat import Versions
from tests.kit import stack_settings

pytestmark = pytest.mark.unit

EL7 = Versions((1, 3, 5), "3.10.0-1160.el7.x86_64")
EL9 = Versions((2, 2, 8), "5.14.0-427.el9.x86_64")


def xfs_info_of(tmp_path: Path, *mkfs: str) -> str:
    image = tmp_path / "volume.img"
    image.unlink(missing_ok=True)
    with image.open("wb") as fh:
        fh.truncate(300 * 1024 * 1024)
    subprocess.run(["mkfs.xfs", "-q", *mkfs, str(image)], check=True)
    return subprocess.run(
        ["xfs_info", str(image)], check=True, capture_output=True, text=True
    ).stdout


def test_the_volume_features_an_older_kernel_cannot_mount_are_read_from_xfs_info(tmp_path):
    newer = xfs_info_of(tmp_path, "-m", "reflink=1,bigtime=1,inobtcount=1")
    assert compat.parse_xfs_info(newer) == {"reflink", "bigtime", "inobtcount"}
    # what EL7's mkfs.xfs makes: v5 with finobt and sparse inodes, none of the newer ones
    older = xfs_info_of(tmp_path, "-m", "crc=1,finobt=1,reflink=0,bigtime=0,inobtcount=0")
    assert compat.parse_xfs_info(older) == frozenset()


def test_this_machines_keepalived_and_kernel_parse():
    out = subprocess.run(
        ["sh", "-c", compat.VERSIONS_COMMAND], capture_output=True, text=True, check=True
    ).stdout
    v = compat.parse_versions(out)
    assert v.keepalived is not None and v.keepalived >= (1, 3, 6), out
    assert (
        v.kernel == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    )
    el7 = "Keepalived v1.3.5 (03/19,2017), git commit v1.3.5-6-g6fa32f2\n3.10.0-1160.el7.x86_64\n"
    assert compat.parse_versions(el7) == EL7
    assert compat.parse_versions("sh: keepalived: not found\n5.14.0\n").keepalived is None


def test_vrrp3_over_unicast_between_old_and_new_keepalived_is_named():
    s = dataclasses.replace(stack_settings("sim"), vrrp_version=3, unicast=True)
    [found] = compat.problems(s, {"repo1": EL7, "repo2": EL9}, None)
    assert "repo-cluster:vrrpVersion" in found and "repo1 keepalived 1.3.5" in found
    assert "repo2 keepalived 2.2.8" in found and "both become MASTER" in found
    assert compat.problems(s, {"repo1": EL9, "repo2": EL9}, None) == []
    for other in (dataclasses.replace(s, unicast=False), dataclasses.replace(s, vrrp_version=2)):
        assert compat.problems(other, {"repo1": EL7, "repo2": EL9}, None) == []


def test_a_node_whose_kernel_cannot_mount_the_volume_is_named():
    s = stack_settings("sim")
    versions = {"repo1": EL7, "repo2": EL9}
    [found] = compat.problems(s, versions, frozenset({"bigtime", "inobtcount"}))
    assert found.startswith("repo1 (kernel 3.10.0-1160.el7.x86_64) cannot mount")
    assert "bigtime=1, inobtcount=1" in found
    assert compat.problems(s, versions, frozenset()) == []
    assert compat.problems(s, versions, None) == []  # not known: nothing claimed
    [el9] = compat.problems(s, {"repo2": EL9}, frozenset({"nrext64", "reflink"}))
    assert "nrext64=1" in el9 and "reflink" not in el9
