"""Validation: what each config value means, checked all at once.

Every check adds its problems (each naming its config key) to one list; :func:`validate`
raises a :class:`~components.config.model.ConfigError` holding them all, so a user fixes a
stack file in one pass. The checks are grouped by concern, one function each.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from components.config.adopt import adoption_problems
from components.config.check import Check as _Check
from components.config.check import full as _full
from components.config.dnscheck import dns_values
from components.config.keys import KEYS
from components.config.model import (
    AUTH_PASS,
    OS_FAMILIES,
    TEST_NET,
    ConfigError,
    Node,
    Secret,
    Settings,
    outside_test_net,
)
from components.config.rank import rank_problems
from components.config.storage import (
    ceph_keyring,
    ceph_names,
    ceph_repo,
    mount_options,
    normal_mount,
    xfs_label,
)

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# what `ssh-keygen -lf` and OpenSSH print: SHA256 and 43 characters of unpadded base64
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _nodes(c: _Check) -> tuple[Node, ...]:
    raw = c.v["nodes"]
    nodes: list[Node] = []
    if not isinstance(raw, list):
        return ()
    if len(raw) < 2:
        c.bad("nodes", f"at least 2 nodes are needed for failover, got {len(raw)}")
    for i, item in enumerate(raw):
        where = f"[{i}]"
        if not isinstance(item, Mapping):
            c.bad("nodes", f"{where} must be a mapping with name, ip, priority")
            continue
        extra = set(item) - {"name", "ip", "priority", "hostKey", "adopt"}
        if extra:
            c.bad("nodes", f"{where} unknown field(s) {', '.join(sorted(extra))}")
        name, ip, prio = item.get("name"), item.get("ip"), item.get("priority")
        c.hostname("nodes", name, f"{where}.name ")
        c.yaml_string("nodes", name, f"{where}.name ")
        addr = c.ipv4("nodes", ip, f"{where}.ip ") if ip is not None else None
        if ip is None:
            c.bad("nodes", f"{where}.ip is required")
        if not isinstance(prio, int) or isinstance(prio, bool) or not 1 <= prio <= 254:
            c.bad("nodes", f"{where}.priority {prio!r} must be an integer 1-254")
            prio = 0
        host_key = item.get("hostKey")
        if host_key is not None and not (
            isinstance(host_key, str) and _FINGERPRINT.fullmatch(host_key)
        ):
            c.bad(
                "nodes",
                f"{where}.hostKey {host_key!r} must be a host key fingerprint as "
                "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it (SHA256:...)",
            )
            host_key = None
        adopt = item.get("adopt", False)
        if not isinstance(adopt, bool):
            c.bad("nodes", f"{where}.adopt {adopt!r} must be true or false")
            adopt = False
        if adopt and host_key is None:
            c.bad(
                "nodes",
                f"{where}.adopt: an adopted server needs its hostKey, read on its console "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`): it publishes none",
            )
        if isinstance(name, str) and addr is not None:
            nodes.append(Node(name, addr, prio, host_key, adopt))
    for key, problem in [*adoption_problems(nodes, c.v["preflight"]), *rank_problems(nodes)]:
        c.bad(key, problem)
    for attr, label in (("name", "name"), ("ip", "ip"), ("priority", "priority")):
        seen: set[Any] = set()
        for n in nodes:
            value = getattr(n, attr)
            if attr == "priority" and value == 0:
                continue
            if value in seen:
                c.bad("nodes", f"duplicate node {label} {str(value)!r}")
            seen.add(value)
    return tuple(nodes)


def _sizes(c: _Check) -> None:
    c.nonempty("vsphereServer", "vsphereUser", "datacenter", "cluster", "datastore")
    c.nonempty("network", "template", "sshUser", "sshKeyFile", "vrrpInstance")
    c.in_range("cpus", 1, 128)
    c.in_range("memoryMb", 1024, 1048576)
    c.in_range("diskGb", 10, 65536)
    c.in_range("virtualRouterId", 1, 255)
    c.in_range("advertInterval", 1, 255)
    c.in_range("garpMasterDelay", 0, 255)
    c.in_range("garpMasterRepeat", 1, 255)
    c.in_range("garpMasterRefresh", 0, 3600)
    _advert(c)
    c.in_range("dnsPort", 1, 65535)
    v = c.v
    if v["osFamily"] not in OS_FAMILIES:
        c.bad("osFamily", f"{v['osFamily']!r} is not one of {', '.join(OS_FAMILIES)}")


def _advert(c: _Check) -> None:
    """VRRP v2 advertises whole seconds (1-255); v3 centiseconds (up to 40.95 s)."""
    v = c.v
    version, ms = v["vrrpVersion"], v["advertIntervalMs"]
    if version not in (2, 3):
        c.bad("vrrpVersion", f"{version!r} is not one of 2, 3")
    if not isinstance(ms, int) or isinstance(ms, bool):
        return
    if version == 3 and not (10 <= ms <= 40950 and ms % 10 == 0):
        c.bad("advertIntervalMs", f"{ms} must be 10-40950 in steps of 10 (VRRP v3 centiseconds)")
    elif version == 2 and not (1000 <= ms <= 255000 and ms % 1000 == 0):
        c.bad(
            "advertIntervalMs",
            f"{ms} ms is not whole seconds: VRRP version 2 advertises seconds (1-255); "
            "set vrrpVersion 3 for sub-second adverts",
        )


def _names(c: _Check) -> None:
    """Names that end up in config files, unit names and command lines."""
    v = c.v
    c.domain("domain")
    c.hostname("dnsRecord", v["dnsRecord"])
    if not _IFNAME.match(str(v["interface"])) or v["interface"] in (".", ".."):
        c.bad(
            "interface",
            f"{v['interface']!r} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)",
        )
    else:
        c.yaml_string("interface", v["interface"])
    if v["sshCheck"] not in ("fault", "weight"):
        c.bad("sshCheck", f"{v['sshCheck']!r} is not one of fault, weight")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", str(v["vrrpInstance"])):
        c.bad("vrrpInstance", f"{v['vrrpInstance']!r} must be 1-32 letters, digits or _")
    if not _USER.match(str(v["sshUser"])):
        c.bad("sshUser", f"{v['sshUser']!r} is not a valid user name (a-z, 0-9, _, -)")
    elif v["sshUser"] != "root":
        c.bad(
            "sshUser",
            f"{v['sshUser']!r} is not root: the converge runs every command as the SSH user, "
            "without sudo, so only root can install and start the services (the article's "
            "setup connects as root)",
        )


def _volume(c: _Check) -> None:
    xfs_label(c)
    mount_options(c)
    ceph_names(c)
    ceph_keyring(c)
    ceph_repo(c)


def _secrets(c: _Check) -> None:
    auth: Secret = c.v["vrrpAuthPass"]
    if auth.value is not None and (
        not AUTH_PASS.fullmatch(auth.value) or not auth.value.isprintable()
    ):
        c.bad(
            "vrrpAuthPass",
            "must be 1-8 printable characters without spaces or any of"
            " \" ' { } # ! \\ (keepalived.conf syntax) (value hidden)",
        )


def _services(c: _Check) -> None:
    """Ceph and DNS: the servers the nodes and the program talk to."""
    v = c.v
    monitors = v["cephMonitors"]
    if isinstance(monitors, list):
        if not monitors:
            c.bad("cephMonitors", "at least one Ceph monitor address is needed")
        for m in monitors:
            if not isinstance(m, str) or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", m):
                c.bad("cephMonitors", f"{m!r} is not a host, IP or IP:port")
    dns_values(c)


def _vip(c: _Check) -> ipaddress.IPv4Interface | None:
    raw = c.v["vip"]
    try:
        vip = ipaddress.IPv4Interface(raw)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        c.bad("vip", f"{raw!r} is not an IPv4 address with prefix (a.b.c.d/nn)")
        return None
    if "/" not in str(raw):
        c.bad("vip", f"{raw!r} needs a prefix length, e.g. 10.2.50.160/24")
        return None
    return vip


def _subnet(
    c: _Check,
    vip: ipaddress.IPv4Interface,
    nodes: tuple[Node, ...],
    gateway: ipaddress.IPv4Address | None,
) -> None:
    """Nodes, VIP and gateway share one subnet and no address."""
    net = vip.network
    if vip.ip in (net.network_address, net.broadcast_address):
        c.bad("vip", f"{vip.ip} is the network or broadcast address of {net}")
    for n in nodes:
        if n.ip not in net:
            c.bad("nodes", f"{n.name} ip {n.ip} is not in the VIP subnet {net}")
        elif n.ip in (net.network_address, net.broadcast_address):
            c.bad("nodes", f"{n.name} ip {n.ip} is the network or broadcast address of {net}")
        if n.ip == vip.ip:
            c.bad("vip", f"{vip.ip} is also the ip of node {n.name}")
    if gateway is not None:
        if gateway not in net:
            c.bad("gateway", f"{gateway} is not in the VIP subnet {net}")
        if gateway == vip.ip or any(gateway == n.ip for n in nodes):
            c.bad("gateway", f"{gateway} is also the VIP or a node ip")


def validate(v: dict[str, Any], problems: list[str]) -> Settings:
    """Check the typed values (keyed by key name); Settings, or ConfigError with every
    problem, those found while loading (``problems``) first."""
    c = _Check(v, problems)
    for check in (_sizes, _names, _volume, _secrets, _services):
        check(c)
    mount = normal_mount(c)
    nodes = _nodes(c)
    vip = _vip(c)
    gateway = c.ipv4("gateway", v["gateway"])
    nameservers = tuple(
        a for a in (c.ipv4("nameservers", s) for s in v["nameservers"]) if a is not None
    )
    if vip is not None:
        _subnet(c, vip, nodes, gateway)
    if v["lab"] is True and vip is not None and gateway is not None:
        outside = outside_test_net(nodes, vip, gateway)
        if outside:
            c.bad(
                "lab",
                f"true, but {', '.join(outside)} outside {TEST_NET}: a lab stack lives on its "
                "lab bridge only",
            )
    if vip is not None:
        zone = v["dnsPtrZone"]
        if isinstance(zone, str) and not vip.ip.reverse_pointer.endswith(f".{zone}"):
            c.bad("dnsPtrZone", f"{zone!r} does not hold the VIP's PTR {vip.ip.reverse_pointer}")
    if problems:
        raise ConfigError(problems)
    derived: dict[str, Any] = {
        "nodes": nodes,
        "vip": vip,
        "gateway": gateway,
        "nameservers": nameservers,
        "cephMonitors": tuple(v["cephMonitors"]),
        "dnsZone": v["dnsZone"] or v["domain"],
        "mountPoint": mount,
    }
    return Settings(**{k.field: derived.get(k.name, v[k.name]) for k in KEYS})


def deploy_problems(s: Settings) -> list[str]:
    """What ``pulumi up`` needs beyond a valid config: secrets that must be set (the engine
    hands them to the program decrypted, so here they are either there or missing) and what
    the converge can do. A lab stack (``lab: true``: the embedded lab, whose Ceph key the lab sets)
    may deploy the placeholder keyring."""
    problems = []
    if not s.ceph_keyring.available and not s.lab:
        problems.append(
            f"{_full('cephKeyring')}: required: without it the nodes get a placeholder keyring, "
            "in place of a working one (pulumi config set --secret repo-cluster:cephKeyring "
            f'"$(ceph auth get-key client.{s.ceph_user})"); only a lab stack '
            f"({_full('lab')}: true) may go without"
        )
    if s.dns_server and s.dns_tsig_key_name and not s.dns_tsig_secret.available:
        key, secret = _full("dnsTsigKeyName"), _full("dnsTsigSecret")
        problems.append(
            f"{secret}: required when {key} is set (with dnsServer): the updates are signed "
            f"with that key (pulumi config set --secret {secret}); unset {key} for unsigned "
            "updates (Windows DNS)"
        )
    return problems
