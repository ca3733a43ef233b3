"""Shared by the render tests: the stack variants they render and a quiet subprocess runner."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components import config as settings
from components.bundle import Bundle, Secrets

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("lab", "sim")
CEPH_REPOS = {
    "el7": "https://download.ceph.com/rpm-nautilus/el7/x86_64/",
    "el8": "https://download.ceph.com/rpm-reef/el8/x86_64/",
    "el9": "https://download.ceph.com/rpm-reef/el9/x86_64/",
}
AUTHORIZED = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPMVzB2D7bQS3uvvnvTcOb0/+gzrNfCGhOyIXrveXRz t",)


def stack_config(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return copy.deepcopy(doc["config"])


def variant(stack: str, os_family: str | None = None, **overrides: Any) -> settings.Settings:
    """The stack's settings, in another OS family and/or with ``repo-cluster:`` overrides."""
    config = stack_config(stack)
    if os_family is not None:
        config["repo-cluster:osFamily"] = os_family
        if os_family in CEPH_REPOS:
            config["repo-cluster:cephRepoUrl"] = CEPH_REPOS[os_family]
    for key, value in overrides.items():
        config[f"repo-cluster:{key}"] = value
    return settings.load(config)


VARIANTS = [(stack, fam) for stack in STACKS for fam in settings.OS_FAMILIES]
VARIANT_IDS = [f"{stack}-{fam}" for stack, fam in VARIANTS]


@dataclass(frozen=True)
class Rendered:
    stack: str
    os_family: str
    settings: settings.Settings
    secrets: Secrets
    bundles: dict[str, Bundle]


@dataclass(frozen=True)
class Volume:
    """An XFS file system on a loop device."""

    label: str
    device: str
    image: Path


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
