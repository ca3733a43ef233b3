"""repo-cluster: stack settings -> RepoCluster -> stack outputs."""

from pathlib import Path

import pulumi

from components.bundle import authorized_keys
from components.bundle.guestinfo import stack_marker
from components.cluster import RepoCluster, RepoClusterArgs
from components.config import ConfigError, deploy_problems, load_pulumi
from components.vcenter import preflight

ROOT = Path(__file__).resolve().parent  # the real project, also when run from a linked copy

try:  # stop before any resource exists, listing every problem
    settings = load_pulumi()
    if problems := deploy_problems(settings):
        raise ConfigError(problems)
    operator_keys = authorized_keys(settings, ROOT, required=True)
    # the nodes whose VM exists (changed one after the other), the VMs to adopt
    found = (
        preflight.run(settings, stack_marker(pulumi.get_project(), pulumi.get_stack()))
        if settings.preflight
        else None
    )
except (ConfigError, preflight.PreflightError) as exc:
    raise pulumi.RunError(str(exc)) from None

cluster = RepoCluster(
    "repo-cluster",
    RepoClusterArgs(
        settings,
        ROOT,
        operator_keys,
        found.existing if found else None,
        found.adopted if found else {},
        found.masters if found else frozenset(),
    ),
)
for name, value in cluster.outputs.items():
    pulumi.export(name, value)
