"""Rendering a node's bundle: every file, package and service it carries, from Settings.

One bundle per node feeds both cloud-init (first boot, :mod:`components.bundle.cloudinit`:
its non-secret files only, no key, no service started but the host key's publication) and Fabric
(every converge: every file, the secret ones once the node's host key is proven), so the two
can never disagree. Rendering is deterministic: the
same inputs give byte-identical files and the same :attr:`Bundle.digest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import components.bundle.cloudinit as cloudinit
import components.bundle.packages as packages
import components.bundle.vrrp as vrrp
from components.bundle.model import Bundle, BundleFile
from components.bundle.paths import PATHS
from components.bundle.render import render
from components.bundle.secrets import PLACEHOLDER_AUTHORIZED_KEY, Secrets
from components.config import ConfigError, Node, Settings


@dataclass(frozen=True)
class ReleaseTiming:
    """How long a release may take, in one place: the notify script's bounds and the keepalived
    unit's stop timeout, which must outlast them (or systemd kills the release half-way)."""

    lock_wait: int = 60
    """Seconds a notify call waits for an earlier one."""
    umount_tries: int = 5
    umount_timeout: int = 20
    """Seconds one umount may block (unreachable storage) before it is given up, never lazy."""
    retry_pause: int = 2
    """Seconds between the background tries of a release that failed (storage unreachable)."""
    ceph_timeout: int = 30
    """Seconds one Ceph command of the fence (rbd status, lock rm, blocklist) may take."""
    sshd_banner_wait: int = 5
    """Seconds the sshd check waits for sshd's banner before it counts as a failure."""
    blocklist_seconds: int = 5 * 365 * 24 * 3600
    """How long a fenced client instance stays in the OSD blocklist: years, so that a node
    paused past any expiry never writes again (Ceph's default is one hour)."""
    osd_request_timeout: int = 30
    """Seconds an I/O of the MASTER's mapping may wait for unreachable OSDs before it fails
    (krbd's default: for ever), so a node cut off from Ceph can still release."""
    xfs_eio_retries: int = 3
    """Times XFS retries a failed metadata write before it shuts the file system down
    (its default: for ever)."""
    rank_pause: int = 10
    """Seconds between a MASTER's looks at its peers' rank records, while its own rank is
    above the lowest it may take (the notify script's rank)."""
    promote_budget: int = 150
    """Seconds a MASTER call may take (lock wait, fence, map, mount) before the volume check
    stops waiting for it and the node leaves MASTER."""

    @property
    def unmap_timeout(self) -> int:
        """Seconds an unmap may take: past the OSD timeout, after which the kernel gives up
        releasing the lock of a node cut off from Ceph and unmaps anyway."""
        return self.osd_request_timeout + 20

    @property
    def stop_timeout(self) -> int:
        # the lock wait; each umount try: fuser, umount, 1 s pause; the unmap (graceful, then
        # forced); the rank record's removal (one Ceph command); then 30 s to spare
        tries = self.umount_tries * (self.umount_timeout + 3)
        return self.lock_wait + tries + 2 * self.unmap_timeout + self.ceph_timeout + 30


RELEASE_TIMING = ReleaseTiming()


def authorized_keys(s: Settings, root: Path, *, required: bool = False) -> tuple[str, ...]:
    """The operator's public keys: ``<sshKeyFile>.pub`` (``~`` expanded, relative paths from
    ``root``). Missing or empty: one marked placeholder key that still parses, or, when
    ``required`` (VMs are about to be built with them), a ConfigError naming the key."""
    key_file = s.ssh_key_path(root)
    pub = key_file.with_name(key_file.name + ".pub")
    try:
        lines = pub.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    keys = tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    if not keys and required:
        raise ConfigError(
            [f"repo-cluster:sshKeyFile: no public key in {pub}: the nodes would admit nobody"]
        )
    return keys or (PLACEHOLDER_AUTHORIZED_KEY,)


def _text(path: str, content: str, mode: int = 0o644, secret: bool = False) -> BundleFile:
    return BundleFile(path, content.encode(), mode, secret=secret)


def _node_files(s: Settings, node: Node, secrets: Secrets) -> list[BundleFile]:
    dialect = s.keepalived_dialect
    ctx = {"s": s, "node": node, "timing": RELEASE_TIMING}
    conf = render(
        "keepalived.conf.j2",
        **ctx,
        peers=s.peers(node),
        dialect=dialect,
        auth_pass=secrets.vrrp_auth_pass,
        vrrp_marker=vrrp.MARKER,
        vrrp_digest=vrrp.digest(s, secrets.vrrp_auth_pass),
    )
    files = [
        _text(PATHS.keepalived_conf, conf, 0o600, secret=True),  # holds auth_pass
        _text(PATHS.notify_script, render("keepalivednotify.sh.j2", **ctx), 0o755),
        _text(PATHS.rank_conf, render("repo-cluster-rank.conf.j2", **ctx)),
        _text(PATHS.sshd_check, render("repo-cluster-chk-sshd.j2", **ctx), 0o755),
        _text(PATHS.volume_check, render("repo-cluster-chk-volume.j2", **ctx), 0o755),
        _text(PATHS.publish_host_key, render("repo-cluster-publish-host-key.j2", **ctx), 0o755),
        _text(
            PATHS.unit_file(PATHS.publish_host_key_unit),
            render("repo-cluster-publish-host-key.service.j2", **ctx),
        ),
        _text(PATHS.unit_file(PATHS.rbd_unit(s.rbd_image)), render("rbd.service.j2", **ctx)),
        _text(PATHS.keepalived_dropin, render("keepalived.service.d.conf.j2", **ctx)),
        _text(PATHS.ceph_conf, render("ceph.conf.j2", **ctx)),
        _text(
            PATHS.ceph_keyring(s.ceph_user),
            render("ceph.keyring.j2", s=s, key=secrets.ceph_keyring),
            0o600,
            secret=True,
        ),
        _text(PATHS.sysctl_conf, render("sysctl.conf.j2", **ctx)),
    ]
    files += [_text(path, content) for path, content in packages.repo_files(s, node)]
    for key in secrets.host_keys:
        base = PATHS.host_key(key.type)
        files.append(_text(base, key.private, 0o600, secret=True))
        files.append(_text(f"{base}.pub", key.public + "\n"))
    return sorted(files, key=lambda f: f.path)


def render_node(s: Settings, node: Node, secrets: Secrets, authorized: tuple[str, ...]) -> Bundle:
    files = tuple(_node_files(s, node, secrets))
    pkgs = packages.packages(s)
    sources = packages.commands(s)
    # the rbd unit is not started at boot: the notify script starts it on the MASTER only
    services = (PATHS.publish_host_key_unit, PATHS.keepalived_unit)
    # first boot installs as a converge does on a node that has none of the packages
    install = tuple(packages.install_commands(s.os_family, sources, pkgs))
    user_data = cloudinit.user_data(s, node, files, authorized, install)
    return Bundle(
        node=node,
        os_family=s.os_family,
        files=files,
        package_sources=sources,
        packages=pkgs,
        services=services,
        user_data=user_data,
        meta_data=cloudinit.meta_data(s, node),
        on_demand=(PATHS.rbd_unit(s.rbd_image),),
        image=f"{s.rbd_pool}/{s.rbd_image}",
        ceph_user=s.ceph_user,
    )


def render_cluster(s: Settings, secrets: Secrets, authorized: tuple[str, ...]) -> dict[str, Bundle]:
    return {node.name: render_node(s, node, secrets, authorized) for node in s.nodes}
