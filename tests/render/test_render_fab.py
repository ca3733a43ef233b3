"""`fab render --stack STACK --out DIR`, run as the operator runs it, and the modes it writes
files with: final before any content, never readable by others on the way."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components import config as settings
from components.bundle import Bundle, Secrets, authorized_keys, render_cluster
from components.bundle.render import TEMPLATE_FOLDERS
from components.cli.render import write_bundle
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
    for folder in TEMPLATE_FOLDERS:
        shutil.copytree(ROOT / folder, proj / folder, ignore=ignore)
    (proj / "fabfile.py").write_text("from components.cli.render import render  # noqa: F401\n")
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


# --------------------------------------------------------------------------- file modes


@pytest.fixture
def bundle() -> Bundle:
    s = settings.load_stack_file(str(ROOT / "Pulumi.sim.yaml"))
    return render_cluster(s, Secrets.resolve(s), authorized_keys(s, ROOT))["repo1"]


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The most careless operator: every file and directory would be world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def expected_modes(bundle: Bundle) -> dict[str, int]:
    want = {f.path.lstrip("/"): f.mode for f in bundle.files}
    return want | {"cloud-init/user-data": 0o600, "cloud-init/meta-data": 0o644}


def modes(node_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(node_dir)): stat.S_IMODE(p.lstat().st_mode)
        for p in node_dir.rglob("*")
        if not p.is_dir()
    }


def test_final_modes_whatever_the_umask(bundle, umask_000, tmp_path) -> None:
    node_dir = write_bundle(bundle, tmp_path / "out")
    assert modes(node_dir) == expected_modes(bundle)
    for f in bundle.files:
        assert (node_dir / f.path.lstrip("/")).read_bytes() == f.content, f.path
    dirs = [node_dir, *(p for p in node_dir.rglob("*") if p.is_dir())]
    assert {stat.S_IMODE(d.stat().st_mode) for d in dirs} == {0o755}


def test_no_file_is_created_readable_by_others(bundle, umask_000, tmp_path, monkeypatch) -> None:
    """Every chmod neutralized: what is left on disk is each file's mode at creation. None may
    give group or others any access, or a secret is readable between its creation and its
    chmod."""
    for target, name in ((os, "chmod"), (os, "fchmod"), (Path, "chmod")):
        monkeypatch.setattr(target, name, lambda *a, **k: None)
    node_dir = write_bundle(bundle, tmp_path / "out")
    created = modes(node_dir)
    assert set(created) == set(expected_modes(bundle))
    assert {p: m for p, m in created.items() if m & 0o077} == {}


def test_mode_is_final_before_any_content(bundle, umask_000, tmp_path, monkeypatch) -> None:
    """Spying os.open/fchmod/write: each file is a new inode (O_CREAT|O_EXCL) created with no
    group/other bits under the umask in force, and gets its final mode before its first byte."""
    events: list[tuple] = []
    real_open, real_fchmod, real_write = os.open, os.fchmod, os.write
    fds: dict[int, str] = {}

    def spy_open(path, flags, mode=0o777, *a, **k):
        umask = os.umask(0o777)
        os.umask(umask)
        fd = real_open(path, flags, mode, *a, **k)
        fds[fd] = str(path)
        events.append(("open", str(path), flags, mode & ~umask))
        return fd

    def spy_fchmod(fd, mode):
        events.append(("fchmod", fds.get(fd), mode))
        return real_fchmod(fd, mode)

    def spy_write(fd, data):
        if fd in fds:
            events.append(("write", fds[fd]))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fchmod", spy_fchmod)
    monkeypatch.setattr(os, "write", spy_write)
    node_dir = write_bundle(bundle, tmp_path / "out")
    want = {str(node_dir / p): m for p, m in expected_modes(bundle).items()}
    opened = {e[1]: e for e in events if e[0] == "open"}
    assert set(opened) == set(want)  # every file of the render, through os.open
    for path, (_, _, flags, created) in opened.items():
        assert flags & os.O_CREAT and flags & os.O_EXCL, path
        assert created & 0o077 == 0, (path, oct(created))
        mine = [e for e in events if e[1] == path]
        assert mine[1] == ("fchmod", path, want[path]), mine[:3]
        assert mine[2:] and all(e[0] == "write" for e in mine[2:]), path


def test_a_symlink_in_the_way_is_replaced_not_followed(bundle, tmp_path) -> None:
    """A file left at a target path (here a symlink to a file elsewhere) is never written
    through: the secret lands in a new file of its own."""
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    victim.chmod(0o644)
    conf = out / "repo1/etc/keepalived/keepalived.conf"
    conf.parent.mkdir(parents=True)
    conf.symlink_to(victim)
    write_bundle(bundle, out)
    assert victim.read_text() == "untouched\n"
    assert not conf.is_symlink() and stat.S_IMODE(conf.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- --out reuse


def three_nodes(config: dict) -> dict:
    config["repo-cluster:nodes"].append({"name": "repo3", "ip": "198.18.50.163", "priority": 99})
    return config


def test_a_render_replaces_the_previous_one_whole(tmp_path) -> None:
    """A node removed from the stack leaves no stale files behind."""
    proj = project(tmp_path, three_nodes(stack_config("sim")))
    out = tmp_path / "out"
    assert fab_render(proj, "t", out).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["repo1", "repo2", "repo3"]
    (proj / "Pulumi.t.yaml").write_text(yaml.safe_dump({"config": stack_config("sim")}))
    r = fab_render(proj, "t", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["repo1", "repo2"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "project"]  # no temp left


def test_a_used_directory_that_is_no_render_is_refused(tmp_path) -> None:
    out = tmp_path / "out"
    (out / "repo1").mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    r = fab_render(ROOT, "sim", out)
    assert r.returncode != 0
    assert f"render: {out} is not empty and not an earlier render" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "repo1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_directory_or_a_new_one_is_rendered_into(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert fab_render(ROOT, "sim", out).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["repo1", "repo2"]
    deep = tmp_path / "a" / "b"
    assert fab_render(ROOT, "sim", deep).returncode == 0 and (deep / "repo2").is_dir()


def test_out_must_be_a_directory(tmp_path) -> None:
    out = tmp_path / "out"
    out.write_text("a file\n")
    r = fab_render(ROOT, "sim", out)
    assert r.returncode != 0 and "not a directory" in r.stderr
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    r = fab_render(ROOT, "sim", link)
    assert r.returncode != 0 and "symlink" in r.stderr
    assert link.is_symlink() and not any((tmp_path / "elsewhere").iterdir())


def test_a_yaml_error_is_one_line_not_a_traceback(tmp_path) -> None:
    proj = project(tmp_path, stack_config("sim"))
    (proj / "Pulumi.t.yaml").write_text("config:\n  repo-cluster:cpus: [1, 2\n")
    r = fab_render(proj, "t", tmp_path / "out")
    assert r.returncode == 2
    assert "Pulumi.t.yaml: line 3, column 1: " in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
