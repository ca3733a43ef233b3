"""Loading: a stack's config map in, :class:`Settings` out (or every problem at once).

The map is the ``config:`` block of ``Pulumi.<stack>.yaml`` or what the Pulumi runtime hands
the program, keyed ``namespace:key``. Types are checked here, against the key table; meaning
is checked in :mod:`components.config.validate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.config.keys import KEYS, NAMESPACE, Key
from components.config.model import PROJECT_ROOT, Secret, Settings
from components.config.validate import validate


def _coerce(key: Key, raw: Any) -> Any:
    """Values from the Pulumi runtime arrive as strings (JSON for structured ones)."""
    if isinstance(raw, str) and key.type in (int, bool, list, dict):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _type_name(t: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
    }.get(t, "a mapping")


def _secret(key: Key, raw: Any, problems: list[str]) -> Secret:
    """Plain strings (Pulumi runtime) are available; ``{"secure": ...}`` (the stack file, not
    decryptable here) is an unavailable secret."""
    if isinstance(raw, Mapping) and "secure" in raw:
        return Secret()
    if isinstance(raw, str):
        return Secret(raw)
    problems.append(f"{key.full}: must be a string")
    return Secret()


def load(config: Mapping[str, Any]) -> Settings:
    """Build Settings from a stack config map keyed ``namespace:key``."""
    problems: list[str] = []
    known = {k.full for k in KEYS}
    for name in config:
        if name.startswith(f"{NAMESPACE}:") and name not in known:
            problems.append(f"{name}: unknown config key")
    values: dict[str, Any] = {}
    for key in KEYS:
        raw = config.get(key.full)
        if raw is None:
            if key.required:
                problems.append(f"{key.full}: required, not set")
            values[key.name] = Secret() if key.secret else key.default
        elif key.secret:
            values[key.name] = _secret(key, raw, problems)
        else:
            value = _coerce(key, raw)
            if (key.type is int and isinstance(value, bool)) or not isinstance(value, key.type):
                problems.append(f"{key.full}: must be {_type_name(key.type)}, got {raw!r}")
                value = key.default
            values[key.name] = value
    return validate(values, problems)


def stack_file(stack: str, root: Path = PROJECT_ROOT) -> Path:
    """A stack's config file: ``Pulumi.<stack>.yaml`` beside ``Pulumi.yaml``."""
    return root / f"Pulumi.{stack}.yaml"


def load_stack_file(path: str | Path) -> Settings:
    """Settings from a ``Pulumi.<stack>.yaml`` file."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    return load(doc.get("config") or {})


def pulumi_config(*, secrets: bool = True) -> dict[str, Any]:
    """The running Pulumi program's config map (every key the model knows; without the
    secret ones when ``secrets`` is False)."""
    import pulumi

    config: dict[str, Any] = {}
    for key in KEYS:
        if key.secret and not secrets:
            continue
        ns, _, name = key.full.partition(":")
        value = pulumi.Config(ns).get(name)
        if value is not None:
            config[key.full] = value
    return config


def load_pulumi() -> Settings:
    """Settings from the running Pulumi program's config."""
    return load(pulumi_config())
