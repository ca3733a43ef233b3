"""The lab's own secrets (make lab without the vSphere plugin): lab stacks only, 0600, stable."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from components.config import Secret
from components.lab import secrets as labsecrets
from tests.kit import stack_settings

pytestmark = pytest.mark.unit


def test_refused_for_a_stack_that_is_not_a_lab(tmp_path) -> None:
    (tmp_path / ".lab" / "lab").mkdir(parents=True)
    with pytest.raises(labsecrets.LabSecretsError, match=r"repo-cluster:lab.*Pulumi state only"):
        labsecrets.load_or_create(stack_settings("lab"), "lab", tmp_path)
    assert not labsecrets.path(tmp_path, "lab").exists()
    # in the lab's range, but not declared a lab: still no lab secrets
    (tmp_path / ".lab" / "sim").mkdir(parents=True)
    undeclared = dataclasses.replace(stack_settings("sim"), lab=False)
    with pytest.raises(labsecrets.LabSecretsError, match=r"repo-cluster:lab"):
        labsecrets.load_or_create(undeclared, "sim", tmp_path)
    assert not labsecrets.path(tmp_path, "sim").exists()


def test_needs_a_lab_that_is_up(tmp_path) -> None:
    with pytest.raises(labsecrets.LabSecretsError, match="fab lab-up --stack sim"):
        labsecrets.load_or_create(stack_settings("sim"), "sim", tmp_path)


def test_generated_once_private_and_stable(tmp_path) -> None:
    (tmp_path / ".lab" / "sim").mkdir(parents=True)
    s = stack_settings("sim")
    first = labsecrets.load_or_create(s, "sim", tmp_path)
    file = labsecrets.path(tmp_path, "sim")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    again = labsecrets.load_or_create(s, "sim", tmp_path)
    assert again == first
    assert sorted(k.type for k in first.host_keys) == ["ecdsa", "ed25519", "rsa"]
    assert len(first.vrrp_auth_pass) == 8
    assert first.placeholders == ("repo-cluster:cephKeyring",)


def test_configured_auth_pass_wins_over_the_generated_one(tmp_path) -> None:
    (tmp_path / ".lab" / "sim").mkdir(parents=True)
    s = dataclasses.replace(stack_settings("sim"), vrrp_auth_pass=Secret("cfgpass1"))
    assert labsecrets.load_or_create(s, "sim", tmp_path).vrrp_auth_pass == "cfgpass1"
