"""What the lab costs: its bring-up, each VM's first boot, its teardown, a VM's memory.

    .venv/bin/python bench/lab.py [N] [--fresh-image]   (root; N runs, default 2)

Per run, from no lab: `lab-up --no-vms` (bridge, Ceph, DNS, vcsim, the host agent; the guest
image from the cache), then both nodes' VMs made in vcsim as lab-up makes them, timed per VM
from the power-on: QEMU running, SSH answering (the banner), the guest agent answering,
cloud-init done; the resident memory of each QEMU once booted; then lab-down. With
``--fresh-image`` the first run builds the guest image anew (the cache entry is removed
first). Prints medians with min and max over the runs; never asserts.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import lab
from components.bundle import authorized_keys, render_cluster
from components.bundle.guestinfo import guestinfo
from components.config import PROJECT_ROOT as ROOT
from components.lab import image as labimage
from components.lab import node_exec
from components.lab import secrets as labsecrets
from components.lab import vcsim as labvcsim
from components.lab.plan import stack_id

STACK = "sim"


def quiet(_: str) -> None:
    pass


def banner(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=1) as s:
            return s.recv(4) == b"SSH-"
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(fresh: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    lab.lab_down(STACK, say=quiet)
    if fresh:
        shutil.rmtree(labimage.current().dir, ignore_errors=True)
    t = time.monotonic()
    lab.lab_up(STACK, vms=False, say=quiet)
    out["lab-up (no VMs)"] = [time.monotonic() - t]
    plan = lab.load_lab(STACK)
    s = plan.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
    marks: dict[str, dict[str, float]] = {n.name: {} for n in plan.nodes}
    t0 = time.monotonic()
    for n in plan.nodes:
        b = bundles[n.name]
        labvcsim.ensure_vm(s, n.name, guestinfo(b.user_data, b.meta_data, stack_id(plan)))
    while any(len(m) < 4 for m in marks.values()) and time.monotonic() - t0 < 900:
        for n in plan.nodes:
            m, machine = marks[n.name], plan.machine(n.name)
            now = time.monotonic() - t0
            if "qemu" not in m and machine.running():
                m["qemu"] = now
            if "qemu" in m and "ssh" not in m and banner(str(n.address.ip)):
                m["ssh"] = now
            if "qemu" in m and "agent" not in m and machine.guest_ready():
                m["agent"] = now
            if "agent" in m and "cloud-init" not in m:
                r = node_exec(STACK, n.name, ["cloud-init", "status"], timeout=60)
                if r.stdout.split()[-1:] == ["done"]:
                    m["cloud-init"] = time.monotonic() - t0
        time.sleep(0.5)
    for n in plan.nodes:
        for what, at in marks[n.name].items():
            out.setdefault(f"VM power-on -> {what}", []).append(at)
        pid = plan.machine(n.name).pid()
        if pid:
            out.setdefault("QEMU resident memory, MiB", []).append(rss_mib(pid))
    t = time.monotonic()
    lab.lab_down(STACK, say=quiet)
    out["lab-down"] = [time.monotonic() - t]
    return out


def main(argv: list[str]) -> int:
    runs = int(next((a for a in argv if a.isdigit()), "2"))
    fresh = "--fresh-image" in argv
    merged: dict[str, list[float]] = {}
    for i in range(runs):
        for k, v in one_run(fresh and i == 0).items():
            merged.setdefault(k, []).extend(v)
    s = lab.load_lab(STACK).settings
    vm = f"TCG, {s.cpus} vCPU, {s.memory_mb} MB each"
    print(f"bench/lab.py: {runs} run(s), 2 VMs booting at once ({vm})")
    print(f"{'':<36} {'median':>8} {'min':>8} {'max':>8}")
    for k, v in merged.items():
        unit = "" if "MiB" in k else "s"
        print(
            f"{k:<36} {statistics.median(v):>7.1f}{unit} {min(v):>7.1f}{unit} "
            f"{max(v):>7.1f}{unit}   ({len(v)} samples)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
