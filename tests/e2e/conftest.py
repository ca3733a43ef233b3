"""e2e tier: the real Pulumi CLI and language host, and a real vcsim on 127.0.0.1.

Tools come from scripts/bootstrap-tools (built from the Go module proxy on a fresh machine).
Each test runs the project from a copy in a temp dir with a file backend there
(PULUMI_BACKEND_URL, no `pulumi login`) and the stack chosen by PULUMI_STACK, so neither the
repo's stack files nor the user's Pulumi credentials or workspace files are written (the
passphrase provider adds an encryptionsalt to the copy's stack file). Pulumi's own plugin
cache (~/.pulumi/plugins) is used as it is: PULUMI_HOME is never set, as in scripts/lab.

The copy's stack has no DNS (dnsServer removed: a record would need the lab's TSIG secret and
BIND) and no converge (nothing connects to a node): what is tested here is the VM work.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from components.bundle.render import TEMPLATE_FOLDERS
from components.config import Settings, load_stack_file
from components.lab import deploy
from components.lab import vcsim as labvcsim
from tests.kit import write_operator_key

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("Pulumi.yaml", "Pulumi.sim.yaml", "__main__.py", "components", *TEMPLATE_FOLDERS)
STACK = "sim"


def _pinned(name: str) -> str:
    text = (ROOT / "scripts/tool-versions").read_text(encoding="utf-8")
    match = re.search(rf"^{name}=(\S+)$", text, re.MULTILINE)
    assert match, f"scripts/tool-versions has no {name}"
    return match.group(1)


VSPHERE_VERSION = _pinned("VSPHERE_PROVIDER_VERSION")


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts/bootstrap-tools"), "pulumi", "pulumi-language-python", "vcsim"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"bootstrap-tools failed:\n{out.stderr}"
    return Path(out.stdout.strip().splitlines()[-1])


def tools_env(tools_bin: Path) -> dict[str, str]:
    """The environment every Pulumi CLI call of this tier runs with (no state location)."""
    return deploy.cli_environment(tools_bin)


def vsphere_plugin_source(env: dict[str, str]) -> str | None:
    """Where the Pulumi CLI of ``env`` finds pulumi-resource-vsphere at the pinned version
    (its plugin cache, or PATH), or None (the checks of scripts/vsphere-plugin, nothing
    installed)."""
    out = subprocess.run(
        ["pulumi", "plugin", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        plugins = json.loads(out.stdout or "null") or []
    except json.JSONDecodeError:
        plugins = []
    if any(
        p.get("name") == "vsphere"
        and p.get("kind") == "resource"
        and p.get("version") == VSPHERE_VERSION
        for p in plugins
    ):
        return f"vsphere {VSPHERE_VERSION} from Pulumi's plugin cache"
    return shutil.which("pulumi-resource-vsphere", path=env["PATH"])


@pytest.fixture(scope="session")
def vsphere_plugin_found(tools_bin: Path) -> str | None:
    """Where the vSphere resource plugin comes from, or None when it is not installed."""
    return vsphere_plugin_source(tools_env(tools_bin))


@pytest.fixture(scope="session")
def vsphere_plugin(vsphere_plugin_found: str | None) -> str:
    """Skips the test unless the vSphere resource plugin is installed (see README)."""
    source = vsphere_plugin_found
    if source is None:
        v = VSPHERE_VERSION
        pytest.skip(
            f"pulumi-resource-vsphere {v} is not in Pulumi's plugin cache nor on PATH: install "
            f"it with `pulumi plugin install resource vsphere {v} --file "
            f"pulumi-resource-vsphere-v{v}-linux-amd64.tar.gz`, or set "
            "REPO_CLUSTER_VSPHERE_PLUGIN_TARBALL to that tarball and run scripts/vsphere-plugin "
            "(README, Troubleshooting)"
        )
    return source


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Vcsim:
    settings: Settings
    server: str


@contextmanager
def running_vcsim(tools_bin: Path, state: Path) -> Iterator[Vcsim]:
    """A fresh vcsim on a free 127.0.0.1 port holding the sim stack's template; stopped
    (by its recorded pid) on exit."""
    server = f"127.0.0.1:{_free_port()}"
    s = dataclasses.replace(load_stack_file(str(ROOT / "Pulumi.sim.yaml")), vsphere_server=server)
    try:
        labvcsim.start(s, str(tools_bin / "vcsim"), state)
        labvcsim.ensure_template(s)
        yield Vcsim(s, server)
    finally:
        labvcsim.stop(state)


@pytest.fixture(scope="session")
def new_vcsim(tools_bin: Path) -> Callable[[Path], AbstractContextManager[Vcsim]]:
    """``new_vcsim(state_dir)``: :func:`running_vcsim`, for fixtures of any scope."""
    return lambda state: running_vcsim(tools_bin, state)


@pytest.fixture
def vcsim(tools_bin: Path, tmp_path: Path) -> Iterator[Vcsim]:
    with running_vcsim(tools_bin, tmp_path / "vcsim") as vc:
        yield vc


@dataclasses.dataclass
class Project:
    dir: Path
    env: dict[str, str]

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert out.returncode == 0, f"pulumi {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out

    def config(self, key: str, value: str) -> None:
        self.pulumi("config", "set", "--path", key, value)

    def settings(self) -> Settings:
        """The settings the program reads: the copy's stack file (no secrets are set)."""
        return load_stack_file(self.dir / f"Pulumi.{STACK}.yaml")


def make_project(tools_bin: Path, base: Path) -> Project:
    """The project copied to ``base``/project, its state in ``base``/state, stack `sim`."""
    work = base / "project"
    work.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    (work / ".venv").symlink_to(ROOT / ".venv")
    (base / "state").mkdir()
    env = {
        **tools_env(tools_bin),
        "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
        "PULUMI_STACK": STACK,
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
    }
    p = Project(work, env)
    p.pulumi("stack", "init", STACK, "--no-select")
    # the operator key the nodes will admit (make lab's comes from fab lab-up)
    p.config("repo-cluster:sshKeyFile", str(write_operator_key(base, "operator@e2e")))
    p.pulumi("config", "rm", "repo-cluster:dnsServer")
    p.config("repo-cluster:converge", "false")
    return p


@pytest.fixture(scope="session")
def new_project(tools_bin: Path) -> Callable[[Path], Project]:
    """``new_project(base_dir)``: :func:`make_project`, for fixtures of any scope."""
    return lambda base: make_project(tools_bin, base)


@pytest.fixture
def project(tools_bin: Path, tmp_path: Path) -> Project:
    return make_project(tools_bin, tmp_path)
