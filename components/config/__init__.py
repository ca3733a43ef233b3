"""The bottom layer: the config key table, the settings model, loading and validation.

Every other package reads a stack's settings through this one model and imports nothing of
this package but what is re-exported here.
"""

from components.config.keys import KEYS, NAMESPACE, Key
from components.config.load import load, load_pulumi, load_stack_file, pulumi_config, stack_file
from components.config.model import (
    AUTH_PASS,
    OS_FAMILIES,
    PROJECT_ROOT,
    TEST_NET,
    ConfigError,
    Node,
    Secret,
    Settings,
)
from components.config.validate import deploy_problems

__all__ = [
    "AUTH_PASS",
    "KEYS",
    "NAMESPACE",
    "OS_FAMILIES",
    "PROJECT_ROOT",
    "TEST_NET",
    "ConfigError",
    "Key",
    "Node",
    "Secret",
    "Settings",
    "deploy_problems",
    "load",
    "load_pulumi",
    "load_stack_file",
    "pulumi_config",
    "stack_file",
]
