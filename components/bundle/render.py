"""The Jinja2 environment every node file is rendered with.

Everything a node gets is a template under ``node/``: its config files in ``node/files/``, the
scripts that run on it in ``node/scripts/``, its first-boot documents in ``node/cloud-init/``.
Every template sees ``paths`` (:data:`components.bundle.paths.PATHS`), so no template spells a
node path of its own. StrictUndefined: a misspelt variable is an error, never an empty string.
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from typing import Any

import jinja2

from components.bundle.paths import PATHS
from components.config.model import PROJECT_ROOT as ROOT

# relative to the project root; a copy of the project needs these beside components/
TEMPLATE_FOLDERS = ("node/files", "node/scripts", "node/cloud-init")
TEMPLATE_DIRS = tuple(ROOT / folder for folder in TEMPLATE_FOLDERS)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    # a YAML scalar that means exactly this string (JSON strings are YAML)
    env.filters["yamlstr"] = lambda v: json.dumps(str(v))
    env.globals["paths"] = PATHS
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
