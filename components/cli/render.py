"""`fab render --stack STACK --out DIR`: write every node's bundle to disk, to read or diff.

Layout: ``DIR/<node>/<absolute path on the node>`` with the file's mode, plus
``DIR/<node>/cloud-init/user-data`` and ``meta-data``. Secrets the stack file holds encrypted
(or that Pulumi generates later) are marked placeholders; no secret value is ever printed.

DIR is new, empty or an earlier render, which is replaced whole: the render is written into
a temporary directory beside DIR, then swapped in, so no file of a removed node survives and
a failed render leaves DIR as it was. Any other directory is refused, never written into.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from components import config as settings
from components.bundle import Bundle, Secrets, authorized_keys, render_cluster
from components.bundle.secrets import PLACEHOLDER_AUTHORIZED_KEY
from components.cli.common import require

ROOT = settings.PROJECT_ROOT
CLOUD_INIT_DIR = "cloud-init"
DIR_MODE = 0o755


def load_stack(stack: str, root: Path = ROOT) -> settings.Settings:
    """Settings of ``Pulumi.<stack>.yaml`` at the project root; Exit listing every problem."""
    path = settings.stack_file(stack, root)
    if not path.is_file():
        raise Exit(f"render: no stack file {path}", code=2)
    try:
        return settings.load_stack_file(str(path))
    except settings.ConfigError as e:
        raise Exit(f"render: {path.name}: {e}", code=2) from e


def _mkdirs(path: Path) -> None:
    """``path`` and its missing parents, each 0755 whatever the caller's umask."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700)  # under umask 077: never world-writable, even for a moment
        os.chmod(p, DIR_MODE)


def _write(path: Path, content: bytes, mode: int) -> None:
    """Create ``path`` afresh with ``mode``, its content written only once the mode is final.

    Created owner-only (umask 077, O_EXCL: a new inode of ours, never a file or symlink left
    there), then fchmod to ``mode``, then written: a secret is never readable by others, not
    even for a moment, whatever the umask of the operator running ``fab render``.
    """
    old_umask = os.umask(0o077)
    try:
        _mkdirs(path.parent)
        path.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, mode & 0o700)
        try:
            os.fchmod(fd, mode)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    finally:
        os.umask(old_umask)


def write_bundle(bundle: Bundle, out: Path) -> Path:
    """Write one node's bundle under ``out/<node>``, replacing an earlier render there."""
    node_dir = out / bundle.node.name
    if (node_dir / CLOUD_INIT_DIR / "meta-data").is_file():
        shutil.rmtree(node_dir)  # an earlier render: no stale files survive
    for f in bundle.files:
        _write(node_dir / f.path.lstrip("/"), f.content, f.mode)
    # user-data carries the secrets (host keys, keyring): owner-only, like the keys themselves
    _write(node_dir / CLOUD_INIT_DIR / "user-data", bundle.user_data.encode(), 0o600)
    _write(node_dir / CLOUD_INIT_DIR / "meta-data", bundle.meta_data.encode(), 0o644)
    return node_dir


def _earlier_render(out: Path) -> bool:
    """Every entry of ``out`` is a node directory of an earlier render (an empty directory
    qualifies too)."""
    return all(
        p.is_dir() and not p.is_symlink() and (p / CLOUD_INIT_DIR / "meta-data").is_file()
        for p in out.iterdir()
    )


def check_out(out: Path) -> None:
    """Exit unless ``out`` may be (re)placed by a render: new, empty or an earlier render."""
    if out.is_symlink():
        raise Exit(f"render: {out} is a symlink: give the directory itself", code=2)
    if not out.exists():
        return
    if not out.is_dir():
        raise Exit(f"render: {out} is not a directory", code=2)
    if not _earlier_render(out):
        raise Exit(
            f"render: {out} is not empty and not an earlier render (only <node>/ directories"
            " with cloud-init/meta-data): give a new or empty directory",
            code=2,
        )


def replace_dir(fresh: Path, out: Path) -> None:
    """Put ``fresh`` (a sibling of ``out``) in the place of ``out``, then drop the old one."""
    if not out.exists():
        os.rename(fresh, out)
        return
    hold = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    try:
        os.rename(out, hold / "render")
        try:
            os.rename(fresh, out)
        except OSError:
            os.rename(hold / "render", out)
            raise
    finally:
        shutil.rmtree(hold, ignore_errors=True)


@task(
    positional=[],
    help={
        "stack": "Stack name: reads Pulumi.<stack>.yaml at the project root.",
        "out": "Output directory (new, empty or an earlier render, which is replaced whole);"
        " each node's files go to <out>/<node>/.",
    },
)
def render(c: Context, stack: str = "", out: str = "") -> None:
    """Render every node's bundle (files, cloud-init user-data/meta-data) into a directory."""
    require("render", stack=stack, out=out)
    out_dir = Path(out)
    check_out(out_dir)
    s = load_stack(stack)
    secrets = Secrets.resolve(s)
    authorized = authorized_keys(s, ROOT)
    bundles = render_cluster(s, secrets, authorized)
    _mkdirs(out_dir.absolute().parent)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.render-", dir=out_dir.parent))
    try:
        os.chmod(fresh, DIR_MODE)
        for bundle in bundles.values():
            write_bundle(bundle, fresh)
        check_out(out_dir)  # still new, empty or a render: nothing else is replaced
        replace_dir(fresh, out_dir)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    for name, bundle in bundles.items():
        secret_files = sum(f.secret for f in bundle.files)
        print(
            f"{name}: {len(bundle.files)} files ({secret_files} secret) + cloud-init"
            f" in {out_dir / name}  digest {bundle.digest[:16]}"
        )
    if secrets.placeholders:
        print(f"placeholders (not available here): {', '.join(secrets.placeholders)}")
    else:
        print("placeholders: none, every secret is the stack's")
    if authorized == (PLACEHOLDER_AUTHORIZED_KEY,):
        print(f"authorized key: placeholder (no {s.ssh_key_file}.pub)")
