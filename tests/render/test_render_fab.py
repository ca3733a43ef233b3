"""`fab render --stack STACK --out DIR`, run as the operator runs it."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml

from components import settings
from components.bundle import Secrets, authorized_keys, render_cluster
from tests.render.renderkit import ROOT, STACKS, run, stack_config

pytestmark = pytest.mark.render

FAB = str(ROOT / ".venv" / "bin" / "fab")


def fab_render(cwd: Path, stack: str, out: Path):
    return run(FAB, "render", "--stack", stack, "--out", str(out), cwd=cwd, timeout=120)


@pytest.mark.parametrize("stack", STACKS)
def test_render_writes_every_node(stack, tmp_path) -> None:
    out = tmp_path / "out"
    r = fab_render(ROOT, stack, out)
    assert r.returncode == 0, r.stderr
    s = settings.load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))
    # expected layout, from the same renderer (placeholders differ, paths and modes do not)
    expected = render_cluster(s, Secrets.resolve(s), authorized_keys(s, ROOT))
    assert sorted(p.name for p in out.iterdir()) == sorted(n.name for n in s.nodes)
    for name, bundle in expected.items():
        node_dir = out / name
        want = {f.path.lstrip("/"): f.mode for f in bundle.files}
        want |= {"cloud-init/user-data": 0o600, "cloud-init/meta-data": 0o644}
        got = {
            str(p.relative_to(node_dir)): stat.S_IMODE(p.stat().st_mode)
            for p in node_dir.rglob("*")
            if p.is_file()
        }
        assert got == want
        for f in bundle.files:
            if not f.secret and "ssh_host" not in f.path:
                assert (node_dir / f.path.lstrip("/")).read_bytes() == f.content, f.path
        user_data = (node_dir / "cloud-init/user-data").read_text()
        assert user_data.startswith("#cloud-config\n")
        assert yaml.safe_load(user_data)["hostname"] == name
        meta = yaml.safe_load((node_dir / "cloud-init/meta-data").read_text())
        assert meta["local-hostname"] == name
        assert f"{name}: {len(bundle.files)} files" in r.stdout
    assert "placeholders (not available here): " in r.stdout
    assert "SSH host keys" in r.stdout


def project(tmp_path: Path, config: dict) -> Path:
    """A throwaway project: the code, the templates and one stack file."""
    proj = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "components", proj / "components", ignore=ignore)
    shutil.copytree(ROOT / "templates", proj / "templates", ignore=ignore)
    (proj / "fabfile.py").write_text("from components.tasks.render import render  # noqa: F401\n")
    (proj / "Pulumi.t.yaml").write_text(yaml.safe_dump({"config": config}))
    return proj


def test_render_never_prints_secrets(tmp_path) -> None:
    config = stack_config("sim")
    config["repo-cluster:vrrpAuthPass"] = "Zq8vT2xw"
    config["repo-cluster:cephKeyring"] = "AQBzYWNyZXRrZXlyaW5nZm9ydGVzdHM0MjQyNA=="
    proj = project(tmp_path, config)
    out = tmp_path / "out"
    r = fab_render(proj, "t", out)
    assert r.returncode == 0, r.stderr
    for secret in ("Zq8vT2xw", "AQBzYWNyZXRrZXlyaW5nZm9ydGVzdHM0MjQyNA=="):
        assert secret not in r.stdout + r.stderr
    assert "placeholders (not available here): SSH host keys" in r.stdout
    conf = out / "repo1/etc/keepalived/keepalived.conf"
    assert "auth_pass Zq8vT2xw" in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_invalid_stack_lists_every_problem_and_writes_nothing(tmp_path) -> None:
    config = stack_config("lab")
    config["repo-cluster:cpus"] = 0
    config["repo-cluster:vip"] = "10.2.50.160"
    config["repo-cluster:xfsLabel"] = "much-too-long-label"
    config["repo-cluster:nodes"][1]["priority"] = 999
    del config["repo-cluster:datacenter"]
    with pytest.raises(settings.ConfigError) as exc:
        settings.load(config)
    assert len(exc.value.problems) == 5
    proj = project(tmp_path, config)
    out = tmp_path / "out"
    r = fab_render(proj, "t", out)
    assert r.returncode != 0
    for problem in exc.value.problems:
        assert problem in r.stderr, (problem, r.stderr)
    assert not out.exists()
    # and the same project renders once the stack is fixed
    (proj / "Pulumi.t.yaml").write_text(yaml.safe_dump({"config": stack_config("lab")}))
    assert fab_render(proj, "t", out).returncode == 0 and (out / "repo2").is_dir()


def test_missing_stack_file_fails(tmp_path) -> None:
    r = fab_render(ROOT, "no-such-stack", tmp_path / "out")
    assert r.returncode != 0 and "Pulumi.no-such-stack.yaml" in r.stderr
    assert not (tmp_path / "out").exists()
