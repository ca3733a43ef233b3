"""The SSH host keys every node shares, so Veeam sees one host behind the VIP whichever node
answers (the article copies /etc/ssh/ssh_host_* from repo1 to repo2; we generate them once).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KEY_TYPES = ("ed25519", "ecdsa", "rsa")


@dataclass(frozen=True)
class HostKey:
    type: str  # "ed25519" | "ecdsa" | "rsa"
    private: str = field(repr=False)  # OpenSSH private key text: a secret
    public: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
        blob = base64.b64decode(self.public.split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def comment(self) -> str:
        parts = self.public.split(maxsplit=2)
        return parts[2] if len(parts) == 3 else ""


_PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _new_key(type_: str) -> _PrivateKey:
    if type_ == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if type_ == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if type_ == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unsupported host key type {type_!r}")


def _host_key(type_: str, key: _PrivateKey, comment: str) -> HostKey:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return HostKey(type_, private, f"{public.decode()} {comment}".rstrip())


def generate(comment: str) -> tuple[HostKey, ...]:
    """A fresh set: ed25519, ecdsa (nistp256) and rsa (3072 bits), in that order."""
    return tuple(_host_key(t, _new_key(t), comment) for t in KEY_TYPES)
