"""A rolling replace on the lab, timed: how long the VIP goes unanswered while `pulumi up`
replaces every node's VM, one at a time, for a new template (an OS upgrade).

    .venv/bin/python bench/rolling.py [N]   (root and the vSphere plugin; N replaces, default 2)

Builds the lab of a copy of the sim stack named ``roll`` (Pulumi.roll.yaml, written here and
removed at the end with its lab and state) with `make lab`, then N times: the stack file names
the other template (repo-template-next, then repo-template again) and `make lab` runs again,
while an ssh probe of the VIP (the shared host key only) starts every 2 s (the lab's pace: its
VMs are emulated). Per run: the whole `make lab`, the longest time without an answer on the VIP
(between the first and last answers), and the VIP holders in the order they answered (one
move: the MASTER's VM goes last). Prints median, min, max; never asserts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import lab
from components.cli import stack_state
from components.config import PROJECT_ROOT as ROOT
from components.converge.probe import VipProber, VipSsh
from components.lab import deploy

STACK = "roll"
STACK_FILE = ROOT / f"Pulumi.{STACK}.yaml"
TEMPLATES = ("repo-template-next", "repo-template")
PROBE = 2.0  # seconds between two ssh probes of the VIP (each login costs an emulated node)
LOGIN = 20.0  # seconds an ssh login to an emulated node may take


def write_stack(template: str) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text(encoding="utf-8"))
    doc["config"]["repo-cluster:template"] = template
    text = "# written by bench/rolling.py; removed at its end\n" + yaml.safe_dump(doc)
    STACK_FILE.write_text(text, encoding="utf-8")


def make_lab() -> float:
    """`make lab STACK=roll`; its duration (SystemExit when it fails)."""
    started = time.monotonic()
    env = {**os.environ, "STACK": STACK, "REPO_CLUSTER_PLUGIN_DOWNLOAD": "0"}
    out = subprocess.run(["make", "lab"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"make lab failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return time.monotonic() - started


def vip_ssh() -> VipSsh:
    """ssh to the VIP trusting only the shared host keys in the deployed stack's state."""
    s, host_keys, _ = stack_state.load(STACK, deploy.project_dir(STACK), deploy.environment())
    key = str(s.ssh_key_path(ROOT))
    public = [k.public for k in host_keys]
    return VipSsh.make(str(s.vip.ip), s.ssh_user, key, public, login=LOGIN)


def figures(xs: list[float]) -> str:
    if not xs:
        return "no successful run"
    return f"{statistics.median(xs):>8.1f} {min(xs):>8.1f} {max(xs):>8.1f}   ({len(xs)} runs)"


def holder_runs(prober: VipProber) -> list[str]:
    """Who answered on the VIP, in order, each run of the same host once."""
    hosts = [a.host for a in sorted(prober.answers, key=lambda a: a.t) if a.host]
    return [h for i, h in enumerate(hosts) if i == 0 or h != hosts[i - 1]]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    write_stack(TEMPLATES[1])
    durations: list[float] = []
    outages: list[float] = []
    try:
        lab.lab_down(STACK, say=lambda _: None)
        print(f"first build: make lab took {make_lab():.0f}s", flush=True)
        ssh = vip_ssh()
        for i in range(runs):
            write_stack(TEMPLATES[i % 2])
            with VipProber(ssh, time.monotonic(), PROBE, 4) as prober:
                took = make_lab()
            durations.append(took)
            outages.append(prober.outage())
            print(
                f"rolling replace {i + 1}/{runs} (template {TEMPLATES[i % 2]}): make lab "
                f"{took:.0f}s, longest VIP outage {outages[-1]:.1f}s, "
                f"VIP answered by {' -> '.join(holder_runs(prober))}",
                flush=True,
            )
    finally:
        subprocess.run(
            ["make", "lab-down"], cwd=ROOT, env={**os.environ, "STACK": STACK}, capture_output=True
        )
        lab.lab_down(STACK, say=lambda _: None)
        STACK_FILE.unlink(missing_ok=True)
    print(f"\n{'seconds':<52} {'median':>8} {'min':>8} {'max':>8}")
    print(f"{'rolling replace of both VMs: make lab':<52} {figures(durations)}")
    label = f"rolling replace: longest VIP outage (probe every {PROBE:g}s)"
    print(f"{label:<52} {figures(outages)}")


if __name__ == "__main__":
    main()
