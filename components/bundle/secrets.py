"""The stack's secrets as the renderer sees them, and the placeholders a render without them
uses: well-formed values that are obviously not real, named by :attr:`Secrets.placeholders`.

No node-specific secret exists: a VM makes its own host key at first boot and publishes only
the public half (components/bundle/cloudinit.py).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

import components.bundle.hostkeys as hostkeys
from components.bundle.hostkeys import HostKey
from components.config import AUTH_PASS, Settings

# keepalived.conf-safe: no quote, brace, comment mark or backslash (see config.AUTH_PASS)
_AUTH_ALPHABET = string.ascii_letters + string.digits


def new_auth_pass() -> str:
    """A random VRRP auth_pass: 8 characters, all keepalived uses."""
    return "".join(secrets.choice(_AUTH_ALPHABET) for _ in range(8))


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
        ceph_keyring: str | None = None,
    ) -> Secrets:
        """Each secret from the argument, else from the settings, else a marked placeholder
        that still validates (so a render without the real secrets can be checked)."""
        auth = vrrp_auth_pass if vrrp_auth_pass is not None else s.vrrp_auth_pass.value
        if auth is not None and not (AUTH_PASS.fullmatch(auth) and auth.isprintable()):
            raise ValueError("vrrp_auth_pass: not a valid keepalived auth_pass (see settings)")
        keyring = s.ceph_keyring.value if s.ceph_keyring.value is not None else ceph_keyring
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
    def public_host_keys(self) -> tuple[str, ...]:
        """The shared host public keys: the only keys a connection to a node trusts."""
        return tuple(k.public for k in self.host_keys)

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
