"""Render-tier fixtures: every node of both stacks in every OS family, and the throwaway
namespaces and volumes the real validators need.

    host (root)
     ├── netns rt-<pid>-<ifname>:  veth <ifname> <-> rtpeer0      keepalived -t, sysctl -p
     └── /dev/loopN <- tmp file (XFS, unique label)               the notify script, for real

Nothing here sends a packet: the veth pair lives inside the namespace, no address is set.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from components.bundle import Secrets, hostkeys, render_cluster
from components.bundle.hostkeys import HostKey
from tests.render.renderkit import (
    AUTHORIZED,
    VARIANT_IDS,
    VARIANTS,
    Rendered,
    Volume,
    run,
    variant,
)


@pytest.fixture(scope="session")
def host_keys() -> tuple[HostKey, ...]:
    return hostkeys.generate("render-tests")


@pytest.fixture(scope="session")
def renders(host_keys: tuple[HostKey, ...]) -> dict[str, Rendered]:
    """Every variant rendered once; keyed like VARIANT_IDS."""
    out = {}
    for (stack, fam), vid in zip(VARIANTS, VARIANT_IDS, strict=True):
        s = variant(stack, fam)
        sec = Secrets.resolve(s, host_keys=host_keys, vrrp_auth_pass="t3stPw0r")
        out[vid] = Rendered(stack, fam, s, sec, render_cluster(s, sec, AUTHORIZED))
    return out


@pytest.fixture(scope="session")
def netns() -> Iterator[Callable[[str], str]]:
    """``netns(ifname)`` -> a throwaway namespace holding a veth named ``ifname``.

    keepalived -t refuses configs naming interfaces that do not exist; this kernel has no
    ``dummy`` link type, so a veth pair (both ends inside the namespace) stands in.
    """
    made: dict[str, str] = {}

    def get(ifname: str) -> str:
        if ifname not in made:
            name = f"rt-{os.getpid()}-{len(made)}"
            made[ifname] = name
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(
                ["ip", "-n", name, "link", "add", ifname, "type", "veth", "peer", "rtpeer0"],
                check=True,
            )
        return made[ifname]

    try:
        yield get
    finally:
        for name in made.values():
            pids = run("ip", "netns", "pids", name).stdout.split()
            for pid in pids:
                run("kill", "-9", pid)
            run("ip", "netns", "del", name)


@pytest.fixture
def xfs_volume(tmp_path: Path) -> Iterator[Volume]:
    """A real XFS file system on a loop device, with a label no other volume uses."""
    label = "rt" + pysecrets.token_hex(5)  # 12 characters, XFS's limit
    image = tmp_path / "volume.img"
    subprocess.run(["truncate", "-s", "320M", str(image)], check=True)
    subprocess.run(["mkfs.xfs", "-q", "-L", label, str(image)], check=True)
    device = subprocess.run(
        ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield Volume(label, device, image)
    finally:
        # whatever the test left mounted from this device goes first
        for target in run("findmnt", "-n", "-o", "TARGET", "-S", device).stdout.split("\n"):
            if target:
                run("fuser", "-M", "-k", "-m", target)
                run("umount", target)
        run("losetup", "-d", device)
