"""settings.load refuses invalid stack configs, naming the key of every problem, all at once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.tsigkeyring
import pytest
import yaml

from components import config as settings
from components.dns.record import DnsTarget

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NS = "repo-cluster"
Config = dict[str, Any]
KEY = "AQBvaBFZAAAAABAAcUVJcmyBJ2uZ0lA7cHl2AQ=="  # the shape `ceph auth get-key` prints


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


def _both(*mutations: Callable[[Config], None]) -> Callable[[Config], None]:
    def apply(c: Config) -> None:
        for m in mutations:
            m(c)

    return apply


FP = "SHA256:" + "Ab1+" * 10 + "xyz"


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
    ("node-no-rank-room", _node(0, priority=253), f"{NS}:nodes", "repo1.priority 253"),
    ("node-ip", _node(0, ip="10.2.50.999"), f"{NS}:nodes", "not an IPv4 address"),
    ("node-name", _node(0, name="Repo_1"), f"{NS}:nodes", "host name"),
    ("node-field", _node(0, role="master"), f"{NS}:nodes", "unknown field"),
    ("node-host-key", _node(0, hostKey="ssh-ed25519 AAAAC3Nz"), f"{NS}:nodes", "SHA256:"),
    ("node-host-key-md5", _node(1, hostKey="MD5:12:34"), f"{NS}:nodes", "hostKey"),
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
    ("vrrp-version", _set(f"{NS}:vrrpVersion", 4), f"{NS}:vrrpVersion", "2, 3"),
    # VRRP v2 advertises whole seconds: a sub-second interval needs version 3
    (
        "advert-ms-v2",
        _set(f"{NS}:advertIntervalMs", 200),
        f"{NS}:advertIntervalMs",
        "vrrpVersion 3",
    ),
    ("garp-delay", _set(f"{NS}:garpMasterDelay", 256), f"{NS}:garpMasterDelay", "0-255"),
    ("garp-repeat", _set(f"{NS}:garpMasterRepeat", 0), f"{NS}:garpMasterRepeat", "1-255"),
    ("garp-refresh", _set(f"{NS}:garpMasterRefresh", -1), f"{NS}:garpMasterRefresh", "0-3600"),
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
    # the TSIG key name is a DNS name (dnspython, and named.conf, take nothing else)
    (
        "tsig-key-space",
        _set(f"{NS}:dnsTsigKeyName", "repo update"),
        f"{NS}:dnsTsigKeyName",
        "DNS name",
    ),
    ("tsig-key-label", _set(f"{NS}:dnsTsigKeyName", "k" * 64), f"{NS}:dnsTsigKeyName", "1-63"),
    (
        "tsig-key-empty-label",
        _set(f"{NS}:dnsTsigKeyName", "a..b"),
        f"{NS}:dnsTsigKeyName",
        "DNS name",
    ),
    ("tsig-key-quote", _set(f"{NS}:dnsTsigKeyName", 'k"1'), f"{NS}:dnsTsigKeyName", "DNS name"),
    ("tsig-key-empty", _set(f"{NS}:dnsTsigKeyName", ""), f"{NS}:dnsTsigKeyName", "DNS name"),
    (
        "tsig-key-long",
        _set(f"{NS}:dnsTsigKeyName", "k." * 127 + "k"),
        f"{NS}:dnsTsigKeyName",
        "253",
    ),
    # values YAML (cloud-init's PyYAML) would read as another type in the first-boot documents
    ("node-name-no", _node(0, name="no"), f"{NS}:nodes", "YAML would read it as a boolean"),
    ("node-name-on", _node(1, name="on"), f"{NS}:nodes", "[1].name 'on'"),
    ("node-name-off", _node(0, name="off"), f"{NS}:nodes", "a boolean"),
    ("node-name-yes", _node(0, name="yes"), f"{NS}:nodes", "a boolean"),
    ("node-name-true", _node(0, name="true"), f"{NS}:nodes", "a boolean"),
    ("node-name-null", _node(0, name="null"), f"{NS}:nodes", "YAML would read it as null"),
    ("node-name-123", _node(0, name="123"), f"{NS}:nodes", "YAML would read it as a number"),
    ("node-name-hex", _node(0, name="0x1f"), f"{NS}:nodes", "a number"),
    ("node-name-date", _node(0, name="2024-01-01"), f"{NS}:nodes", "a date"),
    ("iface-float", _set(f"{NS}:interface", "1.5"), f"{NS}:interface", "as a number"),
    ("iface-bool", _set(f"{NS}:interface", "on"), f"{NS}:interface", "as a boolean"),
    ("iface-null", _set(f"{NS}:interface", "null"), f"{NS}:interface", "as null"),
    # the mount table escapes a backslash (\134): the mount point could not be read back
    ("mount-backslash", _set(f"{NS}:mountPoint", "/mnt/a\\b"), f"{NS}:mountPoint", "backslash"),
    (
        "tsig-secret-without-key",
        lambda c: (c.pop(f"{NS}:dnsTsigKeyName"), c.update({f"{NS}:dnsTsigSecret": "c2VjcmV0"})),
        f"{NS}:dnsTsigKeyName",
        f"required when {NS}:dnsTsigSecret is set",
    ),
    (
        "tsig-encrypted-secret-without-key",
        lambda c: (
            c.pop(f"{NS}:dnsTsigKeyName"),
            c.update({f"{NS}:dnsTsigSecret": {"secure": "v1:abc"}}),
        ),
        f"{NS}:dnsTsigKeyName",
        "unsigned",
    ),
    # mount points: normalised before the system check, inside system trees refused
    ("mount-2slash-etc", _set(f"{NS}:mountPoint", "//etc"), f"{NS}:mountPoint", "system"),
    (
        "mount-options-shell",
        _set(f"{NS}:xfsMountOptions", "nouuid;reboot"),
        f"{NS}:xfsMountOptions",
        "comma-separated",
    ),
    (
        "mount-options-space",
        _set(f"{NS}:xfsMountOptions", "ro, nouuid"),
        f"{NS}:xfsMountOptions",
        "mount options",
    ),
    ("mount-2slash-usr", _set(f"{NS}:mountPoint", "//usr/lib"), f"{NS}:mountPoint", "system"),
    ("mount-root-ssh", _set(f"{NS}:mountPoint", "/root/.ssh"), f"{NS}:mountPoint", "system"),
    ("mount-var-log", _set(f"{NS}:mountPoint", "/var/log"), f"{NS}:mountPoint", "system"),
    ("mount-var-lib", _set(f"{NS}:mountPoint", "/var/lib/veeam"), f"{NS}:mountPoint", "system"),
    ("mount-var-spool", _set(f"{NS}:mountPoint", "/var//spool/x"), f"{NS}:mountPoint", "system"),
    ("mount-dotdot", _set(f"{NS}:mountPoint", "/etc/../etc"), f"{NS}:mountPoint", "'..'"),
    ("mount-dot", _set(f"{NS}:mountPoint", "/mnt/./repo"), f"{NS}:mountPoint", "'.'"),
    ("mount-home", _set(f"{NS}:mountPoint", "/home/"), f"{NS}:mountPoint", "system"),
    # Ceph names reach `rbd map` as arguments: no option, no . or ..
    ("rbd-pool-dash", _set(f"{NS}:rbdPool", "-p"), f"{NS}:rbdPool", "'-'"),
    ("rbd-image-dot", _set(f"{NS}:rbdImage", "."), f"{NS}:rbdImage", "'.' or '..'"),
    ("ceph-user-dash", _set(f"{NS}:cephUser", "-x"), f"{NS}:cephUser", "'-'"),
    ("ceph-user-dotdot", _set(f"{NS}:cephUser", ".."), f"{NS}:cephUser", "'.' or '..'"),
    # the keyring is a Ceph key, nothing more (a newline would add keyring sections)
    (
        "keyring-newline",
        _set(f"{NS}:cephKeyring", "AQBvaBFZAAAAABAAcUVJcmyBJ2uZ0lA7cHl2AQ==\n[client.admin]"),
        f"{NS}:cephKeyring",
        "Ceph key",
    ),
    ("keyring-short", _set(f"{NS}:cephKeyring", "AQB+key=="), f"{NS}:cephKeyring", "Ceph key"),
    ("keyring-int", _set(f"{NS}:cephKeyring", 1234), f"{NS}:cephKeyring", "string"),
    # XFS labels: 12 bytes, no /, whitespace or control characters
    ("xfs-bytes", _set(f"{NS}:xfsLabel", "\u00e9" * 7), f"{NS}:xfsLabel", "12 bytes"),
    ("xfs-slash", _set(f"{NS}:xfsLabel", "veeam/repo"), f"{NS}:xfsLabel", "'/'"),
    ("xfs-tab", _set(f"{NS}:xfsLabel", "veeam\trepo"), f"{NS}:xfsLabel", "whitespace"),
    ("xfs-control", _set(f"{NS}:xfsLabel", "veeam\x7frepo"), f"{NS}:xfsLabel", "control"),
    ("xfs-empty", _set(f"{NS}:xfsLabel", ""), f"{NS}:xfsLabel", "12 bytes"),
    ("ceph-repo-http", _set(f"{NS}:cephRepoUrl", "http://x/"), f"{NS}:cephRepoUrl", "https"),
    (
        "ptr-zone-vip",
        _set(f"{NS}:dnsPtrZone", "51.2.10.in-addr.arpa"),
        f"{NS}:dnsPtrZone",
        "does not hold the VIP's PTR 160.50.2.10.in-addr.arpa",
    ),
    ("adopt-without-host-key", _node(0, adopt=True), f"{NS}:nodes", "needs its hostKey"),
    ("adopt-not-a-bool", _node(0, adopt="yes", hostKey=FP), f"{NS}:nodes", "true or false"),
    ("adopt-below-top", _node(1, adopt=True, hostKey=FP), f"{NS}:nodes", "highest priority"),
    (
        "adopt-two",
        _both(_node(0, adopt=True, hostKey=FP), _node(1, adopt=True, hostKey=FP)),
        f"{NS}:nodes",
        "one existing server",
    ),
    (
        "adopt-no-preflight",
        _both(_node(0, adopt=True, hostKey=FP), _set(f"{NS}:preflight", False)),
        f"{NS}:preflight",
        "reads its VM",
    ),
]


def test_unsigned_dns_updates_need_no_key() -> None:
    """Windows DNS "Nonsecure and secure": no dnsTsigKeyName, no secret needed."""
    config = lab_config() | {f"{NS}:cephKeyring": KEY}
    del config[f"{NS}:dnsTsigKeyName"]
    s = settings.load(config)
    assert (s.dns_server, s.dns_tsig_key_name) == ("10.2.50.10", None)
    assert settings.deploy_problems(s) == []


def test_a_tsig_key_needs_its_secret_at_deploy_time() -> None:
    s = settings.load(lab_config() | {f"{NS}:cephKeyring": KEY})
    assert [p.split(":", 2)[1] for p in settings.deploy_problems(s)] == ["dnsTsigSecret"]
    [problem] = settings.deploy_problems(s)
    assert f"required when {NS}:dnsTsigKeyName is set" in problem
    assert f"unset {NS}:dnsTsigKeyName" in problem  # the way to unsigned updates
    with_secret = settings.load(
        {**lab_config(), f"{NS}:cephKeyring": KEY, f"{NS}:dnsTsigSecret": "c2VjcmV0"}
    )
    assert settings.deploy_problems(with_secret) == []


@pytest.mark.parametrize(
    "name", ["repo-cluster-update", "ddns_key.example.com.", "K1", "a" * 63 + ".b", "x." * 126]
)
def test_tsig_key_names_dnspython_takes_are_accepted(name: str) -> None:
    s = settings.load(lab_config() | {f"{NS}:dnsTsigKeyName": name})
    assert s.dns_tsig_key_name == name
    DnsTarget("127.0.0.1", 53, "skunkworks.local", name, secret="c2VjcmV0")
    dns.tsigkeyring.from_text({name: "c2VjcmV0"})  # what an update signs with


def test_a_secret_set_without_its_key_name_names_both_keys() -> None:
    config = lab_config() | {f"{NS}:dnsTsigSecret": {"secure": "v1:abc"}}
    del config[f"{NS}:dnsTsigKeyName"]
    with pytest.raises(settings.ConfigError) as exc:
        settings.load(config)
    [problem] = exc.value.problems
    assert problem.startswith(f"{NS}:dnsTsigKeyName: ") and f"{NS}:dnsTsigSecret" in problem
    assert "Windows DNS" in problem  # unsigned updates: leave both unset


@pytest.mark.parametrize("name", ["repo1", "n0", "no1", "yes-2", "nullx", "a123", "e1"])
def test_node_names_that_stay_strings_in_yaml_are_accepted(name: str) -> None:
    config = lab_config()
    config[f"{NS}:nodes"][0]["name"] = name
    assert settings.load(config).nodes[0].name == name


def test_a_node_s_confirmed_host_key_is_its_fingerprint() -> None:
    """nodes[].hostKey takes the fingerprint as ssh-keygen -lf prints it."""
    fp = "SHA256:" + "Ab1+" * 10 + "xyz"
    config = lab_config()
    config[f"{NS}:nodes"][0]["hostKey"] = fp
    s = settings.load(config)
    assert (s.nodes[0].host_key, s.nodes[1].host_key) == (fp, None)


def test_an_adopted_node_is_the_top_priority_with_its_host_key() -> None:
    config = lab_config()
    config[f"{NS}:nodes"][0].update(adopt=True, hostKey=FP)
    s = settings.load(config)
    assert (s.nodes[0].adopt, s.nodes[1].adopt) == (True, False)
    assert s.start_order[0].name == s.nodes[0].name


@pytest.mark.parametrize(
    ("priorities", "ceiling", "weights"),
    [
        ((101, 100), 103, (1, 2)),  # repo2 may need 103: 3 above its own
        ((101, 100, 99), 104, (1, 2, 4)),  # a third node: one more step, 5 above the lowest
        ((252, 1), 254, tuple(1 << i for i in range(8))),  # the widest: VRRP's top
    ],
)
def test_the_rank_has_room_and_bits_from_the_priorities(
    priorities: tuple[int, ...], ceiling: int, weights: tuple[int, ...]
) -> None:
    config = lab_config()
    nodes = [
        {"name": f"repo{i + 1}", "ip": f"10.2.50.{161 + i}", "priority": p}
        for i, p in enumerate(priorities)
    ]
    config[f"{NS}:nodes"] = nodes
    s = settings.load(config)
    assert (s.rank_ceiling, s.rank_weights) == (ceiling, weights)
    assert sum(weights) >= ceiling - min(priorities)  # the lowest can reach the ceiling
    top = max(priorities)
    assert s.rank_floor(s.nodes[0]) == max(priorities[0], max(priorities[1:]) + 1)
    assert all(s.rank_floor(n) <= top + 1 for n in s.nodes)
    nodes[0]["priority"] = 255 - len(priorities)  # one above the room
    with pytest.raises(settings.ConfigError) as err:
        settings.load(config)
    assert f"repo1.priority {255 - len(priorities)} must be at most" in str(err.value)


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


def test_new_holes_reported_at_once_without_the_secret() -> None:
    """Each hole names its own key, all in one ConfigError; the keyring never shows."""
    bad_key = KEY + "\n[client.admin]\n\tkey = " + KEY
    config = lab_config() | {
        f"{NS}:mountPoint": "//usr/lib",
        f"{NS}:rbdPool": "-p",
        f"{NS}:rbdImage": "..",
        f"{NS}:cephUser": "--id",
        f"{NS}:cephKeyring": bad_key,
        f"{NS}:xfsLabel": "a/b",
        f"{NS}:cephRepoUrl": "http://download.ceph.com/rpm-nautilus/el7/x86_64/",
    }
    with pytest.raises(settings.ConfigError) as exc:
        settings.load(config)
    named = [p.split(": ", 1)[0] for p in exc.value.problems]
    keys = ("mountPoint", "rbdPool", "rbdImage", "cephUser", "cephKeyring", "xfsLabel")
    assert sorted(named) == sorted(f"{NS}:{k}" for k in (*keys, "cephRepoUrl"))
    assert KEY not in str(exc.value) and "client.admin" not in str(exc.value)


@pytest.mark.parametrize(
    ("mount", "normal"),
    [
        ("/mnt/veeamrepo", "/mnt/veeamrepo"),
        ("/mnt//veeamrepo/", "/mnt/veeamrepo"),
        ("/srv/veeam/repo", "/srv/veeam/repo"),
        ("/home/veeam/repo", "/home/veeam/repo"),
        ("/data", "/data"),
    ],
)
def test_mount_points_that_stay_allowed_are_normalised(mount: str, normal: str) -> None:
    s = settings.load(lab_config() | {f"{NS}:mountPoint": mount})
    assert s.mount_point == normal


@pytest.mark.parametrize("label", ["veeamrepo", "veeam-repo_1", "\u00e9" * 6, "REPO.1"])
def test_xfs_labels_within_12_bytes(label: str) -> None:
    assert settings.load(lab_config() | {f"{NS}:xfsLabel": label}).xfs_label == label


def test_a_ceph_key_as_ceph_prints_it_is_accepted() -> None:
    s = settings.load(lab_config() | {f"{NS}:cephKeyring": KEY})
    assert s.ceph_keyring.value == KEY


@pytest.mark.parametrize(
    ("ms", "ok"), [(200, True), (10, True), (40950, True), (205, False), (0, False), (41000, False)]
)
def test_vrrp_v3_takes_centisecond_adverts(ms: int, ok: bool) -> None:
    config = {**lab_config(), f"{NS}:vrrpVersion": 3, f"{NS}:advertIntervalMs": ms}
    if ok:
        s = settings.load(config)
        assert s.advert_seconds == ms / 1000
        assert s.advert_int_text == f"{ms / 1000:g}"
    else:
        with pytest.raises(settings.ConfigError, match=r"advertIntervalMs: .*steps of 10"):
            settings.load(config)


def test_the_default_profile_is_the_articles() -> None:
    s = settings.load(lab_config())
    assert (s.vrrp_version, s.advert_seconds, s.advert_int_text) == (2, 1.0, "1")
