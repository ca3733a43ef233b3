"""The lab's Pulumi deployment, kept apart from the tracked files.

``pulumi up`` on the embedded lab runs in a project copy, ``.lab/<stack>/project``: links to
the program (``Pulumi.yaml``, ``__main__.py``, ``components/``, the template folders,
``.venv``) and a copy of ``Pulumi.<stack>.yaml``. Everything Pulumi writes into a stack file
(the passphrase provider's ``encryptionsalt``, the lab's secrets set with ``pulumi config set
--secret``) and ``pulumi stack rm``, which deletes the stack file, touch that copy only. State
lives in a local backend (``.lab/pulumi/state``) with a generated passphrase (0600). Pulumi's
own plugin cache (``~/.pulumi/plugins``) is used as it is: the lab never sets PULUMI_HOME.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from components.bundle.render import TEMPLATE_FOLDERS
from components.config import PROJECT_ROOT, stack_file
from components.config.keys import NAMESPACE
from components.lab.plan import lab_dir

PROJECT_NAME = NAMESPACE  # Pulumi.yaml's name: the config namespace
LINKED = ("Pulumi.yaml", "__main__.py", "components", ".venv", *TEMPLATE_FOLDERS)


def pulumi_dir(repo: Path = PROJECT_ROOT) -> Path:
    return repo / ".lab" / "pulumi"


def project_dir(stack: str, repo: Path = PROJECT_ROOT) -> Path:
    return lab_dir(repo, stack) / "project"


def cli_environment(tools_bin: Path, repo: Path = PROJECT_ROOT) -> dict[str, str]:
    """The process environment for the Pulumi CLI from ``tools_bin`` (scripts/bootstrap-tools)
    offline: no update check, no plugin download, the project's Python (the language host
    built here predates the virtualenv option over RPC). No state location."""
    return {
        **os.environ,
        "PATH": f"{tools_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_PYTHON_CMD": str(repo / ".venv" / "bin" / "python"),
    }


def environment(repo: Path = PROJECT_ROOT) -> dict[str, str]:
    """What the Pulumi CLI needs to find the lab's state and decrypt its secrets."""
    base = pulumi_dir(repo)
    return {
        "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE_FILE": str(base / "passphrase"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_PYTHON_CMD": str(repo / ".venv" / "bin" / "python"),
    }


def deployed(stack: str, repo: Path = PROJECT_ROOT) -> bool:
    """Whether the lab's backend holds ``stack`` (made by a ``pulumi up`` of ``make lab``)."""
    stacks = pulumi_dir(repo) / "state" / ".pulumi" / "stacks" / PROJECT_NAME
    return (stacks / f"{stack}.json").is_file() and project_dir(stack, repo).is_dir()


def prepare(stack: str, repo: Path = PROJECT_ROOT) -> Path:
    """Make (or refresh) the project copy and the backend; returns the copy's directory.

    The copy's stack file is the tracked one, plus what Pulumi added to the copy before
    (``encryptionsalt``, encrypted values of keys the tracked file does not set)."""
    base = pulumi_dir(repo)
    (base / "state").mkdir(parents=True, exist_ok=True)
    passphrase = base / "passphrase"
    if not passphrase.exists():
        fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    proj = project_dir(stack, repo)
    proj.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = proj / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(repo / name)
    tracked = yaml.safe_load(stack_file(stack, repo).read_text(encoding="utf-8")) or {}
    copy = stack_file(stack, proj)
    old = yaml.safe_load(copy.read_text(encoding="utf-8")) if copy.exists() else {}
    doc = dict(tracked)
    if (old or {}).get("encryptionsalt"):
        doc["encryptionsalt"] = old["encryptionsalt"]
    config = dict(tracked.get("config") or {})
    for key, value in ((old or {}).get("config") or {}).items():
        if key not in config and isinstance(value, dict) and "secure" in value:
            config[key] = value
    doc["config"] = config
    copy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return proj
