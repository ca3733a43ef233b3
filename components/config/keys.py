"""The table of config keys: name, type, default, secrecy and meaning.

``Pulumi.yaml``'s ``config:`` schema and the README's configuration reference are checked
against this table by the tests, so the three cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NAMESPACE = "repo-cluster"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Key:
    name: str
    type: type
    default: Any
    description: str
    secret: bool = False
    namespace: str = NAMESPACE
    config_name: str | None = None  # the name in the namespace when it differs from ``name``

    @property
    def full(self) -> str:
        return f"{self.namespace}:{self.config_name or self.name}"

    @property
    def field(self) -> str:
        """The :class:`~components.config.model.Settings` field: ``name`` in snake_case."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _k(name: str, type_: type, default: Any, description: str, **kw: Any) -> Key:
    return Key(name, type_, default, description, **kw)


KEYS: tuple[Key, ...] = (
    # --- vSphere connection (the pulumi-vsphere provider reads the same keys)
    _k("vsphereServer", str, REQUIRED, "vCenter host[:port].", namespace="vsphere"),
    _k(
        "vsphereUser",
        str,
        REQUIRED,
        "vCenter user.",
        namespace="vsphere",
        config_name="user",
    ),
    _k(
        "vspherePassword",
        str,
        None,
        "vCenter password (secret).",
        secret=True,
        namespace="vsphere",
        config_name="password",
    ),
    _k(
        "allowUnverifiedSsl",
        bool,
        False,
        "Accept a self-signed vCenter certificate.",
        namespace="vsphere",
    ),
    # --- placement
    _k("datacenter", str, REQUIRED, "vSphere datacenter name."),
    _k("cluster", str, REQUIRED, "Compute cluster the VMs run on."),
    _k("datastore", str, REQUIRED, "Datastore for the VM disks."),
    _k("network", str, REQUIRED, "Port group of the VMs' NIC."),
    _k(
        "template",
        str,
        REQUIRED,
        "Template VM to clone (CentOS 7 with cloud-init guestinfo).",
    ),
    _k(
        "resourcePool",
        str,
        None,
        "Resource pool for the VMs, as a path (DC0_H0/Resources); unset: the cluster's root.",
    ),
    _k("folder", str, None, "VM folder (optional)."),
    _k("annotation", str, None, "VM notes (optional)."),
    _k(
        "antiAffinity",
        bool,
        True,
        "DRS anti-affinity rule keeping the nodes on different hosts.",
    ),
    _k("preflight", bool, True, "Check vCenter with pyvmomi before creating anything."),
    _k(
        "lab",
        bool,
        False,
        "This stack is an embedded lab's (make lab): a node may be trusted on first contact,"
        " the placeholder Ceph keyring may deploy, the drill may break it. Every address must"
        " be in 198.18.0.0/15.",
    ),
    # --- VM size and OS
    _k("cpus", int, 2, "vCPUs per node."),
    _k("memoryMb", int, 2048, "Memory per node, MB."),
    _k("diskGb", int, 20, "System disk per node, GB (not smaller than the template's)."),
    _k("osFamily", str, "el7", "Node OS: el7, el8, el9, debian or ubuntu."),
    # --- network
    _k("domain", str, REQUIRED, "DNS domain of the nodes (skunkworks.local)."),
    _k(
        "nodes",
        list,
        REQUIRED,
        "Repo nodes: list of {name, ip, priority[, hostKey, adopt]}; priority: 1 to 254 "
        "minus the number of nodes (room for a MASTER's rank above them); hostKey: the "
        "fingerprint (SHA256:...) of a node's SSH host key confirmed out of band; adopt: "
        "true for an existing VM of that name to bring in (needs hostKey and the top "
        "priority).",
    ),
    _k("vip", str, REQUIRED, "Virtual IP with prefix (10.2.50.160/24)."),
    _k("gateway", str, REQUIRED, "Default gateway of the nodes."),
    _k("nameservers", list, [], "DNS servers the nodes resolve with."),
    _k("interface", str, "ens160", "NIC name inside the guest; carries the VIP."),
    # --- VRRP
    _k("vrrpInstance", str, "REPO_CLUSTER", "keepalived vrrp_instance name."),
    _k(
        "virtualRouterId",
        int,
        1,
        "VRRP virtual_router_id (1-255), unique on the segment.",
    ),
    _k(
        "vrrpVersion",
        int,
        2,
        "VRRP version: 2 (the article's, with auth_pass) or 3 (sub-second adverts, no auth).",
    ),
    _k("advertInterval", int, 1, "VRRP advert_int, seconds."),
    _k(
        "advertIntervalMs",
        int,
        None,
        "VRRP advert_int in milliseconds, overriding advertInterval: 10-40950 in steps of 10 "
        "with vrrpVersion 3 (the fast profile: 200); whole seconds only with version 2.",
    ),
    _k(
        "garpMasterDelay",
        int,
        5,
        "Seconds from becoming MASTER to the second burst of gratuitous ARPs (0: none).",
    ),
    _k("garpMasterRepeat", int, 5, "Gratuitous ARPs per burst on becoming MASTER."),
    _k(
        "garpMasterRefresh",
        int,
        10,
        "Seconds between the MASTER's repeated gratuitous ARPs (0: none). After two MASTERs "
        "(a one-way partition), a client still sending to the old one's MAC recovers this fast.",
    ),
    _k(
        "sshCheck",
        str,
        "fault",
        "sshd check: fault (a node whose sshd fails leaves MASTER) or weight (the article's "
        "weight -4, which cannot move the VIP with nopreempt).",
    ),
    _k(
        "vrrpAuthPass",
        str,
        None,
        "VRRP auth_pass, max 8 chars (secret; generated if unset).",
        secret=True,
    ),
    _k(
        "unicast",
        bool,
        False,
        "Unicast VRRP (unicast_src_ip/unicast_peer) instead of multicast.",
    ),
    # --- volume and Ceph
    _k("rbdPool", str, "rbd", "Ceph pool of the repository image."),
    _k("rbdImage", str, "veeamrepo", "RBD image mapped on every node."),
    _k("xfsLabel", str, "veeamrepo", "XFS label of the volume (1-12 bytes, no / or space)."),
    _k("mountPoint", str, "/mnt/veeamrepo", "Where the MASTER mounts the volume."),
    _k(
        "xfsMountOptions",
        str,
        "",
        "Options of the MASTER's XFS mount (mount -o), comma-separated; empty for the"
        " defaults (e.g. noatime).",
    ),
    _k("cephMonitors", list, REQUIRED, "Ceph monitor addresses."),
    _k("cephUser", str, "veeamrepo", "Ceph client name (client.<name>), limited to the pool."),
    _k(
        "cephKeyring",
        str,
        None,
        "Key of client.<cephUser>, as ceph auth get-key prints it (secret; optional only"
        " for a lab stack, lab: true).",
        secret=True,
    ),
    _k("cephRepoUrl", str, None, "Ceph package repository, https (required on el7/el8/el9)."),
    # --- access
    _k("sshUser", str, "root", "User Fabric connects as: root (the converge uses no sudo)."),
    _k(
        "sshKeyFile",
        str,
        "~/.ssh/id_ed25519",
        "Operator private key; its .pub is authorized.",
    ),
    _k("converge", bool, True, "Converge every node with Fabric inside pulumi up."),
    _k(
        "trustFirstContact",
        bool,
        False,
        "Accept (and print) a node's own host key once when it lacks the shared one.",
    ),
    # --- DNS record for the VIP (RFC 2136)
    _k("dnsRecord", str, "repo-cluster", "Host name of the VIP's A record."),
    _k("dnsServer", str, None, "DNS server taking RFC 2136 updates (unset: no record)."),
    _k("dnsPort", int, 53, "Port of that DNS server."),
    _k("dnsZone", str, None, "Zone to update (default: domain)."),
    _k("dnsTsigKeyName", str, None, "TSIG key name for updates (unset: unsigned updates)."),
    _k("dnsTsigAlgorithm", str, "hmac-sha256", "TSIG algorithm."),
    _k("dnsTsigSecret", str, None, "TSIG key, base64 (secret).", secret=True),
    _k("dnsPtrZone", str, None, "Reverse zone for the VIP's PTR record (unset: no PTR)."),
    _k("dnsTimeout", int, 5, "Seconds to wait for the DNS server's answer."),
    _k(
        "dnsAdopt",
        bool,
        False,
        "Take over a record for the name that this stack did not create.",
    ),
)
