"""Converge timing on the lab: two nodes in parallel vs one node, fresh and no-op.

    .venv/bin/python bench/converge.py [N]      (root; N runs per case, default 3)

Each run builds a fresh sim lab (`components.lab.lab_up`: two VMs booted from their
guestinfo), converges it (each VM trusted by the host key it published, as `fab converge
--lab-secrets` does), converges it again (no-op), and removes it. Cases: both nodes (the
thread pool, keepalived started in priority order) and repo1 alone. Prints the median of each
case and the ratio two/one: 1.0 would be perfect parallelism. Figures only, never an
assertion. (The lab's VMs are emulated: figures are 20-50 times a real node's.)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import lab
from components.bundle import authorized_keys, render_cluster
from components.cli.common import published_keys
from components.config import PROJECT_ROOT as ROOT
from components.converge import fleet
from components.converge.ssh import Access
from components.lab import secrets as labsecrets

STACK = "sim"


def quiet(_: str) -> None:
    pass


def one_run(only: list[str]) -> tuple[float, float]:
    """(fresh converge seconds, no-op converge seconds) on a fresh lab."""
    lab.lab_down(STACK, say=quiet)
    lab.lab_up(STACK, say=quiet)
    try:
        s = lab.load_lab(STACK).settings
        secrets = labsecrets.load_or_create(s, STACK, ROOT)
        bundles = render_cluster(s, secrets, authorized_keys(s, ROOT))
        keys = published_keys(s, STACK, print)
        access = Access.for_stack(
            s, ROOT, secrets.public_host_keys, False, stack=STACK, published_keys=keys
        )
        timings = []
        for _ in ("fresh", "no-op"):
            start = time.perf_counter()
            results = fleet.converge_cluster(s, bundles, access, only=only, report=quiet)
            timings.append(time.perf_counter() - start)
            errors = [r.error for r in results.values() if r.error]
            if errors:
                raise SystemExit(f"converge failed: {errors}")
        return timings[0], timings[1]
    finally:
        lab.lab_down(STACK, say=quiet)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cases = {"1 node (repo1)": ["repo1"], "2 nodes (parallel)": ["repo1", "repo2"]}
    fresh: dict[str, list[float]] = {}
    noop: dict[str, list[float]] = {}
    for i in range(runs):
        for label, only in cases.items():
            f, n = one_run(only)
            fresh.setdefault(label, []).append(f)
            noop.setdefault(label, []).append(n)
            print(f"run {i + 1}/{runs} {label}: fresh {f:.2f}s, no-op {n:.2f}s", flush=True)
    one, two = cases
    print(f"\nconverge, median of {runs} run(s)   {one:>16} {two:>20}   ratio 2/1")
    for name, table in (("fresh lab", fresh), ("no-op", noop)):
        a, b = statistics.median(table[one]), statistics.median(table[two])
        print(f"{name:<32} {a:>15.2f}s {b:>19.2f}s   {b / a:>8.2f}")


if __name__ == "__main__":
    main()
