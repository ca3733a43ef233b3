"""repo-cluster: stack settings -> RepoCluster -> stack outputs."""

from pathlib import Path

import pulumi

from components import preflight
from components.cluster import RepoCluster, RepoClusterArgs
from components.settings import ConfigError, load_pulumi

try:  # stop before any resource exists, listing every problem
    settings = load_pulumi()
    if settings.preflight:
        preflight.run(settings, f"{pulumi.get_project()}/{pulumi.get_stack()}")
except (ConfigError, preflight.PreflightError) as exc:
    raise pulumi.RunError(str(exc)) from None

cluster = RepoCluster("repo-cluster", RepoClusterArgs(settings, root=Path(__file__).parent))
for name, value in cluster.outputs.items():
    pulumi.export(name, value)
