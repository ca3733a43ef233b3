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
from components.config.model import PROJECT_ROOT, ConfigError, Secret, Settings
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
        return Secret(encrypted=True)
    if isinstance(raw, str):
        return Secret(raw)
    problems.append(f"{key.full}: must be a string")
    return Secret()


def load(config: Mapping[str, Any]) -> Settings:
    """Build Settings from a stack config map keyed ``namespace:key``."""
    problems: list[str] = []
    known = {k.full for k in KEYS}
    for name in config:
        if not isinstance(name, str):
            problems.append(f"{name!r}: config keys are strings, namespace:key")
        elif name.startswith(f"{NAMESPACE}:") and name not in known:
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


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {list: "list", str: "string", int: "number", float: "number"}.get(type(value), "value")


def _yaml_problem(path: str | Path, exc: Exception) -> str:
    """One line: file, line, column and what is wrong (PyYAML's own words)."""
    import yaml

    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{path}: not valid YAML: {' '.join(str(exc).split())}"
    mark, what = exc.problem_mark, exc.problem or "not valid YAML"
    if "'\\t'" in what:
        what += " (YAML indents with spaces, never tabs)"
    if exc.context:
        ctx = exc.context_mark
        where = f" at line {ctx.line + 1}, column {ctx.column + 1}" if ctx else ""
        what += f" ({exc.context}{where})"
    return f"{path}: line {mark.line + 1}, column {mark.column + 1}: {what}"


def load_stack_file(path: str | Path) -> Settings:
    """Settings from a ``Pulumi.<stack>.yaml`` file; a ConfigError naming the file when it is
    not UTF-8, not YAML, or not a mapping with a ``config:`` mapping."""
    import yaml

    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.start})"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(path, e)]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            [f"{path}: the top level must be a mapping (config: ...), not a {_kind(doc)}"]
        )
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise ConfigError(
            [f"{path}: config: must be a mapping of namespace:key to value, not a {_kind(config)}"]
        )
    return load(config or {})


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
