"""Pulumi.yaml's config schema and components/keys.py must describe the same keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config.keys import KEYS, NAMESPACE, Key

pytestmark = pytest.mark.unit

PULUMI_TYPES = {str: "string", int: "integer", bool: "boolean", list: "array"}
# Item type of each array key; any list key not named here holds strings.
ITEM_TYPES = {"nodes": "object"}


def _project(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))


def _schema(root: Path) -> dict[str, dict[str, Any]]:
    """The project's declared keys by bare name (``repo-cluster:x`` and ``x`` are the same key)."""
    config = _project(root)["config"]
    return {name.removeprefix(f"{NAMESPACE}:"): decl for name, decl in config.items()}


def _declarable(key: Key) -> bool:
    """A key is declared unless it is optional without a default: Pulumi treats a declared key
    that has no default as required."""
    return key.namespace == NAMESPACE and key.default is not None


def test_project_runtime(root: Path) -> None:
    project = _project(root)
    assert project["name"] == NAMESPACE
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }
    assert project["description"].strip()


def test_schema_declares_exactly_the_declarable_keys(root: Path) -> None:
    declared = set(_schema(root))
    expected = {k.name for k in KEYS if _declarable(k)}
    assert declared - expected == set(), "declared in Pulumi.yaml but not a declarable key"
    assert expected - declared == set(), "keys.py keys missing from Pulumi.yaml"


def test_no_foreign_namespace_or_secret_in_schema(root: Path) -> None:
    raw = _project(root)["config"]
    assert all(":" not in n or n.startswith(f"{NAMESPACE}:") for n in raw)
    secrets = {k.name for k in KEYS if k.secret}
    assert secrets.isdisjoint(_schema(root)), "secrets must not be declared (no defaults)"


@pytest.mark.parametrize("key", [k for k in KEYS if _declarable(k)], ids=lambda k: k.name)
def test_declaration_matches_key(root: Path, key: Key) -> None:
    decl = _schema(root)[key.name]
    assert set(decl) <= {"type", "items", "default", "description"}
    assert decl["type"] == PULUMI_TYPES[key.type]
    if key.type is list:
        assert decl["items"] == {"type": ITEM_TYPES.get(key.name, "string")}
    else:
        assert "items" not in decl
    assert decl["description"] == key.description
    if key.required:
        assert "default" not in decl, "a required key has no default"
    else:
        assert "default" in decl
        default = decl["default"]
        # bool is an int in Python: compare types too, so `1` cannot stand in for `true`.
        assert type(default) is type(key.default)
        assert default == key.default
