"""Converge one node to its bundle over a fabric Connection, idempotently.

Steps (each gathers facts, asks :mod:`components.operations` what to do, does only that, and
records it): cloud-init, os, sources, packages, files, secrets, sysctl, units, sshd, keepalived
(first releasing what holds the volume without it). A failing step ends the converge naming the
node and the step; :class:`NodeResult` says what changed.

The secret files (host private keys, keyring, keepalived.conf) go in the ``secrets`` step only,
after every other file, and only to a node whose host key was proven (shared or published by
its VM) or, on a lab stack, trusted on first contact (:func:`.trust.secrets_refusal`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import paramiko
from fabric import Connection

import components.converge.facts as facts
import components.converge.operations as operations
import components.converge.ssh as sshconn
from components.bundle import PATHS, Bundle, packages
from components.converge.result import NodeResult
from components.converge.trust import Verified, secrets_refusal

CLOUD_INIT_TIMEOUT = 900.0
COMMAND_TIMEOUT = 300.0
INSTALL_TIMEOUT = 1800.0


class StepError(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


class StartGate(Protocol):
    """Orders first starts of keepalived across nodes (see :mod:`components.fleet`)."""

    def wait_turn(self, c: Connection, node: str) -> None: ...

    def started(self, c: Connection, node: str) -> None: ...

    def passed(self, node: str) -> None: ...


def run(c: Connection, step: str, command: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a changing command; a non-zero exit is this step's error."""
    r = c.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    if not r.ok:
        detail = (r.stderr.strip() or r.stdout.strip())[-400:]
        raise StepError(step, f"`{command[:120]}` exited {r.exited}: {detail}")
    return r.stdout


def feed(c: Connection, step: str, command: str, data: bytes, timeout: float) -> None:
    """Run ``command`` with ``data`` on its stdin (binary safe, never on a command line)."""
    transport = c.client.get_transport()
    if transport is None:
        raise StepError(step, "not connected")
    chan = transport.open_session(timeout=timeout)
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        chan.sendall(data)
        chan.shutdown_write()
        out = chan.makefile("rb").read()
        err = chan.makefile_stderr("rb").read()
        status = chan.recv_exit_status()
    finally:
        chan.close()
    if status != 0:
        detail = (err or out).decode(errors="replace").strip()[-400:]
        raise StepError(step, f"`{command}` exited {status}: {detail}")


def shared_public_keys(bundle: Bundle) -> tuple[str, ...]:
    return tuple(
        f.content.decode().strip() for f in bundle.files if PATHS.is_host_public_key(f.path)
    )


def presents(c: Connection, public_keys: tuple[str, ...]) -> bool:
    """Whether the server key of this connection is one of ``public_keys``."""
    transport = c.client.get_transport()
    assert transport is not None
    key = transport.get_remote_server_key()
    return any(sshconn.parse_public_key(k) == key for k in public_keys)


def check_secrets_allowed(
    c: Connection, bundle: Bundle, verified: Verified | None, first_contact_secrets: bool
) -> None:
    """StepError unless the host behind ``c`` may get the secret files."""
    key = c.client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
    how = verified or (Verified.SHARED if presents(c, shared_public_keys(bundle)) else None)
    refusal = secrets_refusal(how, key.fingerprint, first_contact_secrets)
    if refusal:
        raise StepError("secrets", refusal)


def converge_node(
    c: Connection,
    bundle: Bundle,
    *,
    gate: StartGate | None = None,
    verified: Verified | None = None,
    first_contact_secrets: bool = False,
    cloud_init_timeout: float = CLOUD_INIT_TIMEOUT,
    log: Callable[[str], None] = lambda _msg: None,
) -> NodeResult:
    """Make the node behind ``c`` match ``bundle``; never raises for a node-side failure.
    ``verified``: how ``c``'s host key was trusted (None: it must present a shared key)."""
    name = bundle.node.name
    result = NodeResult(name, verified=verified.value if verified else None)

    def apply(step: str, commands: list[str], timeout: float = COMMAND_TIMEOUT) -> None:
        for cmd in commands:
            run(c, step, cmd, timeout)
            result.steps.append(f"{step}: {cmd}")

    def run_owed(step: str, marker: str, commands: list[str]) -> None:
        """Run a reload's commands, then drop its marker (if one was left)."""
        apply(step, commands)
        if commands or marker in owed:
            run(c, step, operations.clear_owed(marker))

    owed: list[str] = []
    step = "cloud-init"
    try:
        status = facts.cloud_init_status(c)
        if status is not None and status not in facts.CLOUD_INIT_SETTLED:
            log(f"{name}: waiting for cloud-init ({status})")
            c.run(
                "cloud-init status --wait",
                hide=True,
                warn=True,
                in_stream=False,
                timeout=cloud_init_timeout,
            )

        step = "os"
        family = facts.os_family(c)
        if family != bundle.os_family:
            raise StepError(step, f"node runs {family}, the bundle is for {bundle.os_family}")

        step = "files"  # every file's digest, mode and owner in one round trip
        states = facts.file_states(c, [f.path for f in bundle.files])
        owed = facts.reloads_owed(c)  # reloads an earlier run wrote files for, not ran
        changes = operations.file_changes(bundle.files, states)

        def write(step: str, subset: list[operations.FileChange]) -> None:
            if subset:
                script = operations.write_files_script(subset, family)  # checks keepalived.conf
                feed(c, step, "sh -s", script.encode(), 120)
            for ch in subset:
                result.changed.append(ch.file.path)
                result.steps.append(
                    f"{step}: {'write' if ch.content else 'chown/chmod'} {ch.file.path}"
                )

        step = "sources"  # repository files before the packages that come from them
        write(step, [ch for ch in changes if operations.is_package_source(ch.file.path)])

        step = "packages"
        missing = facts.missing_packages(c, family, bundle.packages)
        apply(
            step,
            packages.install_commands(family, bundle.package_sources, missing),
            INSTALL_TIMEOUT,
        )

        step = "files"
        plain = [ch for ch in changes if not ch.file.secret]
        write(step, [ch for ch in plain if not operations.is_package_source(ch.file.path)])

        step = "secrets"  # only to a host that proved who it is (see the module doc)
        secret = [ch for ch in changes if ch.file.secret]
        if secret:
            check_secrets_allowed(c, bundle, verified, first_contact_secrets)
        write(step, secret)
        changed = list(result.changed)

        step = "sysctl"
        sysctl_files = [f for f in bundle.files if operations.is_sysctl_file(f.path)]
        keys = [k for f in sysctl_files for k in operations.sysctl_settings(f.content)]
        live = facts.sysctl_values(c, keys)
        apply(step, operations.apply_sysctl(sysctl_files, changed, live))

        step = "image"  # the image can be fenced, or no node may mount it
        if bundle.image:
            problem = operations.image_feature_problem(
                bundle.image, facts.image_info(c, bundle.image, bundle.ceph_user)
            )
            if problem:
                raise StepError(step, problem)

        step = "units"
        run_owed(step, operations.DAEMON_RELOAD, operations.daemon_reload(changed, owed))
        units = facts.unit_states(c, (*bundle.services, *bundle.on_demand))
        apply(step, operations.enable_services(bundle.services, units))
        apply(step, operations.start_services(bundle.services, units))
        apply(step, operations.retire_boot_units(bundle.on_demand, units))

        step = "sshd"
        shared = shared_public_keys(bundle)
        if shared:
            restart = operations.restart_sshd(family, changed, presents(c, shared), owed)
            run_owed(step, operations.SSHD, restart)
            if not presents(c, shared) or operations.host_keys_changed(changed):
                step = "sshd (reconnect with the shared host key)"
                _reconnect(c, shared, name)

        step = "keepalived"
        active = units.get(PATHS.keepalived_unit, facts.UnitState("", "unknown")).active
        commands = operations.keepalived(family, changed, active, owed)
        starting = any(cmd.startswith("systemctl start") for cmd in commands)
        if starting and gate is not None:
            gate.wait_turn(c, name)
        # first, what holds the volume without keepalived (a server being adopted)
        apply(step, [operations.release_before_start()] if starting else [])
        run_owed(step, operations.KEEPALIVED, commands)
        if starting and gate is not None:
            gate.started(c, name)
    except StepError as e:
        result.error = f"{name}: {e.step}: {e}"
    except sshconn.HostKeyError as e:
        result.error = f"{name}: {step}: {e}"
    except Exception as e:  # a timeout, a dropped connection...: this node's error, not a crash
        result.error = f"{name}: {step}: {type(e).__name__}: {e}"
    finally:
        if gate is not None:
            gate.passed(name)
    return result


def _reconnect(c: Connection, shared: tuple[str, ...], name: str, timeout: float = 20) -> None:
    """sshd was just restarted: reconnect trusting only the shared key (retried until it
    listens again, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sshconn.reconnect_strict(c, shared, name)
            return
        except sshconn.HostKeyError:
            raise
        except paramiko.BadHostKeyException as e:
            raise sshconn.HostKeyError(
                f"{name} ({c.host}) still presents {e.key.fingerprint} after the sshd restart, "
                "not the shared host key"
            ) from None
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def converge_one(
    target: sshconn.Target,
    bundle: Bundle,
    *,
    gate: StartGate | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> NodeResult:
    """Connect to one node and converge it: what ``fab converge`` does for each node and the
    Pulumi converge step does for its node. Never raises for a node-side failure."""
    name = bundle.node.name
    accepted: list[str] = []

    def report(message: str) -> None:
        accepted.append(message.rsplit(" ", 1)[-1])
        log(message)

    try:
        c, verified = sshconn.connect_verified(target, report)
    except sshconn.HostKeyError as e:
        error = f"{name}: connect: {e}"
    except (OSError, paramiko.SSHException) as e:
        error = f"{name}: connect: {target.host}:22 unreachable ({e})"
    else:
        transport = c.client.get_transport()
        key_seen = transport.get_remote_server_key().fingerprint if transport else None
        lab = target.first_contact_secrets
        try:
            result = converge_node(
                c, bundle, gate=gate, verified=verified, first_contact_secrets=lab, log=log
            )
            if result.error is None:
                sshconn.remember(target, c)  # converged: it serves the shared key now
        finally:
            c.close()
        result.first_contact_fingerprint = accepted[0] if accepted else None
        result.host_key = key_seen
        return result
    if gate is not None:
        gate.passed(name)
    return NodeResult(name, error=error)
