"""What ``pulumi up`` refuses beyond a valid config (``deploy_problems``), the lab test-net
test behind it, and stack files that are not YAML mappings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config as settings
from components.config import Secret
from tests.unit.pulumi_mocks import TSIG_SECRET
from tests.unit.test_settings import lab_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NS = "repo-cluster"
KEY = "AQBvaBFZAAAAABAAcUVJcmyBJ2uZ0lA7cHl2AQ=="
VM = "vsphere:index/virtualMachine:VirtualMachine"


def stack(name: str) -> settings.Settings:
    s = settings.load_stack_file(ROOT / f"Pulumi.{name}.yaml")
    return dataclasses.replace(s, dns_tsig_secret=Secret(TSIG_SECRET))


def keys_of(problems: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in problems]


# --------------------------------------------------------------------------- cephKeyring


def test_a_lab_stack_is_one_that_says_so() -> None:
    """Addresses in 198.18.0.0/15 do not make a lab: a real network may use that range too."""
    sim = stack("sim")
    assert sim.lab and not stack("lab").lab
    assert sim.outside_test_net() == []
    undeclared = dataclasses.replace(sim, lab=False)
    assert keys_of(settings.deploy_problems(undeclared)) == [f"{NS}:cephKeyring"]


def test_a_lab_stack_must_stay_in_198_18_0_0_15() -> None:
    """Every address outside the range is named, under the key that declared the lab."""
    doc = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text())["config"]
    doc[f"{NS}:nodes"][1]["ip"] = "10.2.50.162"
    doc[f"{NS}:vip"] = "198.18.50.160/14"  # its subnet reaches outside
    with pytest.raises(settings.ConfigError) as err:
        settings.load(doc)
    lab = [p for p in err.value.problems if p.startswith(f"{NS}:lab: ")]
    assert len(lab) == 1, err.value.problems
    assert "node repo2 ip 10.2.50.162" in lab[0] and "vip 198.18.50.160/14" in lab[0]
    doc[f"{NS}:lab"] = False  # not a lab: the addresses are the operator's business
    problems = []
    try:
        settings.load(doc)
    except settings.ConfigError as e:
        problems = e.problems
    assert not [p for p in problems if p.startswith(f"{NS}:lab")], problems


def test_a_real_stack_needs_its_ceph_keyring() -> None:
    problems = settings.deploy_problems(stack("lab"))
    assert keys_of(problems) == [f"{NS}:cephKeyring"]
    assert "required" in problems[0] and "placeholder" in problems[0]
    assert "pulumi config set --secret repo-cluster:cephKeyring" in problems[0]
    keyed = dataclasses.replace(stack("lab"), ceph_keyring=Secret(KEY))
    assert settings.deploy_problems(keyed) == []


def test_the_lab_stack_may_deploy_the_placeholder_keyring() -> None:
    """The embedded lab has no Ceph: its nodes never use the keyring."""
    assert settings.deploy_problems(stack("sim")) == []


def test_deploy_problems_all_at_once() -> None:
    s = dataclasses.replace(stack("lab"), dns_tsig_secret=Secret())
    assert sorted(keys_of(settings.deploy_problems(s))) == [
        f"{NS}:cephKeyring",
        f"{NS}:dnsTsigSecret",
    ]


def test_the_program_refuses_a_real_stack_without_keyring(
    run_stack: Callable[..., Any], stack_config: Callable[..., dict[str, Any]]
) -> None:
    run = run_stack(stack_config("lab", **{"vsphere:password": "pw"}))
    assert run.error is not None and f"{NS}:cephKeyring: required" in str(run.error)
    assert run.of_type(VM) == []


# --------------------------------------------------------------------------- sshUser


def test_a_non_root_ssh_user_is_refused() -> None:
    """The converge runs every command as the SSH user, without sudo: only root works."""
    config = {**lab_config(), f"{NS}:sshUser": "veeamops"}
    with pytest.raises(settings.ConfigError) as err:
        settings.load(config)
    (problem,) = err.value.problems
    assert problem.startswith(f"{NS}:sshUser: 'veeamops' is not root")
    assert "sudo" in problem


# --------------------------------------------------------------------------- stack files


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("config:\n  repo-cluster:cpus: [1, 2\n", "line 3, column 1", "expected ',' or ']'"),
        ("config:\n\trepo-cluster:cpus: 2\n", "line 2, column 1", "tab"),
        ("config:\n  a: 1\n b: 2\n", "line 3, column 2", "expected <block end>"),
        ("config: {a: 1}\nconfig: [\n", "line 3, column 1", "expected the node content"),
    ],
)
def test_a_yaml_error_is_one_problem_naming_file_line_column(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    with pytest.raises(settings.ConfigError) as exc:
        settings.load_stack_file(path)
    (problem,) = exc.value.problems
    assert problem.startswith(f"{path}: {where}: "), problem
    assert what in problem, problem
    assert "Traceback" not in str(exc.value) and "\n" not in problem


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- a\n- b\n", "the top level must be a mapping (config: ...), not a list"),
        ("just text\n", "the top level must be a mapping (config: ...), not a string"),
        ("config: [1, 2]\n", "config: must be a mapping of namespace:key to value, not a list"),
        ("config: text\n", "config: must be a mapping of namespace:key to value, not a string"),
    ],
)
def test_a_stack_file_that_is_not_a_mapping(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    with pytest.raises(settings.ConfigError) as exc:
        settings.load_stack_file(path)
    assert exc.value.problems == [f"{path}: {words}"]


def test_a_stack_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_bytes(b"config:\n  repo-cluster:domain: \xff\n")
    with pytest.raises(settings.ConfigError) as exc:
        settings.load_stack_file(path)
    (problem,) = exc.value.problems
    assert problem.startswith(f"{path}: ") and "UTF-8" in problem
