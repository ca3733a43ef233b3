"""OneTimeHostKey: a node's one-time SSH host key, how the first converge knows a new VM.

Nothing secret goes into a VM's guestinfo (components/bundle/cloudinit.py) but this key: the
VM is born with it as its only host key (cloud-init ``ssh_keys``), and the first converge
connects trusting exactly its public half (besides the shared keys), no blind first contact.
That converge installs the shared host keys and the secret files, restarts sshd and
reconnects trusting only the shared keys; from then on the node no longer serves the one-time
key and no converge trusts it (components/converge/trust.py: the stack's record shows the
node converged), so whoever reads it later from the extraConfig, the .vmx or a backup holds a
worthless key. Its window is the time between the VM's creation and its first converge.

One ed25519 key per node, generated on create and kept in the state (the private half a
secret output); ``diff`` never reports a change. A replaced VM boots with the same key and the
converge trusts it again for that new VM (components/node_converge.py); replace this resource
(``pulumi up --replace <urn>``) for a fresh one.
"""

from __future__ import annotations

import secrets

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from components.bundle import hostkeys

PRIVATE = "private_key"


class OneTimeHostKeyProvider(ResourceProvider):
    """Creates one ed25519 key with :func:`components.bundle.hostkeys.one_time`."""

    def create(self, props: dict[str, object]) -> CreateResult:
        key = hostkeys.one_time(str(props.get("comment") or ""))
        return CreateResult(
            id_=secrets.token_hex(8),
            outs={
                "node": props.get("node"),
                "comment": props.get("comment"),
                "type": key.type,
                "public_key": key.public,
                PRIVATE: key.private,
                "fingerprint": key.fingerprint,
            },
        )

    def diff(self, _id: str, _olds: dict[str, object], _news: dict[str, object]) -> DiffResult:
        return DiffResult(changes=False)


class OneTimeHostKey(Resource, module="repo-cluster", name="OneTimeHostKey"):
    """The one-time SSH host key of one node (``private_key`` is secret)."""

    type: pulumi.Output[str]
    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]
    """Secret: the OpenSSH private key."""
    fingerprint: pulumi.Output[str]

    def __init__(
        self, name: str, node: str, comment: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "node": node,
            "comment": comment,
            "type": None,
            "public_key": None,
            PRIVATE: None,
            "fingerprint": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=[PRIVATE])
        super().__init__(
            OneTimeHostKeyProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret)
        )

    @property
    def key(self) -> pulumi.Output[hostkeys.HostKey]:
        """The key as a :class:`~components.bundle.hostkeys.HostKey` (secret)."""
        return pulumi.Output.secret(
            pulumi.Output.all(self.type, self.private_key, self.public_key).apply(
                lambda a: hostkeys.HostKey(a[0], a[1], a[2])
            )
        )
