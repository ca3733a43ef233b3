"""NodeConverge: the Fabric converge of one node, as a Pulumi dynamic resource.

Registered per node after its VM (``depends_on``), so ``pulumi up`` ends with every node
matching its bundle; beside the running nodes (components/converge/joining.py: mixed versions
refused; on a new VM the step ends once the node serves). Inputs: address, SSH access, the
trusted host keys, the bundle (serialized, secret) and its digest; ``diff`` reports an update
when any changes, and a replace (delete first) when the VM is replaced; ``delete`` releases
the volume and stops keepalived (best effort, bounded, never a lazy unmount) before the VM
goes, whether it is destroyed or replaced.

Host keys (components/converge/trust.py): on create, and on an update whose ``vm_id``
changed (a replaced VM), the node is a new VM: the converge reads, over the vSphere API, the
host key the VM made at first boot and published in its guestinfo
(components/vcenter/published.py), waiting while it boots, and trusts exactly that key
besides the shared ones; and the key ``nodes[].hostKey`` confirms, if the stack gives one
(then the published key is read once, not waited for: an adopted server may publish none).
Any other update trusts only the shared keys (plus, with ``trust_first_contact``, what the
record allows). The secret files go only to a node proven by one of those keys, or on a lab
stack (``first_contact_secrets``) to one trusted on first contact. The outputs ``host_key``
and ``verified`` keep, in the stack's state, the key each converge was shown and how it was
trusted.

The provider does its SSH work through a :class:`Runner`; tests hand it a fake one.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from components.bundle import Bundle, bundle_from_json, bundle_to_json
from components.converge.operations import release_command
from components.rerun import log_info, log_warn

# Inputs whose change means "converge again" (an update, never a replace). Not key_file: the
# operator's key path differs between checkouts and machines without changing the node.
WATCHED = ("vm_id", "digest", "ip", "ssh_user", "known_host_keys", "trust_first_contact")
RESULTS = ("changed", "count", "first_contact_fingerprint", "host_key", "verified", "deferred")
RELEASE_TIMEOUT = 60
BOOT_TIMEOUT = 900  # a VM just created boots, runs cloud-init's first stage, then starts sshd
REACH_TIMEOUT = 30  # a node converged before: SSH answers at once, or it is down


class NodeUnreachable(RuntimeError):
    """A node converged before does not answer SSH: it is down, not booting."""


def wait_for_ssh(host: str, port: int = 22, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until ``host:port`` accepts TCP connections (the new VM's sshd is up);
    NodeUnreachable after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=5):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise NodeUnreachable(
                    f"{host}:{port}: no SSH after {timeout:.0f}s ({exc})"
                ) from exc
            time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))


# --------------------------------------------------------------------------- runner


class Runner(Protocol):
    def converge(self, props: dict[str, Any], new_vm: bool) -> dict[str, Any]:
        """Converge the node (``new_vm``: a VM not converged yet, trusted by the host key it
        publishes); return the RESULTS outputs, raise naming node and step."""
        ...

    def release(self, props: dict[str, Any]) -> None:
        """Stop keepalived and unmount the volume; best effort, never raises."""
        ...


class SshRunner:
    """The real thing: converge over SSH (components.converge) with strict host keys."""

    def _target(
        self, props: dict[str, Any], first_contact: bool, published: str | None = None
    ) -> Any:
        from components.converge.ssh import Access

        node, confirmed = str(props["node"]), props.get("confirmed_host_key")
        access = Access(
            user=str(props["ssh_user"]),
            key_file=str(props["key_file"]),
            known_keys=tuple(props["known_host_keys"]),
            trust_first_contact=first_contact,
            published_keys=((node, published),) if published else (),
            confirmed_keys=((node, str(confirmed)),) if confirmed else (),
            record=str(props["record"]) if props.get("record") else None,
            first_contact_secrets=bool(props.get("first_contact_secrets")),
        )
        return access.target(node, str(props["ip"]))

    def _published(self, props: dict[str, Any], once: bool) -> str | None:
        """The host key the new VM publishes, waited for while it boots (read ``once`` when
        the node has another way in: first contact, a confirmed key)."""
        from components.vcenter import published

        where = props.get("vcenter")
        if not isinstance(where, dict):
            return None
        vc = published.VCenter.of_props(where, str(props.get("vcenter_password") or ""))
        node, stack_id = str(props["node"]), str(where["stack_id"])
        if once:
            return published.read(vc, stack_id, [node]).get(node)
        return published.wait(vc, stack_id, node, BOOT_TIMEOUT, log=log_info)

    def converge(self, props: dict[str, Any], new_vm: bool) -> dict[str, Any]:
        from pathlib import Path

        from components.converge import trust
        from components.converge.node import converge_one

        first_contact = bool(props["trust_first_contact"])
        wait_for_ssh(str(props["ip"]), timeout=BOOT_TIMEOUT if new_vm else REACH_TIMEOUT)
        # a node with another way in (first contact, a confirmed key) is not waited for
        once = first_contact or bool(props.get("confirmed_host_key"))
        key = self._published(props, once) if new_vm else None
        target = self._target(props, first_contact, key)
        if new_vm and target.record:  # a new machine: nothing was seen of it yet
            trust.SeenNodes(Path(target.record)).forget(target.name)
        peers = None  # the running nodes, seen from the stack's config (joining.Joining)
        if props.get("config"):
            from components.converge import joining, ssh

            keys = tuple(props["known_host_keys"])
            access = ssh.Access(str(props["ssh_user"]), str(props["key_file"]), keys)
            peers = joining.Joining(dict(props["config"]), str(props["node"]), access)
        bundle = bundle_from_json(str(props["bundle"]))
        result = converge_one(target, bundle, gate=peers.gate if peers else None, log=log_info)
        if result.error:
            raise RuntimeError(result.error)
        if new_vm and peers:  # serving, before the next node is touched
            log_info(peers.await_service())
        return {
            "changed": result.changed,
            "count": result.count,
            "first_contact_fingerprint": result.first_contact_fingerprint,
            "host_key": result.host_key,
            "verified": result.verified,
        }

    def release(self, props: dict[str, Any]) -> None:
        from components.converge import ssh as sshconn

        try:
            with sshconn.connect(self._target(props, False)) as c:
                r = c.run(
                    release_command(),
                    hide=True,
                    warn=True,
                    in_stream=False,
                    timeout=RELEASE_TIMEOUT,
                )
                if not r.ok:
                    log_info(f"{props['node']}: release: {r.stderr.strip()[-300:]}")
        except Exception as e:  # best effort: the VM is about to be deleted anyway
            log_info(f"{props['node']}: release skipped: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------- provider


class NodeConvergeProvider(ResourceProvider):
    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = runner

    def _runner(self) -> Runner:
        return self.runner if self.runner is not None else SshRunner()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in WATCHED if olds.get(k) != news.get(k)]
        # A new VM (its id changes, or is unknown while the old one is replaced) replaces the
        # step, delete first: the engine deletes it, so ``delete`` releases the volume on the
        # old VM, before the old VM is powered off and deleted.
        replaced = ["vm_id"] if "vm_id" in changed else []
        return DiffResult(
            changes=bool(changed), replaces=replaced, delete_before_replace=bool(replaced)
        )

    def _apply(self, props: dict[str, Any], new_vm: bool) -> dict[str, Any]:
        inputs = {k: v for k, v in props.items() if k not in RESULTS and k != "__provider"}
        return {**inputs, "deferred": None, **self._runner().converge(inputs, new_vm)}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['node']}-converge", outs=self._apply(props, True))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """A node that is down does not hold up the others: the steps run one after the other
        (the first start's order), so a failed step here would skip every later node's, the
        survivor's included. Its converge is deferred instead: the outputs keep the digest it
        last got (the next ``pulumi up`` converges it again) and the ClusterCheck at the end
        fails the update naming the node. Any other failure fails the step."""
        try:
            return UpdateResult(outs=self._apply(news, olds.get("vm_id") != news.get("vm_id")))
        except NodeUnreachable as e:
            why = f"{news.get('node')}: converge deferred to the next pulumi up: {e}"
            log_warn(why)
            kept = {k: v for k, v in news.items() if k != "__provider"}
            kept.update(
                {k: olds.get(k) for k in ("digest", "changed", "count", "host_key", "verified")}
            )
            return UpdateResult(outs={**kept, "deferred": why})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._runner().release(props)


# --------------------------------------------------------------------------- resource


@dataclass(frozen=True)
class NodeConvergeArgs:
    """One node's converge inputs."""

    vm_id: pulumi.Input[str]
    """The node VM's id: a replaced VM is converged again."""
    bundle: pulumi.Input[Bundle]
    """The node's rendered bundle (RepoCluster.bundles[name]); sent serialized, as a secret."""
    ip: str
    """Address Fabric connects to."""
    ssh_user: str
    """SSH user (root)."""
    key_file: str
    """Operator private key path on the machine running ``pulumi up``."""
    known_host_keys: pulumi.Input[list[str]]
    """The shared host public keys: the only keys trusted."""
    trust_first_contact: bool
    """Accept (and report) the key of a node never seen before (see converge/trust.py)."""
    vcenter: dict[str, Any] | None = None
    """Where the node's VM publishes its host key: ``server``, ``user``, ``unverified_ssl``,
    ``stack_id`` (the VMs' stack marker); None: not read (first contact only)."""
    vcenter_password: pulumi.Input[str] = ""
    """The vCenter password (kept as a secret)."""
    confirmed_host_key: str | None = None
    """The fingerprint of the node's host key confirmed out of band (nodes[].hostKey)."""
    record: str | None = None
    """The stack's record of seen host keys (trust.record_path); None: no record."""
    first_contact_secrets: bool = False
    """A lab stack: a node trusted on first contact may get the secret files."""
    config: dict[str, Any] | None = None
    """The stack's config map without secrets: a new VM's node is waited for until it
    serves (MASTER, or BACKUP); None: not waited for."""


class NodeConverge(Resource, module="repo-cluster", name="NodeConverge"):
    """Converges one node to its bundle on create and on every bundle change."""

    changed: pulumi.Output[list[str]]
    count: pulumi.Output[int]
    first_contact_fingerprint: pulumi.Output[str | None]
    host_key: pulumi.Output[str | None]
    """The fingerprint of the host key the last converge was shown."""
    verified: pulumi.Output[str | None]
    """How it was trusted: shared, published, recorded or first contact."""
    deferred: pulumi.Output[str | None]
    """Why this node's converge was put off (it was down); None when it ran."""

    def __init__(
        self, name: str, args: NodeConvergeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        bundle = pulumi.Output.from_input(args.bundle)
        props: dict[str, Any] = {
            "vm_id": args.vm_id,
            "node": pulumi.Output.unsecret(bundle.apply(lambda b: b.node.name)),
            "digest": pulumi.Output.unsecret(bundle.apply(lambda b: b.digest)),
            "bundle": pulumi.Output.secret(bundle.apply(bundle_to_json)),
            "ip": args.ip,
            "ssh_user": args.ssh_user,
            "key_file": args.key_file,
            "known_host_keys": args.known_host_keys,
            "trust_first_contact": args.trust_first_contact,
            "vcenter": args.vcenter,
            "vcenter_password": pulumi.Output.secret(args.vcenter_password),
            "confirmed_host_key": args.confirmed_host_key,
            "record": args.record,
            "first_contact_secrets": args.first_contact_secrets,
            "config": args.config,
            **dict.fromkeys(RESULTS),
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["bundle", "vcenter_password"])
        super().__init__(
            NodeConvergeProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
