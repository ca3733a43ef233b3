"""Pure desired state: what each node carries, rendered from the settings model.

Layers inside the package, each importing only those before it: ``paths`` (node paths and
unit names, imports nothing), ``model`` (Bundle, BundleFile), ``vrrp`` (the digest of the
VRRP parameters every node shares), ``hostkeys``, ``secrets``,
``render`` (Jinja2), ``packages``, ``cloudinit``, ``build`` (render_node/render_cluster).
No I/O beyond reading the templates and the operator's public key.
"""

from components.bundle.build import authorized_keys, render_cluster, render_node
from components.bundle.hostkeys import KEY_TYPES, HostKey, generate
from components.bundle.model import Bundle, BundleFile, bundle_from_json, bundle_to_json
from components.bundle.paths import PATHS, NodePaths
from components.bundle.secrets import Secrets, new_auth_pass

__all__ = [
    "KEY_TYPES",
    "PATHS",
    "Bundle",
    "BundleFile",
    "HostKey",
    "NodePaths",
    "Secrets",
    "authorized_keys",
    "bundle_from_json",
    "bundle_to_json",
    "generate",
    "new_auth_pass",
    "render_cluster",
    "render_node",
]
