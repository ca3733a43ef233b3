"""Which host key a converge trusts for a node, and the per-stack record of what was seen.

A converge connection is verified one of these ways (:class:`Verified`):

- ``shared``: the node presents one of the stack's shared host keys (a converged node);
- ``published``: it presents the host key its VM publishes in its guestinfo, read over the
  vSphere API for this very converge (a VM not converged yet made it at first boot and only it
  holds the private half; a converged node publishes the shared key:
  components/vcenter/published.py);
- ``confirmed``: it presents the key whose fingerprint the stack gives for the node
  (``nodes[].hostKey``, confirmed out of band: an adopted server, a VM that publishes none);
- ``recorded``: with ``trust_first_contact``, the key accepted at this node's first contact
  and recorded then (a converge that stopped before installing the shared keys);
- ``first contact``: with ``trust_first_contact``, a node this record has never seen.

Anything else is refused, and a node that *was* seen and now presents another key is refused
as a changed key (the man-in-the-middle sign), whatever the flag says.

The shared, published and confirmed keys are proven (the node holds a private key this
program made, the one its VM announced through vCenter, or the one its operator checked); a
first-contact or recorded key is not: :func:`proven` tells the converge whether it may send
the secret files (see :mod:`components.converge.node`).

The record (:class:`SeenNodes`) keeps the key each node was last verified with; it decides
only for first contact (an operator's explicit choice) and to refuse a changed key: one
JSON file per stack on the operator's machine, node name -> ``{"fingerprint", "via"}``:
``<project>/.lab/<stack>/first-contact.json`` for a lab stack (``lab: true``; removed with the
lab), else ``$XDG_STATE_HOME/repo-cluster/<stack>/first-contact.json`` (``~/.local/state``).
No secret is in it. Written whole (temp file + rename), under a lock shared by the converge
threads. What ``pulumi up`` converged, and by which key, is in the stack's state (the
NodeConverge outputs ``host_key`` and ``verified``), whichever machine ran it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from components.config import Settings

RECORD_FILE = "first-contact.json"
_LOCK = threading.Lock()


class Verified(StrEnum):
    SHARED = "shared"
    PUBLISHED = "published"
    CONFIRMED = "confirmed"
    RECORDED = "recorded"
    FIRST_CONTACT = "first contact"


def proven(how: Verified | None) -> bool:
    """The node holds a shared key, the one its VM published or the one the stack confirms
    (see the module doc)."""
    return how in (Verified.SHARED, Verified.PUBLISHED, Verified.CONFIRMED)


def secrets_refusal(how: Verified | None, fingerprint: str, first_contact_secrets: bool) -> str:
    """Why a host trusted ``how`` must not get the secret files ("" when it may): a proven
    host may; one trusted on first contact (or recorded then) only on a lab stack."""
    if proven(how):
        return ""
    if first_contact_secrets and how in (Verified.FIRST_CONTACT, Verified.RECORDED):
        return ""
    return (
        f"withheld: host key {fingerprint} is {how.value if how else 'not verified'}, not "
        "proven; secrets go only to a node presenting the shared host key, the one its VM "
        "published or the one its nodes[].hostKey confirms "
        "(on a lab stack, also to one trusted on first contact)"
    )


def record_path(s: Settings, stack: str, root: Path) -> Path:
    """Where ``stack``'s record lives (see the module doc)."""
    if s.lab:
        return root / ".lab" / stack / RECORD_FILE
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "repo-cluster" / stack / RECORD_FILE


@dataclass(frozen=True)
class Seen:
    fingerprint: str
    via: str  # a Verified value


class SeenNodes:
    """The per-stack record of the key each node was last verified with."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{self.path}: unreadable first-contact record ({e})") from None
        return doc if isinstance(doc, dict) else {}

    def get(self, node: str) -> Seen | None:
        with _LOCK:
            entry = self._read().get(node)
        if not isinstance(entry, dict) or "fingerprint" not in entry:
            return None
        return Seen(str(entry["fingerprint"]), str(entry.get("via", "")))

    def _write(self, doc: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def remember(self, node: str, fingerprint: str, via: Verified) -> None:
        with _LOCK:
            doc = self._read()
            entry = {"fingerprint": fingerprint, "via": via.value}
            if doc.get(node) != entry:
                doc[node] = entry
                self._write(doc)

    def forget(self, node: str) -> None:
        """A new machine behind the node's name (a replaced VM): nothing was seen of it."""
        with _LOCK:
            doc = self._read()
            if node in doc:
                del doc[node]
                self._write(doc)


class Refused(Exception):
    """The presented key is not trusted; the message names node and fingerprints."""


def decide(
    node: str,
    presented: str,
    *,
    shared: set[str],
    published: str | None,
    seen: Seen | None,
    trust_first_contact: bool,
    confirmed: str | None = None,
) -> Verified:
    """How a key with fingerprint ``presented`` is trusted for ``node``, or :class:`Refused`.

    ``shared``: fingerprints of the shared keys; ``published``: the fingerprint of the key the
    node's VM publishes now (None: none read); ``confirmed``: the fingerprint the stack gives
    for the node (nodes[].hostKey); ``seen``: what the record holds for the node."""
    if presented in shared:
        return Verified.SHARED
    if published is not None and presented == published:
        return Verified.PUBLISHED
    if confirmed is not None and presented == confirmed:
        return Verified.CONFIRMED
    if seen is not None and presented != seen.fingerprint:
        raise Refused(
            f"presented host key {presented}, but it was seen with {seen.fingerprint} "
            f"({seen.via}): refused, a changed host key (man in the middle?)"
        )
    if seen is not None and trust_first_contact and seen.via != Verified.SHARED.value:
        return Verified.RECORDED
    if seen is None and trust_first_contact:
        return Verified.FIRST_CONTACT
    expected = ", ".join(sorted(shared | {k for k in (published, confirmed) if k}))
    raise Refused(
        f"presented unknown host key {presented}, expected one of {expected}: refused"
        + ("" if trust_first_contact else " (a node without it needs --trust-first-contact)")
    )
