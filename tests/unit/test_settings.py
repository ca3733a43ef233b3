"""settings.load refuses invalid stack configs, naming the key of every problem, all at once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config as settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NS = "repo-cluster"
Config = dict[str, Any]


def lab_config() -> Config:
    doc = yaml.safe_load((ROOT / "Pulumi.lab.yaml").read_text(encoding="utf-8"))
    return copy.deepcopy(doc["config"])


def _set(key: str, value: Any) -> Callable[[Config], None]:
    def apply(c: Config) -> None:
        c[key] = value

    return apply


def _drop(key: str) -> Callable[[Config], None]:
    def apply(c: Config) -> None:
        del c[key]

    return apply


def _node(i: int, **fields: Any) -> Callable[[Config], None]:
    def apply(c: Config) -> None:
        c[f"{NS}:nodes"][i].update(fields)

    return apply


def _one_node(c: Config) -> None:
    c[f"{NS}:nodes"] = c[f"{NS}:nodes"][:1]


# (case id, mutation of the lab config, key the problem must name, words the message must hold)
CASES: list[tuple[str, Callable[[Config], None], str, str]] = [
    ("missing-datacenter", _drop(f"{NS}:datacenter"), f"{NS}:datacenter", "required"),
    ("missing-vcenter", _drop("vsphere:vsphereServer"), "vsphere:vsphereServer", "required"),
    ("password-not-string", _set("vsphere:password", 123), "vsphere:password", "string"),
    ("unknown-key", _set(f"{NS}:bogus", 1), f"{NS}:bogus", "unknown"),
    ("cpus-zero", _set(f"{NS}:cpus", 0), f"{NS}:cpus", "out of range"),
    ("cpus-text", _set(f"{NS}:cpus", "two"), f"{NS}:cpus", "integer"),
    ("memory-small", _set(f"{NS}:memoryMb", 512), f"{NS}:memoryMb", "out of range"),
    ("disk-small", _set(f"{NS}:diskGb", 5), f"{NS}:diskGb", "out of range"),
    ("os-family", _set(f"{NS}:osFamily", "windows"), f"{NS}:osFamily", "not one of"),
    ("domain", _set(f"{NS}:domain", "bad_domain!"), f"{NS}:domain", "domain name"),
    ("one-node", _one_node, f"{NS}:nodes", "at least 2"),
    ("node-dup-name", _node(1, name="repo1"), f"{NS}:nodes", "duplicate node name"),
    ("node-dup-ip", _node(1, ip="10.2.50.161"), f"{NS}:nodes", "duplicate node ip"),
    ("node-priority", _node(0, priority=300), f"{NS}:nodes", "priority"),
    ("node-ip", _node(0, ip="10.2.50.999"), f"{NS}:nodes", "not an IPv4 address"),
    ("node-name", _node(0, name="Repo_1"), f"{NS}:nodes", "host name"),
    ("node-field", _node(0, role="master"), f"{NS}:nodes", "unknown field"),
    ("node-subnet", _node(1, ip="10.2.51.162"), f"{NS}:nodes", "not in the VIP subnet"),
    ("node-broadcast", _node(1, ip="10.2.50.255"), f"{NS}:nodes", "broadcast"),
    ("vip-prefix", _set(f"{NS}:vip", "10.2.50.160"), f"{NS}:vip", "prefix"),
    ("vip-garbage", _set(f"{NS}:vip", "vip"), f"{NS}:vip", "IPv4"),
    ("vip-is-node", _set(f"{NS}:vip", "10.2.50.161/24"), f"{NS}:vip", "node repo1"),
    ("vip-network", _set(f"{NS}:vip", "10.2.50.0/24"), f"{NS}:vip", "network or broadcast"),
    ("gateway-subnet", _set(f"{NS}:gateway", "10.9.9.1"), f"{NS}:gateway", "subnet"),
    ("nameserver", _set(f"{NS}:nameservers", ["dns1"]), f"{NS}:nameservers", "IPv4"),
    ("interface", _set(f"{NS}:interface", "a-much-too-long-ifname"), f"{NS}:interface", "15"),
    ("router-id", _set(f"{NS}:virtualRouterId", 256), f"{NS}:virtualRouterId", "1-255"),
    ("advert", _set(f"{NS}:advertInterval", 0), f"{NS}:advertInterval", "1-255"),
    ("instance", _set(f"{NS}:vrrpInstance", "REPO CLUSTER"), f"{NS}:vrrpInstance", "letters"),
    ("auth-pass", _set(f"{NS}:vrrpAuthPass", "longer-than-8"), f"{NS}:vrrpAuthPass", "1-8"),
    ("auth-pass-int", _set(f"{NS}:vrrpAuthPass", 1111), f"{NS}:vrrpAuthPass", "string"),
    ("auth-pass-quote", _set(f"{NS}:vrrpAuthPass", 'ab"cd'), f"{NS}:vrrpAuthPass", "syntax"),
    ("auth-pass-brace", _set(f"{NS}:vrrpAuthPass", "ab{cd}"), f"{NS}:vrrpAuthPass", "syntax"),
    ("auth-pass-comment", _set(f"{NS}:vrrpAuthPass", "#1111"), f"{NS}:vrrpAuthPass", "syntax"),
    ("unicast-text", _set(f"{NS}:unicast", "yes"), f"{NS}:unicast", "true or false"),
    ("xfs-label", _set(f"{NS}:xfsLabel", "veeamrepository"), f"{NS}:xfsLabel", "12"),
    ("mount-relative", _set(f"{NS}:mountPoint", "mnt/repo"), f"{NS}:mountPoint", "absolute"),
    ("mount-root", _set(f"{NS}:mountPoint", "/"), f"{NS}:mountPoint", "other than /"),
    ("mount-newline", _set(f"{NS}:mountPoint", "/mnt/a\nb"), f"{NS}:mountPoint", "control"),
    ("mount-system", _set(f"{NS}:mountPoint", "/etc"), f"{NS}:mountPoint", "system directory"),
    ("mount-in-usr", _set(f"{NS}:mountPoint", "/usr/veeam"), f"{NS}:mountPoint", "system"),
    ("mount-mnt", _set(f"{NS}:mountPoint", "/mnt/"), f"{NS}:mountPoint", "system directory"),
    ("iface-brace", _set(f"{NS}:interface", "ens{160"), f"{NS}:interface", "interface name"),
    ("iface-quote", _set(f"{NS}:interface", 'ens"1'), f"{NS}:interface", "interface name"),
    ("node-ip-int", _node(0, ip=167916193), f"{NS}:nodes", "as a string"),
    ("rbd-image", _set(f"{NS}:rbdImage", "veeam/repo"), f"{NS}:rbdImage", "letters"),
    ("ceph-user", _set(f"{NS}:cephUser", "client admin"), f"{NS}:cephUser", "letters"),
    ("monitors-empty", _set(f"{NS}:cephMonitors", []), f"{NS}:cephMonitors", "at least one"),
    ("monitor-bad", _set(f"{NS}:cephMonitors", ["mon 1"]), f"{NS}:cephMonitors", "IP:port"),
    ("ceph-repo-el7", _drop(f"{NS}:cephRepoUrl"), f"{NS}:cephRepoUrl", "required"),
    ("ceph-repo-url", _set(f"{NS}:cephRepoUrl", "ftp://x/"), f"{NS}:cephRepoUrl", "http"),
    ("ssh-user", _set(f"{NS}:sshUser", " "), f"{NS}:sshUser", "empty"),
    ("ssh-user-name", _set(f"{NS}:sshUser", "ops; rm"), f"{NS}:sshUser", "user name"),
    ("dns-record", _set(f"{NS}:dnsRecord", "repo cluster"), f"{NS}:dnsRecord", "host name"),
    ("dns-port", _set(f"{NS}:dnsPort", 70000), f"{NS}:dnsPort", "out of range"),
    ("dns-algorithm", _set(f"{NS}:dnsTsigAlgorithm", "md4"), f"{NS}:dnsTsigAlgorithm", "one of"),
    ("dns-secret", _set(f"{NS}:dnsTsigSecret", "not base64!"), f"{NS}:dnsTsigSecret", "base64"),
    ("dns-zone", _set(f"{NS}:dnsZone", "no zone"), f"{NS}:dnsZone", "domain name"),
    ("dns-server", _set(f"{NS}:dnsServer", "dns server"), f"{NS}:dnsServer", "host name or IP"),
    ("dns-timeout", _set(f"{NS}:dnsTimeout", 0), f"{NS}:dnsTimeout", "out of range"),
    ("ptr-zone", _set(f"{NS}:dnsPtrZone", "skunkworks.local"), f"{NS}:dnsPtrZone", "in-addr.arpa"),
    (
        "ptr-zone-vip",
        _set(f"{NS}:dnsPtrZone", "51.2.10.in-addr.arpa"),
        f"{NS}:dnsPtrZone",
        "does not hold the VIP's PTR 160.50.2.10.in-addr.arpa",
    ),
]


def test_unsigned_dns_updates_need_no_key() -> None:
    """Windows DNS "Nonsecure and secure": no dnsTsigKeyName, no secret needed."""
    config = lab_config()
    del config[f"{NS}:dnsTsigKeyName"]
    s = settings.load(config)
    assert (s.dns_server, s.dns_tsig_key_name) == ("10.2.50.10", None)
    assert settings.deploy_problems(s) == []


def test_a_tsig_key_needs_its_secret_at_deploy_time() -> None:
    s = settings.load(lab_config())
    assert [p.split(":", 2)[1] for p in settings.deploy_problems(s)] == ["dnsTsigSecret"]
    with_secret = settings.load({**lab_config(), f"{NS}:dnsTsigSecret": "c2VjcmV0"})
    assert settings.deploy_problems(with_secret) == []


def test_lab_and_sim_stacks_are_valid() -> None:
    for stack in ("lab", "sim"):
        s = settings.load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))
        assert len(s.nodes) >= 2


def test_enough_distinct_cases() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize(
    ("mutate", "key", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_config_names_its_key(
    mutate: Callable[[Config], None], key: str, words: str
) -> None:
    config = lab_config()
    mutate(config)
    with pytest.raises(settings.ConfigError) as exc:
        settings.load(config)
    problems = exc.value.problems
    # one mistake, one key: no cascade of problems blamed on other keys
    assert problems, "ConfigError without problems"
    assert all(p.startswith(f"{key}: ") for p in problems), problems
    assert any(words in p for p in problems), (words, problems)
    assert key in str(exc.value)


def test_every_problem_reported_in_one_run() -> None:
    config = lab_config()
    ids = [
        "missing-datacenter",
        "password-not-string",
        "unknown-key",
        "cpus-zero",
        "os-family",
        "domain",
        "node-dup-name",
        "gateway-subnet",
        "nameserver",
        "interface",
        "auth-pass",
        "xfs-label",
        "mount-root",
        "monitor-bad",
        "ceph-repo-url",
        "dns-port",
        "unicast-text",
    ]
    picked = [c for c in CASES if c[0] in ids]  # independent keys
    keys = {key for _, _, key, _ in picked}
    assert len(keys) == len(picked), "pick cases on distinct keys"
    for _, mutate, _, _ in picked:
        mutate(config)
    with pytest.raises(settings.ConfigError) as exc:
        settings.load(config)
    named = {p.split(": ", 1)[0] for p in exc.value.problems}
    assert keys <= named, sorted(keys - named)
    for _, _, key, words in picked:
        assert any(p.startswith(f"{key}: ") and words in p for p in exc.value.problems), key
    # the message lists them all too, one per line
    assert len(str(exc.value).splitlines()) == len(exc.value.problems) + 1
