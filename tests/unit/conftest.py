"""Unit-tier fixtures over the Pulumi mocks of :mod:`tests.unit.pulumi_mocks`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.pulumi_mocks import Run, _resolve, _run_stack, _stack_config


@pytest.fixture(scope="session")
def stack_config() -> Callable[..., dict[str, Any]]:
    """``stack_config(stack, **overrides)``: the config map the engine would hand the program."""
    return _stack_config


@pytest.fixture(scope="session")
def run_stack() -> Callable[..., Run]:
    """``run_stack(config, stack=..., secret_keys=..., template_disk_gb=..., state=...)``."""
    return _run_stack


@pytest.fixture(scope="session")
def resolve() -> Callable[[Any], tuple[Any, bool]]:
    """``resolve(output)`` -> (value, is_secret)."""
    return _resolve
