"""lab-up / lab-down as commands: refusal outside 198.18.0.0/15, complete removal (also of a
busy lab with VMs running, and twice), recovery from leftovers, cleanup after a failed
lab-up, and the host agent following vcsim (power off, power on, destroy).

These make and remove labs of their own (`no_lab`): they run after the modules that share
the sim lab. Most use `lab-up --no-vms` (the lab without its nodes' VMs: no boot to wait for)
and power a VM on in vcsim themselves where a running VM matters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import lab as labmod
from components.bundle.guestinfo import guestinfo
from components.lab import Lab, agentctl
from components.lab import vcsim as labvcsim
from components.lab.plan import stack_id
from tests.lab.labkit import ROOT, STACK, fab, qemu_processes, sh, wait_for, what_is_left

pytestmark = pytest.mark.lab


def _machine() -> dict[str, str]:
    """What a lab could have touched, as the system reports it."""
    return {
        "links": sh("ip", "-o", "link", "show").stdout,
        "qemu": str(qemu_processes()),
        "mounts": Path("/proc/self/mountinfo").read_text(),
        "lab_dirs": str(sorted((ROOT / ".lab").glob("*"))),
    }


def _power_on_a_vm(plan: Lab, name: str) -> None:
    """A VM of the stack in vcsim, powered on (guestinfo that boots nothing in particular):
    the host agent runs it as a QEMU VM."""
    extra = guestinfo("#cloud-config\n", f"instance-id: {name}\n", stack_id(plan))
    labvcsim.ensure_vm(plan.settings, name, extra)


def test_lab_up_refuses_a_stack_that_is_not_a_lab(no_lab: Lab) -> None:
    before = _machine()
    out = fab("lab-up", "--stack", "lab")
    assert out.returncode != 0
    assert "not a lab stack" in out.stderr and "repo-cluster:lab: true" in out.stderr, out.stderr
    assert "Nothing was created" in out.stderr
    assert _machine() == before
    down = fab("lab-down", "--stack", "lab")
    assert down.returncode != 0 and "repo-cluster:lab: true" in down.stderr
    assert _machine() == before


def test_the_host_agent_follows_vcsim(no_lab: Lab) -> None:
    """Powered on in vcsim: a QEMU VM; its QEMU killed: powered off in vcsim; powered on
    again: the same disk; destroyed in vcsim: the VM and its disk are gone."""
    plan = no_lab
    up = fab("lab-up", "--stack", STACK, "--no-vms")
    assert up.returncode == 0, up.stderr
    assert qemu_processes() == []
    name = plan.nodes[0].name
    _power_on_a_vm(plan, name)
    wait_for("the agent to start the VM", lambda: plan.machine(name).running(), 30)
    disks = plan.vm_disks()
    assert len(disks) == 1
    plan.machine(name).power_off()  # the plug pulled under the agent
    wait_for(
        "vcsim to show the VM powered off",
        lambda: not labvcsim.power_state(plan.settings, name),
        30,
    )
    labvcsim.set_power(plan.settings, name, True)
    wait_for("the agent to start it again", lambda: plan.machine(name).running(), 30)
    assert plan.vm_disks() == disks  # the same disk: a power cycle, not a new VM
    gone = labvcsim.remove_vms(plan.settings, stack_id(plan))
    assert gone == [name]
    wait_for("the agent to stop it", lambda: not plan.machine(name).running(), 30)
    wait_for("its disk to go", lambda: plan.vm_disks() == [], 30)
    log = (plan.dir / "hostd.log").read_text()
    for said in ("powered on in vcsim", "QEMU exited; powering the VM off", "destroyed in vcsim"):
        assert said in log, log


def test_lab_down_removes_a_busy_lab_and_can_run_again(no_lab: Lab) -> None:
    plan = no_lab
    key_existed = plan.key_file.exists()
    up = fab("lab-up", "--stack", STACK, "--no-vms")
    assert up.returncode == 0, up.stderr
    for n in plan.nodes:
        _power_on_a_vm(plan, n.name)
    wait_for(
        "every VM running",
        lambda: all(plan.machine(n.name).running() for n in plan.nodes),
        60,
    )
    assert len(qemu_processes()) == len(plan.nodes)
    assert agentctl.pid(plan) is not None

    down = fab("lab-down", "--stack", STACK)
    assert down.returncode == 0, down.stderr
    assert what_is_left(plan) == []
    assert qemu_processes() == []
    if not key_existed:
        assert not plan.key_file.parent.exists(), "lab-down kept the key dir it created"

    again = fab("lab-down", "--stack", STACK)
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


def test_lab_up_recovers_from_leftovers(no_lab: Lab) -> None:
    plan = no_lab
    # what a crashed lab-up could leave: a bare bridge and a tap, no agent, no Ceph
    assert sh("ip", "link", "add", plan.bridge, "type", "bridge").returncode == 0
    tap = plan.nodes[0].tap
    assert sh("ip", "tuntap", "add", "dev", tap, "mode", "tap").returncode == 0
    assert sh("ip", "link", "set", tap, "master", plan.bridge).returncode == 0
    up = fab("lab-up", "--stack", STACK, "--no-vms")
    assert up.returncode == 0, up.stderr
    assert "leftovers" in up.stdout
    assert labmod.health(plan) == []


def test_failed_lab_up_removes_what_it_made(no_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = no_lab

    def fail(lab: Lab) -> int:
        raise labmod.LabError("injected failure before the host agent")

    monkeypatch.setattr(agentctl, "start", fail)
    messages: list[str] = []
    with pytest.raises(labmod.LabError, match="injected failure"):
        labmod.lab_up(STACK, vms=False, say=messages.append)
    assert any("removing what it made" in m for m in messages), messages
    assert what_is_left(plan) == []
