"""The first-boot documents (user-data, meta-data) are YAML 1.1 to cloud-init: a value written
unquoted may change type (``no`` a boolean, ``null`` nothing, ``1.5`` a number). Every value the
templates render is a quoted YAML string (``yamlstr``), so even values the config validation
refuses (built here past it) round-trip through yaml.safe_load as the strings they are, and
cloud-init's own schema and VMware datasource take them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.bundle import Secrets, render_node
from components.bundle.render import TEMPLATE_DIRS
from tests.render.renderkit import AUTHORIZED, variant

pytestmark = pytest.mark.render

# what the templates write as YAML on purpose: booleans and the network config's version
LITERALS = {
    ("manage_etc_hosts",),
    ("ssh_deletekeys",),
    ("disable_root",),
    ("apt", "preserve_sources_list"),
    ("network", "version"),
}


def leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(doc, dict):
        return [((*path, k), k) for k in doc] + [
            leaf for k, v in doc.items() for leaf in leaves(v, (*path, k))
        ]
    if isinstance(doc, list):
        return [leaf for i, v in enumerate(doc) for leaf in leaves(v, (*path, i))]
    return [(path, doc)]


@pytest.mark.parametrize("family", ["el7", "debian"])
@pytest.mark.parametrize(("names", "interface"), [(("no", "null"), "1.5"), (("on", "123"), "true")])
def test_values_yaml_would_retype_stay_strings(
    family: str, names: tuple[str, str], interface: str, tmp_path: Path
) -> None:
    s = variant("lab", family)
    nodes = tuple(dataclasses.replace(n, name=m) for n, m in zip(s.nodes, names, strict=True))
    s = dataclasses.replace(s, nodes=nodes, interface=interface)
    node = s.nodes[0]
    bundle = render_node(s, node, Secrets.resolve(s), AUTHORIZED)
    user, meta = yaml.safe_load(bundle.user_data), yaml.safe_load(bundle.meta_data)
    for path, value in leaves(user) + leaves(meta):
        if path not in LITERALS:
            assert isinstance(value, str), (path, value)
    fqdn = f"{node.name}.{s.domain}"
    assert (user["hostname"], user["fqdn"]) == (node.name, fqdn)
    assert (meta["local-hostname"], meta["instance-id"]) == (node.name, fqdn)
    assert list(meta["network"]["ethernets"]) == [interface]
    ethernet = meta["network"]["ethernets"][interface]
    assert ethernet["match"]["name"] == interface
    assert ethernet["addresses"] == [str(s.node_address(node))]
    assert {w["owner"] for w in user["write_files"]} == {"root:root"}
    assert all(re.fullmatch(r"0[0-7]{3}", w["permissions"]) for w in user["write_files"])


def test_every_value_the_first_boot_templates_render_is_a_yaml_string() -> None:
    """Outside comments, each ``{{ }}`` ends in ``yamlstr`` (or joins yamlstr'd items)."""
    folder = next(d for d in TEMPLATE_DIRS if d.name == "cloud-init")
    found = 0
    for template in sorted(folder.glob("*.j2")):
        for line in template.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue  # a YAML comment holds no value
            for expr in re.findall(r"{{(.*?)}}", line):
                found += 1
                expr = expr.strip()
                assert expr.endswith("| yamlstr") or re.search(
                    r'\| map\("yamlstr"\) \| join\("[^"]*"\)$', expr
                ), f"{template.name}: {{{{ {expr} }}}} is not rendered as a YAML string"
    assert found >= 10
