"""Operations, pyinfra style: (desired state, facts) -> the commands a converge runs.

Every table ends with a second-run case: facts that already match give no command at all.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from components.bundle import BundleFile, Secrets, render_node
from components.bundle.packages import install_commands
from components.converge import operations as ops
from components.converge.facts import FileState, UnitState

pytestmark = pytest.mark.unit

CONF = BundleFile("/etc/keepalived/keepalived.conf", b"vrrp_instance X {}\n", 0o600, secret=True)
NOTIFY = BundleFile("/usr/local/bin/keepalivednotify.sh", b"#!/bin/bash\n", 0o755)
SYSCTL = BundleFile(
    "/etc/sysctl.d/90-repo-cluster.conf", b"# c\nnet.ipv4.ip_nonlocal_bind = 1\n", 0o644
)
UNIT = BundleFile("/etc/systemd/system/rbd-veeamrepo.service", b"[Unit]\n", 0o644)
HOSTKEY = BundleFile("/etc/ssh/ssh_host_ed25519_key", b"-----BEGIN...\n", 0o600, secret=True)


def state(f: BundleFile, **over: object) -> FileState:
    base = {
        "sha256": hashlib.sha256(f.content).hexdigest(),
        "mode": f.mode,
        "owner": f.owner,
        "group": f.group,
    }
    return FileState(**{**base, **over})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- packages

PACKAGES = [
    pytest.param(
        "debian",
        ("apt-get update -qq",),
        ["ceph-common"],
        [
            "apt-get update -qq",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            "-o Dpkg::Options::=--force-confold ceph-common",
        ],
        id="debian-missing-one: sources (with the update) then one install",
    ),
    pytest.param(
        "ubuntu",
        (),
        ["keepalived", "psmisc"],
        [
            "apt-get update -qq",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            "-o Dpkg::Options::=--force-confold keepalived psmisc",
        ],
        id="ubuntu-no-sources: an update before installing",
    ),
    pytest.param(
        "el7",
        ("yum -y clean metadata", "yum -y makecache fast"),
        ["epel-release", "keepalived"],
        [
            "yum -y clean metadata",
            "yum -y makecache fast",
            "yum -y -q install epel-release keepalived",
        ],
        id="el7-yum",
    ),
    pytest.param("el9", ("dnf -y makecache",), ["x"], ["dnf -y makecache", "dnf -y -q install x"]),
    pytest.param("debian", ("apt-get update -qq",), [], [], id="second-run-debian: nothing"),
    pytest.param("el7", ("yum -y makecache fast",), [], [], id="second-run-el7: nothing"),
]


@pytest.mark.parametrize(("family", "sources", "missing", "expected"), PACKAGES)
def test_install_commands(family, sources, missing, expected):
    assert install_commands(family, sources, missing) == expected


def test_package_names_are_quoted():
    cmds = install_commands("el8", (), ["a;rm -rf /"])
    assert cmds == ["dnf -y -q install 'a;rm -rf /'"]


# --------------------------------------------------------------------------- files

FILES = [
    pytest.param({}, [(CONF, True), (NOTIFY, True)], id="fresh node: both written"),
    pytest.param(
        {CONF.path: state(CONF, sha256="0" * 64), NOTIFY.path: state(NOTIFY)},
        [(CONF, True)],
        id="content differs: rewrite",
    ),
    pytest.param(
        {CONF.path: state(CONF, mode=0o644), NOTIFY.path: state(NOTIFY)},
        [(CONF, False)],
        id="mode differs: chmod only",
    ),
    pytest.param(
        {CONF.path: state(CONF), NOTIFY.path: state(NOTIFY, owner="nobody")},
        [(NOTIFY, False)],
        id="owner differs: chown only",
    ),
    pytest.param(
        {CONF.path: state(CONF), NOTIFY.path: state(NOTIFY)}, [], id="second run: nothing"
    ),
]


@pytest.mark.parametrize(("facts", "expected"), FILES)
def test_file_changes(facts, expected):
    changes = ops.file_changes([CONF, NOTIFY], facts)
    assert [(c.file, c.content) for c in changes] == expected
    assert (
        ops.file_changes([CONF, NOTIFY], {CONF.path: state(CONF), NOTIFY.path: state(NOTIFY)}) == []
    )


def test_write_files_script_runs_for_real(tmp_path: Path):
    """The script the converge feeds to `sh -s`, run by the real sh on a scratch tree: files
    land byte for byte with their mode, parents are created, and no temp file is left."""
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    grp = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    secret = BundleFile(str(tmp_path / "new/dir/key"), bytes(range(256)) * 3, 0o600, me, grp, True)
    plain = BundleFile(str(tmp_path / "a b.conf"), b"x = 'y'\n", 0o644, me, grp)
    (tmp_path / "a b.conf").write_bytes(b"old")
    (tmp_path / "a b.conf").chmod(0o666)
    attrs_only = BundleFile(str(tmp_path / "same"), b"same\n", 0o640, me, grp)
    (tmp_path / "same").write_bytes(b"same\n")
    changes = [
        ops.FileChange(secret, True),
        ops.FileChange(plain, True),
        ops.FileChange(attrs_only, False),
    ]
    script = ops.write_files_script(changes)
    assert bytes(range(256)) not in script.encode()  # content travels base64-encoded
    proc = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    for f in (secret, plain, attrs_only):
        p = Path(f.path)
        assert p.read_bytes() == f.content
        assert p.stat().st_mode & 0o7777 == f.mode, f.path
    assert (tmp_path / "new/dir").stat().st_mode & 0o777 == 0o755
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == [], f"temp files left: {leftovers}"


def test_write_files_script_keeps_secrets_private_while_writing():
    script = ops.write_files_script([ops.FileChange(HOSTKEY, True)])
    lines = script.splitlines()
    # umask 077 before any file is made; mktemp creates 0600; mode set before the rename
    assert lines.index("umask 077") < next(i for i, ln in enumerate(lines) if "mktemp" in ln)
    chmod = next(i for i, ln in enumerate(lines) if ln.startswith("chmod 0600"))
    move = next(i for i, ln in enumerate(lines) if ln.startswith("mv -f"))
    assert chmod < move
    assert "mktemp /etc/ssh/.ssh_host_ed25519_key.XXXXXX" in script


# --------------------------------------------------------------------------- sysctl

SYSCTL_CASES = [
    pytest.param([SYSCTL.path], {"net.ipv4.ip_nonlocal_bind": "1"}, True, id="file changed"),
    pytest.param([], {"net.ipv4.ip_nonlocal_bind": "0"}, True, id="live value differs"),
    pytest.param([], {"net.ipv4.ip_nonlocal_bind": ""}, True, id="live value unknown"),
    pytest.param([], {"net.ipv4.ip_nonlocal_bind": "1"}, False, id="second run: nothing"),
]


@pytest.mark.parametrize(("changed", "live", "applies"), SYSCTL_CASES)
def test_apply_sysctl(changed, live, applies):
    expected = ["sysctl -p /etc/sysctl.d/90-repo-cluster.conf"] if applies else []
    assert ops.apply_sysctl([SYSCTL, CONF], changed, live) == expected


def test_sysctl_settings_parse():
    text = b"# x\n; y\n\nnet.a.b=1\n-net/c/d =  2   3\n"
    assert ops.sysctl_settings(text) == {"net.a.b": "1", "net.c.d": "2 3"}


# --------------------------------------------------------------------------- units

SERVICES = ("rbd-veeamrepo.service", "keepalived.service")
UNITS = [
    pytest.param(
        [UNIT.path],
        {s: UnitState("disabled", "inactive") for s in SERVICES},
        [
            "systemctl daemon-reload",
            "systemctl enable rbd-veeamrepo.service",
            "systemctl enable keepalived.service",
            "systemctl start rbd-veeamrepo.service",
        ],
        id="fresh node: reload, enable both, start the rbd unit (keepalived apart)",
    ),
    pytest.param(
        [],
        {
            "rbd-veeamrepo.service": UnitState("enabled", "active"),
            "keepalived.service": UnitState("disabled", "active"),
        },
        ["systemctl enable keepalived.service"],
        id="one disabled",
    ),
    pytest.param(
        [UNIT.path],
        {s: UnitState("enabled", "active") for s in SERVICES},
        ["systemctl daemon-reload"],
        id="unit changed on a running node: reload only, the rbd unit is not restarted",
    ),
    pytest.param(
        [CONF.path],
        {s: UnitState("enabled", "active") for s in SERVICES},
        [],
        id="second run: nothing",
    ),
]


@pytest.mark.parametrize(("changed", "states", "expected"), UNITS)
def test_units(changed, states, expected):
    got = [
        *ops.daemon_reload(changed),
        *ops.enable_services(SERVICES, states),
        *ops.start_services(SERVICES, states),
    ]
    assert got == expected


# --------------------------------------------------------------------------- daemons

# after the restart, the node publishes the key sshd now serves in its guestinfo
PUBLISH = "systemctl restart repo-cluster-publish-host-key.service"
SSHD = [
    pytest.param(
        "el7", [HOSTKEY.path], True, ["sshd -t", "systemctl restart sshd.service", PUBLISH]
    ),
    pytest.param(
        "debian", [HOSTKEY.path], True, ["sshd -t", "systemctl restart ssh.service", PUBLISH]
    ),
    pytest.param(
        "debian",
        [],
        False,
        ["sshd -t", "systemctl restart ssh.service", PUBLISH],
        id="keys in place but sshd still serves its own: restart",
    ),
    pytest.param("debian", [CONF.path], True, [], id="second run: nothing"),
]


@pytest.mark.parametrize(("family", "changed", "presents_shared", "expected"), SSHD)
def test_restart_sshd(family, changed, presents_shared, expected):
    assert ops.restart_sshd(family, changed, presents_shared) == expected


KEEPALIVED = [
    pytest.param(
        "debian",
        [CONF.path],
        "active",
        [
            "keepalived -t -f /etc/keepalived/keepalived.conf",
            "systemctl reload keepalived.service",
        ],
        id="config changed, running: validate, reload",
    ),
    pytest.param(
        "el9",
        [NOTIFY.path],
        "inactive",
        ["keepalived -t -f /etc/keepalived/keepalived.conf", "systemctl start keepalived.service"],
        id="notify changed, stopped: validate, start",
    ),
    pytest.param(
        "el7",
        [CONF.path],
        "active",
        ["systemctl reload keepalived.service"],
        id="el7 (1.3.5 has no --config-test)",
    ),
    pytest.param(
        "debian", [], "failed", ["systemctl start keepalived.service"], id="unchanged, not running"
    ),
    pytest.param("debian", [SYSCTL.path], "active", [], id="second run: nothing"),
]


@pytest.mark.parametrize(("family", "changed", "active", "expected"), KEEPALIVED)
def test_keepalived(family, changed, active, expected):
    assert ops.keepalived(family, changed, active) == expected


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("/etc/yum.repos.d/CentOS-Base.repo", True),
        ("/etc/yum.repos.d/epel.repo", True),
        ("/etc/apt/sources.list.d/ceph.list", True),
        ("/etc/keepalived/keepalived.conf", False),
        ("/etc/yum.conf", False),
    ],
)
def test_repository_files_are_package_sources(path, source):
    """They are written before the packages step, which installs from them."""
    assert ops.is_package_source(path) is source


def test_el7_bundle_repo_files_go_before_its_packages():
    from tests.kit import stack_settings

    s = stack_settings("lab")
    bundle = render_node(s, s.nodes[0], Secrets.resolve(s), ("ssh-ed25519 AAAA test",))
    sources = sorted(f.path for f in bundle.files if ops.is_package_source(f.path))
    assert sources == [
        "/etc/yum.repos.d/CentOS-Base.repo",
        "/etc/yum.repos.d/ceph.repo",
        "/etc/yum.repos.d/epel.repo",
    ]


# --------------------------------------------------------------------------- reloads owed


@pytest.mark.parametrize("family", ["debian", "el7"])
def test_a_write_leaves_the_reloads_it_makes_owed_before_any_file_moves(family):
    """A run that writes, then dies before the reload, leaves a marker for the next run. Each
    file's markers come before it moves (keepalived.conf moves last where it is checked)."""
    unit = BundleFile("/etc/systemd/system/rbd-x.service", b"[Unit]\n", 0o644)
    files = {CONF.path: "keepalived", unit.path: "daemon-reload", HOSTKEY.path: "sshd"}
    script = ops.write_files_script(
        [ops.FileChange(CONF, True), ops.FileChange(unit, True), ops.FileChange(HOSTKEY, True)],
        family,
    )
    lines = script.splitlines()
    for path, name in files.items():
        move = next(i for i, ln in enumerate(lines) if ln.startswith("mv ") and ln.endswith(path))
        touched = [ln for ln in lines[:move] if ln.startswith("touch ")]
        assert any(f"/var/lib/repo-cluster/pending/{name}" in ln for ln in touched), path
    # owner/mode only: nothing to reload
    assert "touch" not in ops.write_files_script([ops.FileChange(CONF, False)])


def test_an_owed_reload_runs_though_every_file_matches():
    assert ops.daemon_reload([], ["daemon-reload"]) == ["systemctl daemon-reload"]
    assert ops.daemon_reload([], []) == []
    assert ops.keepalived("debian", [], "active", ["keepalived"]) == [
        "keepalived -t -f /etc/keepalived/keepalived.conf",
        "systemctl reload keepalived.service",
    ]
    assert ops.keepalived("debian", [], "active", ["sshd"]) == []
    assert ops.restart_sshd("debian", [], True, ["sshd"]) == [
        "sshd -t",
        "systemctl restart ssh.service",
        PUBLISH,
    ]
    assert ops.clear_owed("keepalived") == "rm -f /var/lib/repo-cluster/pending/keepalived"


def test_a_unit_an_earlier_bundle_enabled_at_boot_is_retired_never_stopped():
    unit = "rbd-veeamrepo.service"
    enabled = {unit: UnitState("enabled", "active")}
    cmds = ops.retire_boot_units([unit], enabled)
    assert cmds == [
        "rm -f /etc/systemd/system/multi-user.target.wants/rbd-veeamrepo.service",
        "systemctl daemon-reload",
    ]
    assert not any("stop" in c for c in cmds)  # on the MASTER it carries the mounted volume
    assert ops.retire_boot_units([unit], {unit: UnitState("static", "active")}) == []


def test_an_image_without_exclusive_lock_is_named_with_the_command_that_fixes_it():
    ok = "rbd image 'veeamrepo':\n\tfeatures: layering, exclusive-lock\n"
    assert ops.image_feature_problem("rbd/veeamrepo", ok) is None
    bad = ops.image_feature_problem("rbd/veeamrepo", "\tfeatures: layering\n")
    assert bad and "rbd feature enable rbd/veeamrepo exclusive-lock" in bad
    assert "cannot reach" in (ops.image_feature_problem("rbd/veeamrepo", None) or "")
