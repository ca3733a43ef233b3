"""The checker every validation step reports through: problems named by config key, each key
reported once (a key already wrong in type is not judged again on its value)."""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any

import yaml

from components.config.keys import KEYS

_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class Check:
    def __init__(self, values: dict[str, Any], problems: list[str]) -> None:
        self.v = values
        self.problems = problems
        # keys already reported while loading (missing, wrong type) are not checked again
        self.reported = {p.split(": ", 1)[0] for p in problems}

    def bad(self, name: str, message: str) -> None:
        key = full(name)
        if key not in self.reported:
            self.problems.append(f"{key}: {message}")

    def ipv4(self, name: str, value: Any, label: str = "") -> ipaddress.IPv4Address | None:
        if not isinstance(value, str):
            self.bad(name, f"{label}{value!r} is not an IPv4 address (a.b.c.d, as a string)")
            return None
        try:
            return ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError):
            self.bad(name, f"{label}{value!r} is not an IPv4 address")
            return None

    def in_range(self, name: str, lo: int, hi: int) -> int:
        value = self.v[name]
        if isinstance(value, int) and not lo <= value <= hi:
            self.bad(name, f"{value} is out of range {lo}-{hi}")
        return value

    def hostname(self, name: str, value: Any, label: str = "") -> None:
        if not isinstance(value, str) or not _HOSTNAME.match(value):
            self.bad(
                name,
                f"{label}{value!r} is not a valid RFC 1123 host name (a-z, 0-9, -)",
            )

    def domain(self, name: str) -> None:
        value = self.v[name]
        parts = value.split(".") if isinstance(value, str) else []
        if not parts or len(value) > 253 or not all(_HOSTNAME.match(p) for p in parts):
            self.bad(name, f"{value!r} is not a valid RFC 1123 domain name")

    def yaml_string(self, name: str, value: Any, label: str = "") -> None:
        """A value the nodes' first-boot documents carry (cloud-init, YAML 1.1): YAML must
        read it, unquoted, as this very string (``no`` is a boolean there, ``1.5`` a number).
        The documents quote every value too; refusing them keeps the stack file safe as well."""
        kind = yaml_reads_as(value) if isinstance(value, str) else None
        if kind is not None:
            self.bad(
                name,
                f"{label}{value!r}: YAML would read it as {kind}, not as a string (the nodes' "
                "first-boot documents are YAML 1.1, and so may be the stack file): choose another",
            )

    def nonempty(self, *names: str) -> None:
        for name in names:
            if isinstance(self.v[name], str) and not self.v[name].strip():
                self.bad(name, "must not be empty")


def yaml_reads_as(value: str) -> str | None:
    """What YAML 1.1 (PyYAML, as cloud-init reads its documents) makes of ``value`` written
    as a plain scalar, when that is not this string; None when it is (or ``value`` is empty,
    or no plain scalar at all: other checks refuse those)."""
    try:
        parsed = yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return None
    if isinstance(parsed, str) and parsed == value:
        return None
    if isinstance(parsed, bool):
        return "a boolean"
    if parsed is None:
        return "null"
    if isinstance(parsed, int | float):
        return "a number"
    if isinstance(parsed, datetime.date):
        return "a date"
    return f"a {type(parsed).__name__}"


def full(name: str) -> str:
    for key in KEYS:
        if key.name == name:
            return key.full
    return name
