"""The VRRP ``auth_pass``, generated once by a Pulumi dynamic resource when the stack sets none.

keepalived uses only the first 8 characters of ``auth_pass``, so the value is 8 characters from
[A-Za-z0-9] drawn with :mod:`secrets`. It is a secret output; ``diff`` never reports a change,
so it stays the same across ups until the resource is destroyed or replaced.
"""

from __future__ import annotations

import secrets

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from components.bundle import new_auth_pass


class AuthPassProvider(ResourceProvider):
    def create(self, props: dict[str, object]) -> CreateResult:
        return CreateResult(id_=secrets.token_hex(8), outs={"result": new_auth_pass()})

    def diff(self, _id: str, _olds: dict[str, object], _news: dict[str, object]) -> DiffResult:
        return DiffResult(changes=False)


class AuthPass(Resource, module="repo-cluster", name="AuthPass"):
    """A generated VRRP auth_pass: ``result`` is secret."""

    result: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["result"])
        super().__init__(
            AuthPassProvider(), name, {"result": None}, pulumi.ResourceOptions.merge(opts, secret)
        )
