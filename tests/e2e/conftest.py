"""e2e tier: the real Pulumi CLI and language host, and a real vcsim on 127.0.0.1.

Tools come from scripts/bootstrap-tools (built from the Go module proxy on a fresh machine).
Each test runs the project from a copy in a temp dir with a file backend there, so the
repo's stack files are never rewritten (the passphrase provider adds an encryptionsalt).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.bundle.render import TEMPLATE_FOLDERS
from components.config import Settings, load_stack_file
from components.lab import vcsim as labvcsim
from tests.kit import write_operator_key

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("Pulumi.yaml", "Pulumi.sim.yaml", "__main__.py", "components", *TEMPLATE_FOLDERS)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Vcsim:
    settings: Settings
    server: str


@pytest.fixture
def vcsim(tools_bin: Path, tmp_path: Path) -> Iterator[Vcsim]:
    """A fresh vcsim on a free 127.0.0.1 port holding the sim stack's template."""
    server = f"127.0.0.1:{_free_port()}"
    s = dataclasses.replace(load_stack_file(str(ROOT / "Pulumi.sim.yaml")), vsphere_server=server)
    state = tmp_path / "vcsim"
    try:
        labvcsim.start(s, str(tools_bin / "vcsim"), state)
        labvcsim.ensure_template(s)
        yield Vcsim(s, server)
    finally:
        labvcsim.stop(state)


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


@pytest.fixture
def project(tools_bin: Path, tmp_path: Path) -> Project:
    """The project copied to a temp dir, logged in to a file backend there, stack `sim`."""
    work = tmp_path / "project"
    work.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {
        **os.environ,
        "PATH": f"{tools_bin}:{os.environ['PATH']}",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # the language host built here predates the virtualenv option over RPC
        "PULUMI_PYTHON_CMD": str(ROOT / ".venv/bin/python"),
    }
    p = Project(work, env)
    (tmp_path / "state").mkdir()
    p.pulumi("login", f"file://{tmp_path / 'state'}")
    p.pulumi("stack", "init", "sim")
    # the operator key the nodes will admit (make lab's comes from fab lab-up)
    p.config("repo-cluster:sshKeyFile", str(write_operator_key(tmp_path, "operator@e2e")))
    return p
