"""repo-cluster: stack settings -> RepoCluster -> stack outputs."""

from pathlib import Path

import pulumi

from components.cluster import RepoCluster, RepoClusterArgs
from components.settings import ConfigError, load_pulumi

try:
    settings = load_pulumi()
except ConfigError as exc:  # stop before any resource exists, listing every problem
    raise pulumi.RunError(str(exc)) from None

cluster = RepoCluster("repo-cluster", RepoClusterArgs(settings, root=Path(__file__).parent))
for name, value in cluster.outputs.items():
    pulumi.export(name, value)
