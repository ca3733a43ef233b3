"""lab-up / lab-down as commands: refusal outside 198.18.0.0/15, complete removal (also of a
busy lab, and twice), recovery from leftovers, cleanup after a failed lab-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import lab as labmod
from components.lab import Lab, node_exec, node_run
from components.lab import net as labnet
from components.lab import node as labnode
from components.lab import procs as labprocs
from tests.lab.labkit import (
    ROOT,
    STACK,
    fab,
    keepalived_conf,
    lab_daemons,
    pid_alive,
    rbd_unit,
    sh,
    wait_for,
    what_is_left,
    write_ceph_client,
)

pytestmark = pytest.mark.lab


def _machine() -> dict[str, str]:
    """What a lab could have touched, as the system reports it."""
    return {
        "netns": sh("ip", "netns", "list").stdout,
        "links": sh("ip", "-o", "link", "show").stdout,
        "loops": sh("losetup", "-a").stdout,
        "mounts": Path("/proc/self/mountinfo").read_text(),
        "runtime": str(sorted(labnet.RUNTIME_ROOT.rglob("*")))
        if labnet.RUNTIME_ROOT.exists()
        else "",
        "lab_dirs": str(sorted((ROOT / ".lab").glob("*"))),
    }


def test_lab_up_refuses_a_stack_outside_the_test_net(no_lab: Lab) -> None:
    before = _machine()
    out = fab("lab-up", "--stack", "lab")
    assert out.returncode != 0
    assert "198.18.0.0/15" in out.stderr and "10.2.50.161" in out.stderr, out.stderr
    assert "Nothing was created" in out.stderr
    assert _machine() == before
    down = fab("lab-down", "--stack", "lab")
    assert down.returncode != 0 and "198.18.0.0/15" in down.stderr
    assert _machine() == before


def test_lab_down_removes_a_busy_lab_and_can_run_again(no_lab: Lab) -> None:
    plan = no_lab
    s = plan.settings
    key_existed = plan.key_file.exists()
    targets = (Path("/etc/ceph"), Path("/root/.ssh"), Path(s.mount_point))
    absent_before = [p for p in targets if not p.exists()]
    up = fab("lab-up", "--stack", STACK)
    assert up.returncode == 0, up.stderr
    one, two = plan.nodes[:2]
    # make it busy: keepalived running in one node, the image mapped in both (rbd-fuse and a
    # loop device each) and mounted in the other, a stray process in each
    conf = keepalived_conf(plan, one, two)
    node_exec(STACK, one.name, ["tee", "/etc/keepalived/keepalived.conf"], input=conf, check=True)
    assert node_exec(STACK, one.name, ["systemctl", "start", "keepalived"]).returncode == 0
    rbd, body = rbd_unit(plan)
    for n in plan.nodes:
        write_ceph_client(plan, n.name)
        node_exec(STACK, n.name, ["tee", f"/etc/systemd/system/{rbd}"], input=body, check=True)
        started = node_exec(STACK, n.name, ["systemctl", "start", rbd])
        assert started.returncode == 0, started.stderr
    mount = node_run(STACK, two.name, f"mount -L {s.xfs_label} {s.mount_point}")
    assert mount.returncode == 0, mount.stderr
    for n in plan.nodes:
        node_run(STACK, n.name, "setsid -f sleep 600 </dev/null >/dev/null 2>&1", check=True)
    pids = labprocs.pids_in(plan.ns_files())
    assert len(pids) >= 9, pids  # 2 sshd, keepalived (+ children), 2 rbd-fuse (+ watchdog), 2 sleep
    assert "/run/lab/rbd/" in sh("losetup", "-a").stdout
    assert lab_daemons()

    down = fab("lab-down", "--stack", STACK)
    assert down.returncode == 0, down.stderr
    assert what_is_left(plan) == []
    assert [p for p in pids if pid_alive(p)] == []
    if not key_existed:
        assert not plan.key_file.parent.exists(), "lab-down kept the key dir it created"
    for path in absent_before:  # bind targets lab-up had to create on the host
        assert not path.exists() or any(path.iterdir()), f"lab-down left the empty {path}"

    again = fab("lab-down", "--stack", STACK)
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


def test_lab_up_recovers_from_leftovers(no_lab: Lab) -> None:
    plan = no_lab
    first = plan.nodes[0]
    # what a crashed lab-up could leave: the node's namespace and a bare bridge, no state file
    assert sh("ip", "netns", "add", first.name).returncode == 0
    assert sh("ip", "link", "add", plan.bridge, "type", "bridge").returncode == 0
    up = fab("lab-up", "--stack", STACK)
    assert up.returncode == 0, up.stderr
    assert "leftovers" in up.stdout
    hostname = node_exec(STACK, first.name, ["hostname"])
    assert hostname.stdout.strip() == first.name
    wait_for(
        "sshd in every node",
        lambda: all(
            node_exec(STACK, n.name, ["systemctl", "is-active", "ssh"]).returncode == 0
            for n in plan.nodes
        ),
    )


def test_failed_lab_up_removes_what_it_made(no_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = no_lab
    real_start = labnode.start_sshd
    started: list[str] = []

    def start_then_fail(lab: Lab, node: labmod.LabNode) -> int:
        if started:
            raise labmod.LabError(f"injected failure before sshd on {node.name}")
        started.append(node.name)
        return real_start(lab, node)

    monkeypatch.setattr(labnode, "start_sshd", start_then_fail)
    messages: list[str] = []
    with pytest.raises(labmod.LabError, match="injected failure"):
        labmod.lab_up(STACK, say=messages.append)
    assert started == [plan.nodes[0].name]
    assert any("removing what it made" in m for m in messages), messages
    assert what_is_left(plan) == []
