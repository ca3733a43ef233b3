"""SSH connections to repo nodes with strict host-key checking.

Every node and the VIP present the same shared host keys (the bundle installs them), so the
only keys a connection trusts are those shared public keys: paramiko's ``RejectPolicy``, no
``~/.ssh/known_hosts``, no ``~/.ssh/config``, no agent.

A node that does not present the shared key yet (a lab node born with its own keys, an existing
server being adopted) is refused unless ``trust_first_contact`` is set; then the key it presents
is accepted for that one connection and its fingerprint is reported. Once the converge has
installed the shared keys and restarted sshd, :func:`reconnect_strict` drops that key again.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from components.config import Settings

# Failures reach the caller as exceptions naming the node; paramiko's transport thread would
# also print each one as a traceback on stderr.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# ed25519 first: paramiko asks the server for the first known key type.
_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa")


class HostKeyError(Exception):
    """The node presented a host key we do not trust."""


@dataclass(frozen=True)
class Target:
    """Where and how to reach one node."""

    name: str
    """Node name, used in every message."""
    host: str
    """Address to connect to (node IP or VIP)."""
    user: str
    """SSH user (root, or a user whose commands need no sudo)."""
    key_file: str
    """Operator private key file."""
    known_keys: tuple[str, ...]
    """Trusted host public keys, OpenSSH lines ``type base64 [comment]``."""
    trust_first_contact: bool = False
    """Accept (and report) the node's own key when it lacks the shared one."""
    connect_timeout: float = 10.0
    """Seconds for TCP connect, banner and authentication each."""


@dataclass(frozen=True)
class Access:
    """How the operator reaches every node of a stack: one :class:`Target` per node."""

    user: str
    key_file: str
    """Private key path (absolute, or relative to the current directory)."""
    known_keys: tuple[str, ...]
    """The shared host public keys."""
    trust_first_contact: bool = False
    connect_timeout: float = 10.0

    @classmethod
    def for_stack(
        cls, s: Settings, root: Path, known_keys: tuple[str, ...], trust_first_contact: bool
    ) -> Access:
        return cls(s.ssh_user, str(s.ssh_key_path(root)), known_keys, trust_first_contact)

    def target(self, name: str, host: str, *, strict: bool = False) -> Target:
        """``strict``: never trust first contact (status, release)."""
        return Target(
            name=name,
            host=host,
            user=self.user,
            key_file=self.key_file,
            known_keys=self.known_keys,
            trust_first_contact=self.trust_first_contact and not strict,
            connect_timeout=self.connect_timeout,
        )


def parse_public_key(line: str) -> paramiko.PKey:
    """An OpenSSH public key line as a paramiko key."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line: {line[:40]!r}")
    return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))


def host_keys(hosts: Iterable[str], public_keys: Iterable[str]) -> paramiko.HostKeys:
    """Known-hosts table: every public key for every host, preferred types first."""
    keys = sorted(
        (parse_public_key(line) for line in public_keys),
        key=lambda k: _PREFERENCE.index(k.get_name()) if k.get_name() in _PREFERENCE else 99,
    )
    table = paramiko.HostKeys()
    for host in hosts:
        for key in keys:
            table.add(host, key.get_name(), key)
    return table


class _Reject(paramiko.RejectPolicy):
    """RejectPolicy with a message naming the node and the refused fingerprint."""

    def __init__(self, name: str) -> None:
        self.name = name

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"{self.name} ({hostname}) presented unknown host key {key.fingerprint}; "
            "no trusted host keys for it"
        )


class _FirstContact(paramiko.MissingHostKeyPolicy):
    """Accept the key presented on this one connection and remember its fingerprint."""

    def __init__(self) -> None:
        self.fingerprint: str | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.fingerprint = key.fingerprint


def pin(c: Connection, public_keys: Iterable[str], name: str) -> None:
    """Make ``c`` trust exactly ``public_keys`` for its host, and nothing unknown."""
    client = paramiko.SSHClient()
    client.get_host_keys().update(host_keys([c.host], public_keys))
    client.set_missing_host_key_policy(_Reject(name))
    c.client = client


def connection(t: Target) -> Connection:
    """An unopened Connection: no ssh_config, no agent, no default keys, bounded timeouts."""
    config = Config(ssh_config=paramiko.SSHConfig(), overrides={"run": {"hide": True}})
    return Connection(
        t.host,
        user=t.user,
        port=22,
        config=config,
        connect_timeout=int(t.connect_timeout),
        connect_kwargs={
            "key_filename": [t.key_file],
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": t.connect_timeout,
            "auth_timeout": t.connect_timeout,
        },
    )


def _open(c: Connection) -> None:
    """``c.open()``, closing the half-open transport when it fails (fabric only closes what
    finished connecting; a leaked one counts against sshd's MaxStartups)."""
    try:
        c.open()
    except BaseException:
        c.client.close()
        raise


def connect(t: Target, report: Callable[[str], None] = print) -> Connection:
    """An open Connection verifying the shared host key; see the module doc for first contact."""
    c = connection(t)
    pin(c, t.known_keys, t.name)
    try:
        _open(c)
        return c
    except (paramiko.BadHostKeyException, HostKeyError) as e:
        if not t.trust_first_contact:
            if isinstance(e, HostKeyError):
                raise
            raise HostKeyError(
                f"{t.name} ({t.host}) presented host key {e.key.fingerprint}, not the shared "
                "host key: refused (a node without it needs --trust-first-contact)"
            ) from None
    c = connection(t)
    policy = _FirstContact()
    c.client.set_missing_host_key_policy(policy)
    _open(c)
    report(f"{t.name} ({t.host}): first contact, trusted host key {policy.fingerprint}")
    return c


def reconnect_strict(c: Connection, public_keys: Iterable[str], name: str) -> None:
    """Drop the connection and reopen it trusting only ``public_keys`` (after a key change)."""
    c.close()
    pin(c, public_keys, name)
    _open(c)
