"""The converge's write of keepalived.conf, run for real against the real keepalived (Debian's
2.2.7) in a throwaway network and mount namespace: a config keepalived -t rejects is not
installed (the previous one stays, no temp file, no reload owed) and the script fails with
keepalived's own words; one it accepts is installed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from components.bundle import PATHS, BundleFile
from components.converge import operations
from tests.render.renderkit import Rendered, run

pytestmark = pytest.mark.render

MARK = "--- after ---"


def write_on_node(
    netns: Callable[[str], str], r: Rendered, old: bytes, new: BundleFile, tmp: Path
) -> tuple[int, str, str, list[str], list[str]]:
    """Run the converge's write script for ``new`` where ``old`` is installed: (exit status,
    stderr, the installed file after, /etc/keepalived's entries, the reloads owed)."""
    (tmp / "old.conf").write_bytes(old)
    script = tmp / "write.sh"
    script.write_text(operations.write_files_script([operations.FileChange(new, True)], "debian"))
    stubs = " && ".join(
        f"printf '#!/bin/sh\\nexit 0\\n' > {c} && chmod 0755 {c}" for c in PATHS.check_scripts
    )
    conf_dir, pending = Path(PATHS.keepalived_conf).parent, Path(PATHS.pending_dir)
    setup = " && ".join(
        [
            f"mount -t tmpfs -o mode=0755 tmpfs {Path(PATHS.sshd_check).parent}",
            stubs,
            f"mount -t tmpfs -o mode=0755 tmpfs {conf_dir}",
            f"mount -t tmpfs -o mode=0755 tmpfs {pending.parent.parent}",
            f"cp {tmp / 'old.conf'} {PATHS.keepalived_conf}",
        ]
    )
    after = f"echo {MARK}; cat {PATHS.keepalived_conf}; echo {MARK}; ls -A {conf_dir}; echo {MARK}"
    probe = f"{setup} && {{ sh {script}; echo $? > {tmp / 'rc'}; }}; {after}; ls -A {pending}"
    ns = netns(r.settings.interface)
    p = run("ip", "netns", "exec", ns, "unshare", "--mount", "sh", "-c", probe)
    _, installed, entries, owed = p.stdout.split(f"{MARK}\n")
    rc = int((tmp / "rc").read_text())
    return rc, p.stderr, installed, entries.split(), owed.split()


def test_a_config_keepalived_rejects_is_not_installed(renders, netns, tmp_path) -> None:
    r = renders["sim-debian"]
    current = r.bundles["repo1"].file(PATHS.keepalived_conf)
    line = b"\n    nopreempt\n"
    broken = current.content.replace(line, line + b"    no_such_keyword 1\n", 1)
    assert broken != current.content
    rc, err, installed, entries, owed = write_on_node(
        netns, r, current.content, dataclasses.replace(current, content=broken), tmp_path
    )
    assert rc == 1
    assert "Unknown keyword 'no_such_keyword'" in err  # keepalived's words
    assert f"rejected the new {PATHS.keepalived_conf} (keepalived -t -f" in err
    assert "not installed, the previous one stays" in err
    assert installed.encode() == current.content  # the previous one stays
    assert entries == ["keepalived.conf"]  # and no temp file
    assert owed == []  # nothing to reload


def test_a_config_keepalived_accepts_is_installed(renders, netns, tmp_path) -> None:
    r = renders["sim-debian"]
    current = r.bundles["repo1"].file(PATHS.keepalived_conf)
    other = r.bundles["repo2"].file(PATHS.keepalived_conf)  # another node's: valid, different
    rc, err, installed, entries, owed = write_on_node(netns, r, current.content, other, tmp_path)
    assert rc == 0, err
    assert installed.encode() == other.content
    assert entries == ["keepalived.conf"] and owed == ["keepalived"]
