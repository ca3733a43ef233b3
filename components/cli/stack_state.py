"""Settings and secrets of a deployed stack, for the operator CLI (``fab converge``/``status``).

The shared host keys and a generated VRRP auth_pass exist only in the stack's state (dynamic
resources of RepoCluster, components/hostkeys_resource.py and components/authpass_resource.py),
and secret config values only decrypted by the Pulumi CLI. So both come from the CLI:

- ``pulumi config --show-secrets --json``: the stack config, secrets in clear -> Settings;
- ``pulumi stack export --show-secrets``: the state -> host keys and the generated auth_pass.

Nothing read here is printed or logged; errors name keys and resources, never values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components import config as settings
from components.bundle.hostkeys import HostKey
from components.lab import deploy

HOST_KEYS_TYPE = "pulumi-python:dynamic/repo-cluster:HostKeys"
AUTH_PASS_TYPE = "pulumi-python:dynamic/repo-cluster:AuthPass"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"


class StackStateError(RuntimeError):
    """The stack cannot give what the CLI needs (no state, no CLI, undecryptable)."""


def pulumi_cli() -> str:
    """The pulumi binary: PATH, else the bootstrap cache (scripts/bootstrap-tools)."""
    found = shutil.which("pulumi")
    if found:
        return found
    cache = Path(os.environ.get("REPO_CLUSTER_CACHE") or Path.home() / ".cache/repo-cluster")
    candidate = cache / "tools" / "bin" / "pulumi"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise StackStateError(
        f"pulumi CLI not found on PATH nor in {candidate.parent}: run scripts/bootstrap-tools"
    )


def _pulumi_json(args: list[str], cwd: Path, extra_env: Mapping[str, str] | None = None) -> Any:
    cli = pulumi_cli()
    env = {**deploy.cli_environment(Path(cli).parent), **(extra_env or {})}
    proc = subprocess.run(
        [cli, *args, "--non-interactive"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        # stderr of these commands holds no secret (they print values on stdout only)
        raise StackStateError(f"`pulumi {' '.join(args[:3])}` failed: {proc.stderr.strip()[-500:]}")
    try:
        return json.loads(proc.stdout or "null")
    except json.JSONDecodeError as e:
        raise StackStateError(f"`pulumi {' '.join(args[:3])}` printed no JSON: {e}") from None


# --------------------------------------------------------------------------- pure parsers


def _reveal(value: Any, what: str) -> Any:
    """A state value, secrets unwrapped (``--show-secrets`` gives them as JSON plaintext)."""
    if isinstance(value, Mapping) and value.get(_SECRET_SIG) is not None:
        if "plaintext" in value:
            return json.loads(value["plaintext"])
        raise StackStateError(f"{what} is encrypted in the export (needs --show-secrets)")
    return value


def _resources(export: Mapping[str, Any], type_: str) -> list[Mapping[str, Any]]:
    deployment = export.get("deployment") or {}
    return [r for r in deployment.get("resources") or [] if r.get("type") == type_]


def secrets_from_export(
    stack: str, export: Mapping[str, Any]
) -> tuple[tuple[HostKey, ...], str | None]:
    """(shared host keys, generated auth_pass or None when the stack sets its own)."""
    keys = _resources(export, HOST_KEYS_TYPE)
    if not keys:
        raise StackStateError(
            f"stack {stack} has no deployed state: run make lab / pulumi up first"
        )
    if len(keys) > 1:
        raise StackStateError(f"stack {stack} holds {len(keys)} HostKeys resources, expected 1")
    outs = keys[0].get("outputs") or {}
    types = _reveal(outs.get("types"), "HostKeys.types")
    private = _reveal(outs.get("private_keys"), "HostKeys.private_keys")
    public = _reveal(outs.get("public_keys"), "HostKeys.public_keys")
    if not (types and private and public) or not len(types) == len(private) == len(public):
        raise StackStateError(f"stack {stack}: HostKeys outputs are incomplete")
    host_keys = tuple(
        HostKey(t, priv, pub) for t, priv, pub in zip(types, private, public, strict=True)
    )
    auth = _resources(export, AUTH_PASS_TYPE)
    auth_pass = _reveal((auth[0].get("outputs") or {}).get("result"), "AuthPass") if auth else None
    return host_keys, auth_pass


def config_from_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``pulumi config --json`` -> the config map settings.load takes."""
    config: dict[str, Any] = {}
    for key, item in doc.items():
        if not isinstance(item, Mapping):
            continue
        if "objectValue" in item:
            config[key] = item["objectValue"]
        elif "value" in item:
            config[key] = item["value"]
    return config


# --------------------------------------------------------------------------- CLI


def load(
    stack: str, root: Path, env: Mapping[str, str] | None = None
) -> tuple[settings.Settings, tuple[HostKey, ...], str | None]:
    """Settings (secrets decrypted), host keys and generated auth_pass of ``stack``; the
    pulumi CLI runs in ``root`` (the project, or the lab's copy of it) with ``env`` added."""
    try:
        export = _pulumi_json(["stack", "export", "--show-secrets", "--stack", stack], root, env)
    except StackStateError as e:
        if "no stack named" in str(e):
            raise StackStateError(
                f"stack {stack} has no deployed state: run make lab / pulumi up first"
            ) from None
        if "PULUMI_ACCESS_TOKEN" in str(e) or "not logged in" in str(e):
            raise StackStateError(
                f"stack {stack} has no deployed state here: no Pulumi backend is logged in "
                "(`pulumi login <url>` or PULUMI_BACKEND_URL); run make lab / pulumi up first"
            ) from None
        raise
    host_keys, auth_pass = secrets_from_export(stack, export or {})
    config = config_from_json(
        _pulumi_json(["config", "--show-secrets", "--json", "--stack", stack], root, env)
    )
    return settings.load(config), host_keys, auth_pass
