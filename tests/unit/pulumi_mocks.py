"""Pulumi mocks standing in for the engine and a vCenter, and a runner for the real program.

The ``run_stack(config)`` fixture executes ``__main__.py`` (exactly what ``pulumi up`` runs) under
``pulumi.runtime.set_mocks`` with a config map built the way the engine builds it: the stack
file's values plus Pulumi.yaml's defaults, every value a string (JSON for lists and objects),
secrets listed in ``secret_keys``.

What the mocks do:
- vSphere look-ups answer like a vCenter holding exactly the configured datacenter, cluster,
  datastore, network and template (a template with a guest id, pvscsi, one 16 GB thin disk, one
  vmxnet3 NIC, bios); an unknown name fails like the provider does ("not found").
- Dynamic resources (host keys, auth_pass) are run for real: the mock unpickles the provider the
  SDK serialized into the ``__provider`` input and calls its ``create``, so the keys are real
  keys. Given the previous run's state it calls ``diff`` first and keeps the old outputs when
  diff reports no change, as the engine does.
- Like the engine, outputs named in ``additional_secret_outputs`` come back secret, and secret
  inputs stay secret in the outputs.
- Every registration and invoke is recorded, secret markers included, for the tests to inspect.
"""

from __future__ import annotations

import atexit
import base64
import json
import runpy
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import dill
import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.sync_await import _sync_await

from tests.kit import write_operator_key

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "repo-cluster"


def _operator_key() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="repo-cluster-unit-"))
    atexit.register(shutil.rmtree, folder, True)
    return write_operator_key(folder, "operator@unit-tests")


OPERATOR_KEY = _operator_key()

VM = "vsphere:index/virtualMachine:VirtualMachine"
TSIG_SECRET = "c2VjcmV0LXRzaWcta2V5LWZvci10aGUtbW9jay10ZXN0cw=="  # base64, for the mocks only
PROVIDER = "pulumi:providers:vsphere"
DYNAMIC = "pulumi-python:dynamic/repo-cluster"


@dataclass
class Registration:
    typ: str
    name: str
    inputs: dict[str, Any]  # as the engine received them: secrets still wrapped
    provider: str = ""  # "<urn>::<id>" of the provider instance, "" for components
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    resource_id: str = ""  # what an import (or a read) names: the existing resource's id


class VsphereMocks(pulumi.runtime.Mocks):
    """The engine and a vCenter; the ids it hands out are class attributes for the tests."""

    DATACENTER_ID = "datacenter-2"
    CLUSTER_ID = "domain-c7"
    RESOURCE_POOL_ID = "resgroup-8"
    HOST_POOL_ID = "resgroup-23"  # a standalone host's pool (resourcePool)
    DATASTORE_ID = "datastore-11"
    NETWORK_ID = "network-13"
    TEMPLATE_UUID = "4216a0c4-6b2a-9b5e-0c3f-2f7d1e8a9b10"
    TEMPLATE: ClassVar[dict[str, Any]] = {
        "guestId": "centos7_64Guest",
        "scsiType": "pvscsi",
        "firmware": "bios",
        "networkInterfaceTypes": ["vmxnet3"],
    }

    def __init__(
        self,
        inventory: dict[str, str],
        template_disk_gb: int = 16,
        state: dict[str, Registration] | None = None,
    ) -> None:
        self.inventory = inventory
        self.template_disk_gb = template_disk_gb
        self.state = state or {}
        self.registrations: list[Registration] = []
        self.calls: list[MockCallArgs] = []
        self.secret_outputs: dict[str, list[str]] = {}
        self.delete_before_replace: dict[str, bool] = {}
        self.dependencies: dict[str, list[str]] = {}  # resource name -> names it depends on

    # ------------------------------------------------------------------ vSphere look-ups
    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(args)
        a, inv = args.args, self.inventory
        fn = args.token.rsplit(":", 1)[-1]
        if fn == "getDatacenter":
            self._expect(a["name"] == inv["datacenter"], "datacenter", a["name"])
            return {"id": self.DATACENTER_ID, "name": a["name"]}, []
        self._expect(a.get("datacenterId") == self.DATACENTER_ID, "datacenter id", a)
        if fn == "getComputeCluster":
            self._expect(a["name"] == inv["cluster"], "cluster", a["name"])
            pool = self.RESOURCE_POOL_ID
            return {"id": self.CLUSTER_ID, "name": a["name"], "resourcePoolId": pool}, []
        if fn == "getResourcePool":
            self._expect(a["name"] == inv.get("resourcePool"), "resource pool", a["name"])
            return {"id": self.HOST_POOL_ID, "name": a["name"]}, []
        if fn == "getDatastore":
            self._expect(a["name"] == inv["datastore"], "datastore", a["name"])
            return {"id": self.DATASTORE_ID, "name": a["name"]}, []
        if fn == "getNetwork":
            self._expect(a["name"] == inv["network"], "network", a["name"])
            return {"id": self.NETWORK_ID, "name": a["name"], "type": "Network"}, []
        if fn == "getVirtualMachine":
            self._expect(a["name"] == inv["template"], "virtual machine", a["name"])
            disk = {
                "label": "Hard disk 1",
                "size": self.template_disk_gb,
                "thinProvisioned": True,
                "eagerlyScrub": False,
                "unitNumber": 0,
            }
            return {
                **self.TEMPLATE,
                "id": self.TEMPLATE_UUID,
                "uuid": self.TEMPLATE_UUID,
                "name": a["name"],
                "disks": [disk],
            }, []
        raise AssertionError(f"unexpected invoke {args.token}")

    @staticmethod
    def _expect(ok: bool, what: str, value: Any) -> None:
        if not ok:
            raise Exception(f"error: {what} {value!r} not found")

    # ------------------------------------------------------------------ resources
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        reg = Registration(args.typ, args.name, args.inputs, args.provider or "")
        reg.resource_id = args.resource_id or ""
        self.registrations.append(reg)
        # NodeConverge's create would SSH to the stack's node IPs, DnsRecord's would update the
        # stack's DNS server: never run them under mocks
        if args.typ.startswith(DYNAMIC) and not args.typ.endswith(
            (":NodeConverge", ":DnsRecord", ":ClusterCheck")
        ):
            id_, outs = self._dynamic(args)
        elif args.typ == VM:
            id_ = str(uuid.uuid5(uuid.NAMESPACE_DNS, args.inputs["name"]))
            outs = {**args.inputs, "uuid": id_, "moid": f"vm-{len(self.registrations)}"}
        else:
            id_, outs = f"{args.name}-id", dict(args.inputs)
        for name in self.secret_outputs.get(args.name, []):
            if name in outs:
                outs[name] = rpc.wrap_rpc_secret(outs[name])
        reg.id, reg.outputs = id_, outs
        return id_, outs

    def _dynamic(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        serialized = rpc.unwrap_rpc_secret(args.inputs["__provider"])
        provider = dill.loads(base64.b64decode(serialized))
        news = {k: rpc.unwrap_rpc_secret(v) for k, v in args.inputs.items()}
        old = self.state.get(args.name)
        if old is not None:
            olds = {k: rpc.unwrap_rpc_secret(v) for k, v in old.outputs.items()}
            if not provider.diff(old.id, olds, news).changes:
                return old.id, {**news, **olds}
        result = provider.create({k: v for k, v in news.items() if k != "__provider"})
        return result.id, {**news, **(result.outs or {})}


class RecordingMonitor(MockMonitor):
    """Tells the mocks which outputs a registration asked to keep secret."""

    def RegisterResource(self, request: Any) -> Any:
        assert isinstance(self.mocks, VsphereMocks)
        self.mocks.secret_outputs[request.name] = list(request.additionalSecretOutputs)
        self.mocks.delete_before_replace[request.name] = bool(request.deleteBeforeReplace)
        self.mocks.dependencies[request.name] = sorted(
            d.rsplit("::", 1)[-1] for d in request.dependencies
        )
        return super().RegisterResource(request)


@dataclass
class Run:
    mocks: VsphereMocks
    namespace: dict[str, Any]  # __main__'s globals (``settings``, ``cluster``)
    exports: dict[str, Any]  # stack outputs, resolved
    exports_secret: dict[str, bool]
    error: BaseException | None

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.mocks.registrations if r.typ == typ]

    @property
    def vms(self) -> dict[str, Registration]:
        return {r.inputs["name"]: r for r in self.of_type(VM)}


def _resolve(value: Any) -> tuple[Any, bool]:
    """An Output's (or any input's) value and whether it is secret."""
    out = pulumi.Output.from_input(value)
    return _sync_await(out.future()), bool(_sync_await(out.is_secret()))


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _stack_config(stack: str, **overrides: Any) -> dict[str, Any]:
    """The config map the engine hands the program for ``stack``: the stack file over
    Pulumi.yaml's defaults, then ``overrides`` (``None`` removes a key)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    config: dict[str, Any] = {
        f"{PROJECT}:{name}": decl["default"]
        for name, decl in project["config"].items()
        if "default" in decl
    }
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    config.update(doc["config"])
    # preflight asks a real vCenter (pyvmomi); under mocks there is none to ask
    config[f"{PROJECT}:preflight"] = False
    config[f"{PROJECT}:sshKeyFile"] = str(OPERATOR_KEY)
    # both stacks update DNS: the engine would hand the program the stack's TSIG key
    config[f"{PROJECT}:dnsTsigSecret"] = TSIG_SECRET
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def _run_stack(
    config: dict[str, Any],
    *,
    stack: str = "lab",
    secret_keys: tuple[str, ...] = (),
    template_disk_gb: int = 16,
    state: dict[str, Registration] | None = None,
) -> Run:
    """Run __main__.py under mocks; ``state`` is a previous run's registrations by name.

    The mocked vCenter holds the objects the stack file names, whatever ``config`` says."""
    named = _stack_config(stack)
    inventory = {
        k: str(named[f"{PROJECT}:{k}"])
        for k in ("datacenter", "cluster", "datastore", "network", "template", "resourcePool")
        if f"{PROJECT}:{k}" in named
    }
    mocks = VsphereMocks(inventory, template_disk_gb, state)
    runtime_settings.ROOT.set(None)  # a fresh Stack resource for this run
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=False, monitor=RecordingMonitor(mocks)
    )
    secrets = [*secret_keys, f"{PROJECT}:dnsTsigSecret"]
    pulumi.runtime.set_all_config({k: _config_value(v) for k, v in config.items()}, secrets)
    namespace: dict[str, Any] = {}
    error: BaseException | None = None

    @pulumi.runtime.test
    def program() -> None:
        namespace.update(runpy.run_path(str(ROOT / "__main__.py")))

    try:
        program()
    except Exception as exc:  # the program's failure is what some tests look at
        error = exc
    stack_resource = runtime_settings.get_root_resource()
    raw = getattr(stack_resource, "outputs", {}) if error is None else {}
    exports, secret = {}, {}
    for name, value in raw.items():
        exports[name], secret[name] = _resolve(value)
    return Run(mocks, namespace, exports, secret, error)
