"""`pulumi up` timing on vcsim, VM work only: 2 nodes vs 4 nodes.

    .venv/bin/python bench/pulumi_up.py [N]      (N runs per case, default 3)

There is no 1-node case: the settings refuse fewer than 2 nodes (a failover pair, see
components/config/validate.py). So the cases are the sim stack as it is (repo1, repo2) and the
same stack with repo3/repo4 (198.18.50.163/.164, priorities 99/98) added; the ratio 4/2 of the
medians tells how the time grows with the node count (2.0: linear; the lab runs
--parallel 1, because vcsim loses the provider's updates when two VMs are cloned at once).

Each run starts a fresh vcsim on a free 127.0.0.1 port holding the template
(components.lab.vcsim), copies the project to a temp dir with a file backend there (no
PULUMI_HOME: Pulumi's own plugin cache), turns converge off and drops the DNS record, then
times with --parallel 1: preview (nothing deployed yet), up, a no-op up, destroy. Prints the
median [min-max] of each step. Figures only, never an assertion. Needs the tools
(scripts/bootstrap-tools) and the vSphere plugin (scripts/vsphere-plugin).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.bundle import hostkeys
from components.bundle.render import TEMPLATE_FOLDERS
from components.config import PROJECT_ROOT as ROOT
from components.config import load_stack_file
from components.lab import deploy
from components.lab import vcsim as labvcsim

STACK = "sim"
PROJECT_FILES = ("Pulumi.yaml", f"Pulumi.{STACK}.yaml", "__main__.py", "components")
PARALLEL = ("--parallel", "1")
EXTRA_NODES = (("repo3", "198.18.50.163", 99), ("repo4", "198.18.50.164", 98))
STEPS = {
    "preview": ("preview",),
    "up": ("up", "--yes", "--skip-preview"),
    "no-op up": ("up", "--yes", "--skip-preview", "--expect-no-changes"),
    "destroy": ("destroy", "--yes", "--skip-preview"),
}
CASES = {"2 nodes": 2, "4 nodes": 4}


def tools_bin() -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts/bootstrap-tools"), "pulumi", "pulumi-language-python", "vcsim"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def base_env(bin_dir: Path) -> dict[str, str]:
    return deploy.cli_environment(bin_dir)


def check_plugin(env: dict[str, str]) -> None:
    text = (ROOT / "scripts/tool-versions").read_text(encoding="utf-8")
    version = re.search(r"^VSPHERE_PROVIDER_VERSION=(\S+)$", text, re.MULTILINE)
    assert version, "scripts/tool-versions has no VSPHERE_PROVIDER_VERSION"
    v = version.group(1)
    out = subprocess.run(
        ["pulumi", "plugin", "ls", "--json"], env=env, capture_output=True, text=True, check=False
    )
    plugins = json.loads(out.stdout or "null") or []
    cached = any(p.get("name") == "vsphere" and p.get("version") == v for p in plugins)
    if not cached and not shutil.which("pulumi-resource-vsphere", path=env["PATH"]):
        raise SystemExit(
            f"no pulumi-resource-vsphere {v}: pulumi plugin install resource vsphere {v} "
            f"--file pulumi-resource-vsphere-v{v}-linux-amd64.tar.gz (README)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.dir = base / "project"
        self.dir.mkdir()
        for name in (*PROJECT_FILES, *TEMPLATE_FOLDERS):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, self.dir / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.dir / name)
        (self.dir / ".venv").symlink_to(ROOT / ".venv")
        (base / "state").mkdir()
        self.env = {
            **env,
            "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
            "PULUMI_STACK": STACK,
            "PULUMI_CONFIG_PASSPHRASE": "bench-only-passphrase",
        }

    def pulumi(self, *args: str) -> None:
        out = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"pulumi {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")


def prepare(base: Path, env: dict[str, str], server: str, nodes: int) -> Project:
    p = Project(base, env)
    key = next(k for k in hostkeys.generate("operator@bench") if k.type == "ed25519")
    (base / "operator").write_text(key.private)
    (base / "operator.pub").write_text(key.public + "\n")
    p.pulumi("stack", "init", STACK, "--no-select")
    p.pulumi("config", "rm", "repo-cluster:dnsServer")
    pairs = [
        f"vsphere:vsphereServer={server}",
        f"repo-cluster:sshKeyFile={base / 'operator'}",
        "repo-cluster:converge=false",
    ]
    for i, (name, ip, priority) in enumerate(EXTRA_NODES[: nodes - 2], start=2):
        pairs += [
            f"repo-cluster:nodes[{i}].name={name}",
            f"repo-cluster:nodes[{i}].ip={ip}",
            f"repo-cluster:nodes[{i}].priority={priority}",
        ]
    p.pulumi("config", "set-all", "--path", *[a for pair in pairs for a in ("--plaintext", pair)])
    return p


def one_run(bin_dir: Path, env: dict[str, str], nodes: int) -> dict[str, float]:
    """Seconds of each step on a fresh vcsim and a fresh stack of ``nodes`` nodes."""
    with tempfile.TemporaryDirectory(prefix="bench-pulumi-up-") as tmp:
        base = Path(tmp)
        server = f"127.0.0.1:{free_port()}"
        sim = load_stack_file(ROOT / f"Pulumi.{STACK}.yaml")
        s = dataclasses.replace(sim, vsphere_server=server)
        state = base / "vcsim"
        try:
            labvcsim.start(s, str(bin_dir / "vcsim"), state)
            labvcsim.ensure_template(s)
            project = prepare(base, env, server, nodes)
            timings = {}
            for step, args in STEPS.items():
                start = time.perf_counter()
                project.pulumi(*args, *PARALLEL)
                timings[step] = time.perf_counter() - start
            return timings
        finally:
            labvcsim.stop(state)


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}s [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    bin_dir = tools_bin()
    env = base_env(bin_dir)
    check_plugin(env)
    table: dict[str, dict[str, list[float]]] = {c: {s: [] for s in STEPS} for c in CASES}
    for i in range(runs):
        for case, nodes in CASES.items():
            timings = one_run(bin_dir, env, nodes)
            for step, seconds in timings.items():
                table[case][step].append(seconds)
            shown = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
            print(f"run {i + 1}/{runs} {case}: {shown}", flush=True)
    two, four = CASES
    print(f"\npulumi --parallel 1 on vcsim, median [min-max] of {runs} run(s), VM work only")
    print(f"{'step':<10} {two:>24} {four:>24}   ratio 4/2")
    for step in STEPS:
        a, b = table[two][step], table[four][step]
        ratio = statistics.median(b) / statistics.median(a)
        print(f"{step:<10} {cell(a):>24} {cell(b):>24}   {ratio:>8.2f}")
    print("(no 1-node case: the settings refuse fewer than 2 nodes, so 4 vs 2 nodes)")


if __name__ == "__main__":
    main()
