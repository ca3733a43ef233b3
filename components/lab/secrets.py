"""The embedded lab's secrets while `pulumi up` cannot run here (no vSphere provider plugin).

On a machine where the stack is deployed, the shared host keys and the generated auth_pass live
in the Pulumi state only (components/stack_secrets.py). Where the pulumi-resource-vsphere plugin
cannot be obtained, `make lab` still converges the lab nodes, with secrets generated once per
lab by this module: `.lab/<stack>/secrets.json`, mode 0600, removed by `fab lab-down`. Refused
for any stack with an address outside 198.18.0.0/15: a real cluster's secrets are Pulumi's.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from pathlib import Path
from typing import Any

from components.bundle import Secrets, new_auth_pass
from components.bundle.hostkeys import HostKey, generate
from components.config import TEST_NET, Settings
from components.lab.plan import SECRETS_FILE, lab_dir


class LabSecretsError(RuntimeError):
    pass


def path(root: Path, stack: str) -> Path:
    return lab_dir(root, stack) / SECRETS_FILE


def _require_lab(s: Settings, stack: str) -> None:
    if not s.lab:
        raise LabSecretsError(
            f"stack {stack} is not a lab stack (repo-cluster:lab is not true): its secrets come "
            "from its Pulumi state only"
        )
    outside = s.outside_test_net()
    if outside:  # lab: true is refused with these already; never make secrets for them
        raise LabSecretsError(f"stack {stack}: {'; '.join(outside)} outside {TEST_NET}")


def _doc(s: Settings, stack: str, root: Path) -> dict[str, Any]:
    """The secrets file, generated on first use (0600, written whole or not at all)."""
    _require_lab(s, stack)
    file = path(root, stack)
    if not file.exists():
        if not file.parent.is_dir():
            raise LabSecretsError(f"no lab for stack {stack}: run `fab lab-up --stack {stack}`")
        doc = {
            "host_keys": [dataclasses.asdict(k) for k in generate(f"root@{s.dns_fqdn}")],
            "vrrp_auth_pass": new_auth_pass(),
            "dns_tsig_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        tmp = file.with_name(f".{file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        try:
            os.link(tmp, file)  # never replaces a file another process wrote meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return dict(json.loads(file.read_text(encoding="utf-8")))


def dns_tsig_secret(s: Settings, stack: str, root: Path) -> str:
    """The TSIG key of the lab's DNS server: the stack's own if it sets one, else the lab's."""
    return s.dns_tsig_secret.value or str(_doc(s, stack, root)["dns_tsig_secret"])


def ceph_key(s: Settings, stack: str, root: Path) -> str:
    """The key of client.<cephUser>: the stack's own if it sets one, else the lab Ceph's."""
    _require_lab(s, stack)
    if s.ceph_keyring.value:
        return s.ceph_keyring.value
    file = lab_dir(root, stack) / "ceph" / f"client.{s.ceph_user}.key"
    try:
        return file.read_text(encoding="utf-8").strip()
    except OSError:
        raise LabSecretsError(
            f"no Ceph key for client.{s.ceph_user} in the lab ({file} missing): "
            f"run `fab lab-up --stack {stack}`"
        ) from None


def load_or_create(s: Settings, stack: str, root: Path) -> Secrets:
    """The lab's secrets for ``stack``, generated on first use and kept for the lab's life;
    the Ceph key is the lab Ceph's (or the stack's own; a placeholder, named by
    ``Secrets.placeholders``, while the lab's Ceph is not up)."""
    doc = _doc(s, stack, root)
    keys = tuple(HostKey(**k) for k in doc["host_keys"])
    generated = None if s.vrrp_auth_pass.available else doc["vrrp_auth_pass"]
    try:
        key: str | None = ceph_key(s, stack, root)
    except LabSecretsError:
        key = None
    return Secrets.resolve(
        s,
        host_keys=keys,
        vrrp_auth_pass=generated,
        ceph_keyring=key,
    )
