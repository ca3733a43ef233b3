"""The node bundle: every file, package and service a repo node carries, rendered from Settings.

One bundle per node feeds both cloud-init (first boot, :mod:`components.cloudinit`) and Fabric
(every converge), so the two can never disagree. Rendering is deterministic: the same inputs
give byte-identical files and the same :attr:`Bundle.digest`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from components import cloudinit, hostkeys, packages
from components.hostkeys import HostKey
from components.render import render
from components.settings import AUTH_PASS, ConfigError, Node, Settings

PLACEHOLDER_AUTH_PASS = "PLACEHLD"
# A well-formed Ceph key (40 base64 characters, 28 bytes) that is obviously not one.
PLACEHOLDER_CEPH_KEY = "PLACEHOLDER+not+a+ceph+key+AAAAAAAAAAA=="
PLACEHOLDER_HOST_KEY_COMMENT = "PLACEHOLDER-not-the-stack-key"
# Public half of an ed25519 key whose private half was discarded when this line was written:
# it parses everywhere and lets nobody in.
PLACEHOLDER_AUTHORIZED_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPMVzB2D7bQS3uvvnvTcOb0/+gzrNfCGhOyIXrveXRz"
    " PLACEHOLDER-no-operator-key"
)

NOTIFY_SCRIPT = "/usr/local/bin/keepalivednotify.sh"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
SYSCTL_CONF = "/etc/sysctl.d/90-repo-cluster.conf"
CEPH_CONF = "/etc/ceph/ceph.conf"
KEEPALIVED_UNIT = "keepalived.service"
# A drop-in for the packaged unit: needs the rbd unit, releases the volume before it stops.
KEEPALIVED_DROPIN = f"/etc/systemd/system/{KEEPALIVED_UNIT}.d/10-repo-cluster.conf"


@dataclass(frozen=True)
class Secrets:
    """Plain secret values, used only inside the renderer (or an ``Output.apply``)."""

    vrrp_auth_pass: str = field(repr=False)
    ceph_keyring: str = field(repr=False)  # the key of client.<cephUser>
    host_keys: tuple[HostKey, ...] = field(repr=False)
    placeholder: bool  # True when any value is a placeholder

    @classmethod
    def resolve(
        cls,
        s: Settings,
        host_keys: tuple[HostKey, ...] | None = None,
        vrrp_auth_pass: str | None = None,
    ) -> Secrets:
        """Each secret from the argument, else from the settings, else a marked placeholder
        that still validates (so a render without the real secrets can be checked)."""
        auth = vrrp_auth_pass if vrrp_auth_pass is not None else s.vrrp_auth_pass.value
        if auth is not None and not (AUTH_PASS.fullmatch(auth) and auth.isprintable()):
            raise ValueError("vrrp_auth_pass: not a valid keepalived auth_pass (see settings)")
        keyring = s.ceph_keyring.value
        if host_keys is not None and sorted(k.type for k in host_keys) != sorted(
            hostkeys.KEY_TYPES
        ):
            raise ValueError(f"host_keys must hold one key of each type {hostkeys.KEY_TYPES}")
        secrets = cls(
            vrrp_auth_pass=auth if auth is not None else PLACEHOLDER_AUTH_PASS,
            ceph_keyring=keyring if keyring is not None else PLACEHOLDER_CEPH_KEY,
            host_keys=host_keys or hostkeys.generate(PLACEHOLDER_HOST_KEY_COMMENT),
            placeholder=False,
        )
        return cls(
            secrets.vrrp_auth_pass,
            secrets.ceph_keyring,
            secrets.host_keys,
            bool(secrets.placeholders),
        )

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Which secrets are placeholders, by config name (never their values)."""
        names = []
        if self.vrrp_auth_pass == PLACEHOLDER_AUTH_PASS:
            names.append("repo-cluster:vrrpAuthPass")
        if self.ceph_keyring == PLACEHOLDER_CEPH_KEY:
            names.append("repo-cluster:cephKeyring")
        if any(k.comment == PLACEHOLDER_HOST_KEY_COMMENT for k in self.host_keys):
            names.append("SSH host keys")
        return tuple(names)


@dataclass(frozen=True)
class BundleFile:
    path: str  # absolute path on the node
    content: bytes = field(repr=False)
    mode: int  # e.g. 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False


@dataclass(frozen=True)
class Bundle:
    node: Node
    os_family: str
    files: tuple[BundleFile, ...]  # host keys and keyring included, marked secret
    package_sources: tuple[str, ...]  # shell commands, idempotent, run before installing
    packages: tuple[str, ...]
    services: tuple[str, ...]  # units to enable and start, in this order
    user_data: str = field(repr=False)  # "#cloud-config\n..." (holds secrets)
    meta_data: str

    @property
    def digest(self) -> str:
        """sha256 over everything above, in a canonical form."""
        doc = {
            "node": [self.node.name, str(self.node.ip), self.node.priority],
            "os_family": self.os_family,
            "files": [
                [f.path, hashlib.sha256(f.content).hexdigest(), f.mode, f.owner, f.group, f.secret]
                for f in sorted(self.files, key=lambda f: f.path)
            ],
            "package_sources": list(self.package_sources),
            "packages": list(self.packages),
            "services": list(self.services),
            "user_data": self.user_data,
            "meta_data": self.meta_data,
        }
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def file(self, path: str) -> BundleFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


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


def rbd_unit_name(s: Settings) -> str:
    return f"rbd-{s.rbd_image}.service"


def _text(path: str, content: str, mode: int = 0o644, secret: bool = False) -> BundleFile:
    return BundleFile(path, content.encode(), mode, secret=secret)


def _node_files(s: Settings, node: Node, secrets: Secrets) -> list[BundleFile]:
    dialect = s.keepalived_dialect
    ctx = {"s": s, "node": node}
    conf = render(
        "keepalived.conf.j2",
        **ctx,
        peers=s.peers(node),
        dialect=dialect,
        auth_pass=secrets.vrrp_auth_pass,
    )
    files = [
        _text(KEEPALIVED_CONF, conf, 0o600, secret=True),  # holds auth_pass
        _text(NOTIFY_SCRIPT, render("keepalivednotify.sh.j2", **ctx), 0o755),
        _text(f"/etc/systemd/system/{rbd_unit_name(s)}", render("rbd.service.j2", **ctx)),
        _text(KEEPALIVED_DROPIN, render("keepalived.service.d.conf.j2", **ctx)),
        _text(CEPH_CONF, render("ceph.conf.j2", **ctx)),
        _text(
            f"/etc/ceph/ceph.client.{s.ceph_user}.keyring",
            render("ceph.keyring.j2", s=s, key=secrets.ceph_keyring),
            0o600,
            secret=True,
        ),
        _text(SYSCTL_CONF, render("sysctl.conf.j2", **ctx)),
    ]
    files += [_text(path, content) for path, content in packages.repo_files(s, node)]
    for key in secrets.host_keys:
        base = f"/etc/ssh/ssh_host_{key.type}_key"
        files.append(_text(base, key.private, 0o600, secret=True))
        files.append(_text(f"{base}.pub", key.public + "\n"))
    return sorted(files, key=lambda f: f.path)


def render_node(s: Settings, node: Node, secrets: Secrets, authorized: tuple[str, ...]) -> Bundle:
    # operations imports BundleFile from here: imported when called, not at load time
    from components.operations import install_packages

    files = tuple(_node_files(s, node, secrets))
    pkgs = packages.packages(s)
    sources = packages.commands(s)
    services = (rbd_unit_name(s), KEEPALIVED_UNIT)
    # first boot installs as a converge does on a node that has none of the packages
    install = tuple(install_packages(s.os_family, sources, pkgs))
    user_data = cloudinit.user_data(
        s, node, files, secrets.host_keys, authorized, install, services, SYSCTL_CONF
    )
    return Bundle(
        node=node,
        os_family=s.os_family,
        files=files,
        package_sources=sources,
        packages=pkgs,
        services=services,
        user_data=user_data,
        meta_data=cloudinit.meta_data(s, node),
    )


def render_cluster(s: Settings, secrets: Secrets, authorized: tuple[str, ...]) -> dict[str, Bundle]:
    return {node.name: render_node(s, node, secrets, authorized) for node in s.nodes}
