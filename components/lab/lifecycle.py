"""The embedded lab's life: lab_up builds it, lab_down removes it, health and leftovers tell.

``lab_up(stack)`` builds, from ``Pulumi.<stack>.yaml``, everything a stack needs around its
VMs: the guest image (cached per machine), the bridge, the lab's Ceph and DNS server, vcsim
with the template, and the host agent that runs vcsim's powered-on VMs as QEMU VMs
(components/lab/hostd.py). With ``vms`` (the default, the path without the vSphere plugin) it
also makes the nodes' VMs in vcsim itself, from the rendered bundles and the lab's secrets,
and waits until each has booted and cloud-init is done; ``make lab`` with the plugin passes
``vms=False`` and ``pulumi up`` makes them. ``lab_down(stack)`` removes it all.

Topology of the sim stack (addresses from the stack file; all inside 198.18.0.0/15)::

    host: Fabric, ssh, Ceph mon + memstore osd, hostd (packages :8008), vcsim 127.0.0.1:8989
      | 198.18.50.1/24 (gateway; forwards nothing)
    +-+---------------------------- bridge br.sim ------------------------------+
    |    tap t.sim.repo1                             tap t.sim.repo2           |
    +------|-------------------------------------------|-----------------------+
    QEMU VM repo1 (TCG)                         QEMU VM repo2 (TCG)
      ens160 198.18.50.161/24                     ens160 198.18.50.162/24
      (+ VIP 198.18.50.160 on the MASTER)         (+ VIP on the MASTER)
      own kernel (krbd), systemd, cloud-init      own kernel (krbd), systemd, cloud-init
      from its guestinfo in vcsim                 from its guestinfo in vcsim
      /dev/rbd0 -> image rbd/veeamrepo (XFS "veeamrepo") on the host's Ceph

Made: .lab/<stack>/ (Ceph, named, the VMs' disks, hostd.log, secrets), /run/repo-cluster/
<stack>/ (the VMs' sockets and pids, Ceph and hostd pid files), .lab/vcsim, the operator key
(.lab/ssh/) when missing. The image stays in ~/.cache/repo-cluster/images.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import components.lab.agentctl as agentctl
import components.lab.ceph as labceph
import components.lab.dns as labdns
import components.lab.image as labimage
import components.lab.net as labnet
import components.lab.vcsim as labvcsim
from components.lab.net import LabError, run
from components.lab.plan import REPO, Lab, hostd_log, load_lab, stack_id
from components.lab.vms import make_node_vms

TOOLS = ("ip", "qemu-system-x86_64", "qemu-img", "ssh-keygen", "mkfs.xfs", *labceph.TOOLS)
Say = Callable[[str], None]


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (bridge, taps, QEMU, Ceph)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run scripts/install-deps")


# --------------------------------------------------------------------------- what is there


def _machine_names(lab: Lab) -> list[str]:
    vms = lab.runtime / "vms"
    return sorted(p.name for p in vms.iterdir()) if vms.is_dir() else []


def _taps(lab: Lab) -> list[str]:
    """The stack's taps: its nodes' and any other port of its bridge (a node since removed)."""
    named = [n.tap for n in lab.nodes if labnet.link_exists(n.tap)]
    return sorted(set(named) | set(labnet.links_of(lab.bridge)))


def leftovers(lab: Lab) -> list[str]:
    """What exists of this stack's lab, found by name (with or without its agent)."""
    found = [
        f"VM {name} (QEMU pid {lab.machine(name).pid()})"
        for name in _machine_names(lab)
        if lab.machine(name).running()
    ]
    pid = agentctl.pid(lab)
    if pid:
        found.append(f"host agent pid {pid}")
    found += [f"tap {t}" for t in _taps(lab)]
    if labnet.link_exists(lab.bridge):
        found.append(f"bridge {lab.bridge}")
    found += labceph.leftovers(lab)
    found += [str(p) for p in (lab.runtime, *lab.made_paths()) if p.exists()]
    return found


def health(lab: Lab) -> list[str]:
    """Why this stack's lab is not (completely) up; empty when it is. The VMs are vcsim's
    business (powered on or not), not the lab's."""
    problems: list[str] = []
    if not labnet.link_exists(lab.bridge):
        problems.append(f"bridge {lab.bridge} missing")
    if agentctl.pid(lab) is None:
        problems.append("the lab's host agent is not running")
    if labvcsim.running(labvcsim.STATE) is None:
        problems.append("vcsim is not running")
    if not labceph.healthy(lab):
        problems.append("the lab's Ceph is not running (or lost the image)")
    return problems


@contextmanager
def _locked(lab: Lab) -> Iterator[None]:
    """One lab-up/lab-down per stack at a time (an advisory lock on the stack file)."""
    with open(lab.stack_file, encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- up


def lab_up(stack: str, *, vms: bool = True, repo: Path = REPO, say: Say = print) -> bool:
    """Build the stack's lab (and, with ``vms``, its nodes' VMs). Idempotent: returns False
    when the lab was up already (only missing VMs are then made). On failure, removes what it
    made and re-raises."""
    lab = load_lab(stack, repo)
    _require_root_and_tools()
    with _locked(lab):
        if not health(lab):
            _dns_up(lab, repo, say)
            _template(lab, say)  # a new template named by the stack (an OS upgrade)
            if vms:
                make_node_vms(lab, repo, say)
            say(f"lab {stack} is up; nothing else to do")
            return False
        found = leftovers(lab)
        if found:
            say(f"lab {stack}: removing leftovers of an earlier lab: {', '.join(found)}")
            _teardown(lab, say)
        try:
            _build(lab, repo, say)
            if vms:
                make_node_vms(lab, repo, say)
        except BaseException:
            say(f"lab {stack}: lab-up failed, removing what it made")
            try:
                _teardown(lab, say)
            except LabError as exc:
                say(f"lab {stack}: cleanup after the failure was incomplete: {exc}")
            raise
    return True


def vcsim_binary() -> str:
    """vcsim from scripts/bootstrap-tools (built once from the Go module proxy)."""
    out = run([str(REPO / "scripts" / "bootstrap-tools"), "vcsim"], timeout=1800)
    return str(Path(out.stdout.strip()) / "vcsim")


def _build(lab: Lab, repo: Path, say: Say) -> None:
    image = labimage.ensure(say)
    lab.dir.mkdir(parents=True, exist_ok=True)
    lab.image_file.write_text(f"{image.dir}\n")
    pub = lab.key_file.with_name(lab.key_file.name + ".pub")
    if not lab.key_file.exists() or not pub.exists():
        made = not lab.key_file.parent.exists()
        lab.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if made:  # lab-down removes it again
            _made_key_dir(lab).write_text(f"{lab.key_file.parent}\n")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "repo-cluster-lab-operator",
             "-f", str(lab.key_file)])  # fmt: skip
        say(f"lab {lab.stack}: generated operator key {lab.key_file}")
    (lab.dir / "vms").mkdir(exist_ok=True)
    labnet.make_bridge(lab.bridge, lab.gateway)
    say(f"lab {lab.stack}: bridge {lab.bridge} {lab.gateway}")
    say(f"lab {lab.stack}: {labceph.up(lab)}")
    _dns_up(lab, repo, say)
    s = lab.settings
    if labvcsim.start(s, vcsim_binary(), labvcsim.STATE):
        say(f"lab {lab.stack}: vcsim started on {s.vsphere_server}")
    _template(lab, say)
    pid = agentctl.start(lab)
    say(f"lab {lab.stack}: host agent pid {pid} (image {image.dir.name}), log {hostd_log(lab)}")


def _template(lab: Lab, say: Say) -> None:
    """The template the stack clones, in vcsim, as an admin uploads one to a vCenter."""
    if labvcsim.ensure_template(lab.settings):
        say(f"lab {lab.stack}: template {lab.settings.template!r} created in vcsim")


def _made_key_dir(lab: Lab) -> Path:
    """Present when lab-up made the operator key's directory (it names it)."""
    return lab.dir / "made-operator-key"


# --------------------------------------------------------------------------- down


def lab_down(stack: str, *, repo: Path = REPO, say: Say = print) -> bool:
    """Remove everything the stack's lab made; safe to repeat. Returns whether anything was
    there to remove. Raises LabError naming anything that would not go."""
    lab = load_lab(stack, repo)
    _require_root_and_tools()
    with _locked(lab):
        if not leftovers(lab):
            _last_one_out(say)
            say(f"lab {stack}: nothing to remove")
            return False
        _teardown(lab, say)
        _last_one_out(say)
    say(f"lab {stack}: removed")
    return True


def _last_one_out(say: Say) -> None:
    """vcsim serves every lab stack: it stops with the last lab (its inventory lives in
    memory only)."""
    others = list(labnet.RUNTIME_ROOT.iterdir()) if labnet.RUNTIME_ROOT.is_dir() else []
    if others:
        return
    if labvcsim.running(labvcsim.STATE):
        labvcsim.stop(labvcsim.STATE)
        say("vcsim stopped (no lab left)")
    shutil.rmtree(labvcsim.STATE, ignore_errors=True)
    with suppress(OSError):
        labvcsim.STATE.parent.rmdir()


def _dns_up(lab: Lab, repo: Path, say: Say) -> None:
    done = labdns.up(lab, repo)
    if done:
        say(f"lab {lab.stack}: DNS: {done}")


def _teardown(lab: Lab, say: Say) -> None:
    if agentctl.stop(lab):
        say(f"lab {lab.stack}: stopped the host agent")
    stopped = [name for name in _machine_names(lab) if lab.machine(name).power_off()]
    if stopped:
        say(f"lab {lab.stack}: powered off {', '.join(stopped)}")
    _forget_vms(lab, say)
    if labdns.down(lab):
        say(f"lab {lab.stack}: stopped named")
    for tap in _taps(lab):
        labnet.delete_link(tap)
    labnet.delete_link(lab.bridge)
    if labceph.down(lab):
        say(f"lab {lab.stack}: stopped Ceph")
    shutil.rmtree(lab.runtime, ignore_errors=True)
    with suppress(OSError):
        labnet.RUNTIME_ROOT.rmdir()
    with suppress(OSError):
        key_dir = Path(_made_key_dir(lab).read_text().strip())
        shutil.rmtree(key_dir, ignore_errors=True)
        _made_key_dir(lab).unlink()
    for made in lab.made_paths():
        if made.is_dir():
            shutil.rmtree(made, ignore_errors=True)
        else:
            made.unlink(missing_ok=True)
    with suppress(OSError):
        lab.dir.rmdir()
    left = leftovers(lab)
    if left:
        raise LabError(f"lab {lab.stack}: could not remove: {', '.join(left)}")


def _forget_vms(lab: Lab, say: Say) -> None:
    """The stack's VMs in vcsim go with the lab (vcsim, shared by lab stacks, stays)."""
    if labvcsim.running(labvcsim.STATE) is None:
        return
    try:
        gone = labvcsim.remove_vms(lab.settings, stack_id(lab))
    except Exception as e:  # vcsim half-gone: its inventory dies with it anyway
        say(f"lab {lab.stack}: could not remove the VMs from vcsim: {e}")
        return
    if gone:
        say(f"lab {lab.stack}: removed {', '.join(gone)} from vcsim")
