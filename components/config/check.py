"""The checker every validation step reports through: problems named by config key, each key
reported once (a key already wrong in type is not judged again on its value)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

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

    def nonempty(self, *names: str) -> None:
        for name in names:
            if isinstance(self.v[name], str) and not self.v[name].strip():
                self.bad(name, "must not be empty")


def full(name: str) -> str:
    for key in KEYS:
        if key.name == name:
            return key.full
    return name
