"""SSH connections to repo nodes with strict host-key checking.

Every node and the VIP present the same shared host keys (the converge installs them), so the
only keys a strict connection trusts are those shared public keys: paramiko's
``RejectPolicy``, no ``~/.ssh/known_hosts``, no ``~/.ssh/config``, no agent.

A converge connection (:func:`connect_verified`) may also trust, as
:mod:`components.converge.trust` decides: the host key the node's VM publishes in its
guestinfo (a new VM made it at first boot: components/vcenter/published.py), or, with
``trust_first_contact``, the key of a node never seen before (reported with its fingerprint,
recorded; a changed key is always refused). One key is decided on the very connection that is
then used: there is no second connection accepting whatever it is shown. Once the converge has
installed the shared keys and restarted sshd, :func:`reconnect_strict` trusts only them.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

import components.converge.trust as trust
from components.config import Settings
from components.converge.trust import Verified

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
    """Accept (and report) the key of a node never seen before (see the module doc)."""
    connect_timeout: float = 10.0
    """Seconds for TCP connect, banner and authentication each."""
    published_key: str | None = None
    """The host public key the node's VM publishes (read over the vSphere API)."""
    confirmed_key: str | None = None
    """The fingerprint of the node's host key the stack gives (nodes[].hostKey)."""
    record: str | None = None
    """The stack's record of seen keys (:class:`trust.SeenNodes`); None: no record."""
    first_contact_secrets: bool = False
    """A host trusted on first contact only may get the secret files (lab stacks)."""
    port: int = 22


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
    published_keys: tuple[tuple[str, str], ...] = ()
    """(node name, the host public key its VM publishes) of the nodes whose VM publishes one."""
    confirmed_keys: tuple[tuple[str, str], ...] = ()
    """(node name, host key fingerprint) the stack confirms (nodes[].hostKey)."""
    record: str | None = None
    first_contact_secrets: bool = False

    @classmethod
    def for_stack(
        cls,
        s: Settings,
        root: Path,
        known_keys: tuple[str, ...],
        trust_first_contact: bool,
        *,
        stack: str | None = None,
        published_keys: tuple[tuple[str, str], ...] = (),
    ) -> Access:
        """``stack``: keep its record of seen keys (:func:`trust.record_path`). Secrets go to
        a host trusted on first contact only on a lab stack (``lab: true``), whose nodes are
        born with their own random keys; elsewhere only to a proven host."""
        return cls(
            s.ssh_user,
            str(s.ssh_key_path(root)),
            known_keys,
            trust_first_contact,
            published_keys=published_keys,
            confirmed_keys=tuple((n.name, n.host_key) for n in s.nodes if n.host_key),
            record=str(trust.record_path(s, stack, root)) if stack else None,
            first_contact_secrets=s.lab,
        )

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
            published_key=None if strict else dict(self.published_keys).get(name),
            confirmed_key=None if strict else dict(self.confirmed_keys).get(name),
            record=None if strict else self.record,
            first_contact_secrets=self.first_contact_secrets,
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


def fingerprint(line: str) -> str:
    return parse_public_key(line).fingerprint


class _Verify(paramiko.MissingHostKeyPolicy):
    """Decide the one key this connection is shown (:func:`trust.decide`); refuse the rest."""

    def __init__(self, t: Target, seen: trust.Seen | None) -> None:
        self.t, self.seen = t, seen
        self.shared = {fingerprint(k) for k in t.known_keys}
        self.published = fingerprint(t.published_key) if t.published_key else None
        self.confirmed = t.confirmed_key
        self.verified: Verified | None = None
        self.fingerprint: str | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        try:
            how = trust.decide(
                self.t.name,
                key.fingerprint,
                shared=self.shared,
                published=self.published,
                confirmed=self.confirmed,
                seen=self.seen,
                trust_first_contact=self.t.trust_first_contact,
            )
        except trust.Refused as e:
            raise HostKeyError(f"{self.t.name} ({hostname}) {e}") from None
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.verified, self.fingerprint = how, key.fingerprint


def pin(c: Connection, public_keys: Iterable[str], name: str) -> None:
    """Make ``c`` trust exactly ``public_keys`` for its host, and nothing unknown."""
    client = paramiko.SSHClient()
    names = [c.host] if c.port == 22 else [f"[{c.host}]:{c.port}"]
    client.get_host_keys().update(host_keys(names, public_keys))
    client.set_missing_host_key_policy(_Reject(name))
    c.client = client


def connection(t: Target) -> Connection:
    """An unopened Connection: no ssh_config, no agent, no default keys, bounded timeouts."""
    config = Config(ssh_config=paramiko.SSHConfig(), overrides={"run": {"hide": True}})
    return Connection(
        t.host,
        user=t.user,
        port=t.port,
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
    """An open Connection verifying the node's host key; see the module doc."""
    return connect_verified(t, report)[0]


def connect_verified(
    t: Target, report: Callable[[str], None] = print
) -> tuple[Connection, Verified]:
    """An open Connection and how its host key was trusted (:class:`trust.Verified`); the
    stack's record (``t.record``) remembers the key. :class:`HostKeyError` when refused."""
    c = connection(t)
    if not t.trust_first_contact and t.published_key is None and t.confirmed_key is None:
        pin(c, t.known_keys, t.name)
        try:
            _open(c)
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(
                f"{t.name} ({t.host}) presented host key {e.key.fingerprint}, not the shared "
                f"host key {e.expected_key.fingerprint}: refused (a node without it needs "
                "--trust-first-contact)"
            ) from None
        remember(t, c)
        return c, Verified.SHARED
    record = trust.SeenNodes(Path(t.record)) if t.record else None
    policy = _Verify(t, record.get(t.name) if record else None)
    c.client = paramiko.SSHClient()  # an empty table: the policy decides every key
    c.client.set_missing_host_key_policy(policy)
    _open(c)
    assert policy.verified is not None and policy.fingerprint is not None
    if record is not None:
        record.remember(t.name, policy.fingerprint, policy.verified)
    if policy.verified is Verified.FIRST_CONTACT:
        report(f"{t.name} ({t.host}): first contact, trusted host key {policy.fingerprint}")
    return c, policy.verified


def remember(t: Target, c: Connection) -> None:
    """Record that the node behind ``c`` serves a shared key, when it does (a converged
    node: from now on any key but a shared or published one is a changed one)."""
    transport = c.client.get_transport()
    if t.record is None or transport is None:
        return
    key = transport.get_remote_server_key()
    if key.fingerprint in {fingerprint(k) for k in t.known_keys}:
        trust.SeenNodes(Path(t.record)).remember(t.name, key.fingerprint, Verified.SHARED)


def reconnect_strict(c: Connection, public_keys: Iterable[str], name: str) -> None:
    """Drop the connection and reopen it trusting only ``public_keys`` (after a key change)."""
    c.close()
    pin(c, public_keys, name)
    _open(c)
