"""Writing bundle files on a node: which files differ, the reloads a write makes owed, and the
POSIX sh script (fed on stdin) that writes them. Pure, like :mod:`components.converge.operations`
(which re-exports these).

A file its daemon can check is checked *before* it is installed: keepalived.conf goes through
``keepalived -t`` as a private temp file beside the target, and replaces the installed one only
when keepalived accepts it. A rejected file leaves the previous one in place (and no temp
file), so the next restart still finds a config that loads. CentOS 7's keepalived 1.3.5 has no
``-t`` (added in 2.0.4): on el7 keepalived.conf is installed untested, as before, and the reload
(or start) that follows is its test.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from components.bundle import PATHS, BundleFile
from components.converge.facts import FileState

q = shlex.quote

UNIT_DIRS = ("/etc/systemd/", "/usr/lib/systemd/", "/lib/systemd/")
DAEMON_RELOAD, KEEPALIVED, SSHD = "daemon-reload", "keepalived", "sshd"
TEST_OUTPUT_LINES = 8  # of the checker's complaint, in the step's error


@dataclass(frozen=True)
class FileChange:
    file: BundleFile
    content: bool
    """True: (re)write the content; False: only owner/group/mode differ."""


def file_changes(
    files: Iterable[BundleFile], states: Mapping[str, FileState | None]
) -> list[FileChange]:
    """Files whose content, mode or owner differs from the bundle (missing ones included)."""
    changes = []
    for f in files:
        state = states.get(f.path)
        if state is None or state.sha256 != hashlib.sha256(f.content).hexdigest():
            changes.append(FileChange(f, content=True))
        elif (state.mode, state.owner, state.group) != (f.mode, f.owner, f.group):
            changes.append(FileChange(f, content=False))
    return changes


def reloads_owed(paths: Iterable[str]) -> list[str]:
    """The reloads (pending markers) that writing ``paths`` makes owed."""
    paths = list(paths)
    owed = []
    if any(p.startswith(UNIT_DIRS) for p in paths):
        owed.append(DAEMON_RELOAD)
    if any(p in (PATHS.keepalived_conf, PATHS.notify_script) for p in paths):
        owed.append(KEEPALIVED)
    if any(PATHS.is_host_key(p) for p in paths):
        owed.append(SSHD)
    return owed


def clear_owed(name: str) -> str:
    """Done with a reload: its marker goes."""
    return f"rm -f {q(f'{PATHS.pending_dir}/{name}')}"


def config_test(path: str, family: str) -> str | None:
    """The command that checks a new ``path`` (given as its last argument) before it replaces
    the installed one; None: installed unchecked (see the module doc for el7)."""
    if path == PATHS.keepalived_conf and family != "el7":
        return "keepalived -t -f"
    return None


def write_files_script(changes: Sequence[FileChange], family: str = "") -> str:
    """A POSIX sh script (fed on stdin, so no content shows in ``ps``) applying ``changes`` on
    a node of OS ``family`` (which decides what :func:`config_test` checks).

    Content goes to a ``mktemp`` file in the target directory (created 0600 under umask 077,
    so a secret is never readable by others), gets its owner and mode, then is renamed over
    the target: readers see the old file or the new one, never half of one. The files with a
    config test move last, each only once its test passed; a failed test ends the script
    non-zero with the checker's own words on stderr, its file not installed. No temp file is
    left, whatever happens.

    Before a file is replaced, a marker for each reload it makes owed goes into
    ``PATHS.pending_dir``; the converge removes it once the reload ran. A run that fails in
    between leaves the marker, so the next run finishes the reload although every file
    already matches (operations.daemon_reload, keepalived, restart_sshd).
    """
    staged = [(n, ch.file) for n, ch in enumerate(changes) if ch.content]
    checked = {n: test for n, f in staged if (test := config_test(f.path, family))}
    lines = [*_prologue(n for n, _ in staged), "apply() {"]
    for n, f in staged:
        lines += _stage(n, f)
    first = [(n, f) for n, f in staged if n not in checked]
    lines += _owe(f for _, f in first)
    lines += [f'mv -f "$t{n}" {q(f.path)}' for n, f in first]
    for ch in changes:
        if not ch.content:
            f = ch.file
            lines += [
                f"chown {q(f'{f.owner}:{f.group}')} {q(f.path)}",
                f"chmod {f.mode:04o} {q(f.path)}",
            ]
    last = [(n, f) for n, f in staged if n in checked]
    for n, f in last:
        lines += _check(n, f, checked[n])
    lines += _owe(f for _, f in last)
    lines += [f'mv -f "$t{n}" {q(f.path)}' for n, f in last]
    return "\n".join([*lines, "}", "apply"]) + "\n"


def check_files_script(files: Sequence[BundleFile], family: str) -> str | None:
    """A script that stages and checks ``files`` as :func:`write_files_script` would, and
    installs nothing (its temp files go); None when none of them has a config test."""
    checked = [(n, f, test) for n, f in enumerate(files) if (test := config_test(f.path, family))]
    if not checked:
        return None
    lines = [*_prologue(n for n, _, _ in checked), "apply() {"]
    for n, f, test in checked:
        lines += [*_stage(n, f), *_check(n, f, test)]
    return "\n".join([*lines, "}", "apply"]) + "\n"


def _prologue(numbers: Iterable[int]) -> list[str]:
    """Strict sh, private files, and every temp file removed on exit (a moved one is gone)."""
    temps = [f"t{n}" for n in numbers]
    if not temps:
        return ["set -eu", "umask 077"]
    removal = " ".join(f'"${t}"' for t in temps)
    return [
        "set -eu",
        "umask 077",
        " ".join(f"{t}=" for t in temps),
        f"trap 'rm -f -- {removal}' EXIT",
    ]


def _stage(n: int, f: BundleFile) -> list[str]:
    """The new content as temp file ``$t<n>`` beside its target, with its owner and mode."""
    parent = posixpath.dirname(f.path) or "/"
    base = posixpath.basename(f.path)
    return [
        f"[ -d {q(parent)} ] || install -d -m 0755 -o root -g root {q(parent)}",
        f"t{n}=$(mktemp {q(f'{parent}/.{base}.XXXXXX')})",
        f"base64 -d > \"$t{n}\" <<'REPO_CLUSTER_EOF'",
        *_b64_lines(f.content),
        "REPO_CLUSTER_EOF",
        f'chown {q(f"{f.owner}:{f.group}")} "$t{n}"',
        f'chmod {f.mode:04o} "$t{n}"',
    ]


def _check(n: int, f: BundleFile, test: str) -> list[str]:
    """Run ``test`` on the staged file; on failure its words (deduplicated), then ours, on
    stderr, and the script ends (the trap removes the temp file)."""
    verdict = (
        f"{test.split()[0]} rejected the new {f.path} ({test} <the new file>): not installed, "
        "the previous one stays"
    )
    return [
        f'if ! out=$({test} "$t{n}" 2>&1); then',
        f"  printf '%s\\n' \"$out\" | awk '!seen[$0]++' | head -n {TEST_OUTPUT_LINES} >&2",
        f"  echo {q(verdict)} >&2",
        "  exit 1",
        "fi",
    ]


def _owe(files: Iterable[BundleFile]) -> list[str]:
    owed = reloads_owed(f.path for f in files)
    if not owed:
        return []
    markers = " ".join(q(f"{PATHS.pending_dir}/{name}") for name in owed)
    return [f"mkdir -p {q(PATHS.pending_dir)}", f"touch {markers}"]


def _b64_lines(content: bytes) -> list[str]:
    encoded = base64.b64encode(content).decode()
    return [encoded[i : i + 76] for i in range(0, len(encoded), 76)] or [""]
