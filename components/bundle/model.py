"""The bundle's types: a node's files and what it runs, the unit both cloud-init and the
converge consume. At the bottom of the bundle package: imports only the settings model."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field

from components.config import Node


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
    user_data: str = field(repr=False)  # "#cloud-config\n...": no secret, no key
    meta_data: str
    on_demand: tuple[str, ...] = ()
    """Units installed but never enabled (the notify script starts them); one an earlier
    bundle enabled is disabled again."""
    image: str = ""
    """The Ceph image the node maps, ``pool/image`` (the converge checks its features)."""
    ceph_user: str = ""
    """The Ceph client the node maps it as (``client.<ceph_user>``)."""

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
            "on_demand": list(self.on_demand),
            "image": [self.image, self.ceph_user],
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


def bundle_to_json(b: Bundle) -> str:
    """What a converge needs of a bundle (not its cloud-init documents), as JSON."""
    return json.dumps(
        {
            "node": {"name": b.node.name, "ip": str(b.node.ip), "priority": b.node.priority},
            "os_family": b.os_family,
            "files": [
                {
                    "path": f.path,
                    "content": base64.b64encode(f.content).decode(),
                    "mode": f.mode,
                    "owner": f.owner,
                    "group": f.group,
                    "secret": f.secret,
                }
                for f in b.files
            ],
            "package_sources": list(b.package_sources),
            "packages": list(b.packages),
            "services": list(b.services),
            "on_demand": list(b.on_demand),
            "image": b.image,
            "ceph_user": b.ceph_user,
        },
        sort_keys=True,
    )


def bundle_from_json(text: str) -> Bundle:
    """The inverse of :func:`bundle_to_json` (user_data and meta_data left empty)."""
    d = json.loads(text)
    node = Node(d["node"]["name"], ipaddress.IPv4Address(d["node"]["ip"]), d["node"]["priority"])
    files = tuple(
        BundleFile(
            f["path"],
            base64.b64decode(f["content"]),
            f["mode"],
            f["owner"],
            f["group"],
            f["secret"],
        )
        for f in d["files"]
    )
    return Bundle(
        node=node,
        os_family=d["os_family"],
        files=files,
        package_sources=tuple(d["package_sources"]),
        packages=tuple(d["packages"]),
        services=tuple(d["services"]),
        user_data="",
        meta_data="",
        on_demand=tuple(d.get("on_demand", ())),
        image=d.get("image", ""),
        ceph_user=d.get("ceph_user", ""),
    )
