"""RepoCluster: the whole stack — vSphere look-ups, shared secrets, one RepoNode per node.

Looked up once: datacenter, compute cluster, datastore, network, template. Generated once and
kept in the state: the SSH host keys every node shares and, unless the stack sets one, the VRRP
auth_pass. Each node's bundle (components/bundle/) is rendered from the settings and those
secrets; its user-data/meta-data go to the VM (no secret and no key in them: the VM makes its
own host key and publishes the public half), and the bundle itself is exposed (``bundles``)
for the converge step, which installs every file, the secret ones included, after checking
the node's host key against the one its VM published (components/vcenter/published.py). A
cluster-wide VRRP change goes first, to every node at once (components/vrrp_rollout.py). Once
the nodes exist, they are changed one at a time, the lowest priority first, each serving
again before the next one's VM is touched: a rolling replace (see the comment in __init__).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_vsphere as vsphere

from components.auth_pass import AuthPass
from components.bundle import Bundle, Secrets, render_node
from components.bundle.guestinfo import stack_marker
from components.cluster_check import ClusterCheck, ClusterCheckArgs
from components.config import Settings, pulumi_config
from components.converge.trust import record_path
from components.dns_record import DnsRecord, DnsRecordArgs
from components.host_keys import HostKeys
from components.node import RepoNode, RepoNodeArgs, Template
from components.node_converge import NodeConverge, NodeConvergeArgs
from components.vcenter.adoption import AdoptedVm, differences
from components.vrrp_rollout import VrrpRollout, VrrpRolloutArgs


@dataclass(frozen=True)
class RepoClusterArgs:
    settings: Settings
    """The validated stack settings (components/config/)."""
    root: Path
    """The project directory: relative paths in the settings (sshKeyFile) start there."""
    authorized_keys: tuple[str, ...]
    """The operator's public keys the nodes admit (bundle.authorized_keys, required)."""
    existing: frozenset[str] | None = None
    """The nodes whose VM exists already (the preflight's look at vCenter); None: not looked
    at (``preflight: false``), built as a first build is."""
    adopted: Mapping[str, AdoptedVm] = field(default_factory=dict)
    """Node name -> the existing VM it adopts, as the preflight read it."""
    masters: frozenset[str] = frozenset()
    """The nodes whose VM reports keepalived's MASTER state: a rolling change takes them last."""


class RepoCluster(pulumi.ComponentResource):
    """N repo VMs sharing host keys and a VIP; exposes what the converge step needs."""

    provider: vsphere.Provider
    host_keys: HostKeys
    auth_pass: pulumi.Output[str]
    secrets: pulumi.Output[Secrets]
    """Secret: the resolved secrets the bundles were rendered with."""
    bundles: dict[str, pulumi.Output[Bundle]]
    """Secret: node name -> its rendered bundle."""
    nodes: dict[str, RepoNode]
    """Node name -> its RepoNode (``.vm`` is the VirtualMachine)."""
    outputs: dict[str, Any]
    """The stack outputs: vip, dns_name, nodes, ssh_host_key_fingerprints (no secret)."""

    def __init__(
        self, name: str, args: RepoClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("repo-cluster:index:RepoCluster", name, {}, opts)
        s = args.settings
        stack_id = stack_marker(pulumi.get_project(), pulumi.get_stack())
        password = s.vsphere_password.value
        # Explicit provider: the password enters as a secret whatever the stack file holds.
        self.provider = vsphere.Provider(
            f"{name}-vsphere",
            vsphere_server=s.vsphere_server,
            user=s.vsphere_user,
            password=pulumi.Output.secret(password) if password is not None else None,
            allow_unverified_ssl=s.allow_unverified_ssl,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        invoke = pulumi.InvokeOptions(parent=self, provider=self.provider)

        dc = vsphere.get_datacenter(name=s.datacenter, opts=invoke)
        compute = vsphere.get_compute_cluster(name=s.cluster, datacenter_id=dc.id, opts=invoke)
        datastore = vsphere.get_datastore(name=s.datastore, datacenter_id=dc.id, opts=invoke)
        network = vsphere.get_network(name=s.network, datacenter_id=dc.id, opts=invoke)
        template = Template.from_result(
            s.template,
            vsphere.get_virtual_machine(name=s.template, datacenter_id=dc.id, opts=invoke),
        )
        template.check_disk(s.disk_gb)  # before anything is created
        pool_id = (
            vsphere.get_resource_pool(name=s.resource_pool, datacenter_id=dc.id, opts=invoke).id
            if s.resource_pool
            else compute.resource_pool_id
        )

        self.host_keys = HostKeys(f"{name}-host-keys", comment=f"root@{s.dns_fqdn}", opts=child)
        if s.vrrp_auth_pass.available:
            self.auth_pass = pulumi.Output.secret(s.vrrp_auth_pass.value)
        else:
            self.auth_pass = AuthPass(f"{name}-vrrp-auth-pass", opts=child).result

        self.secrets = pulumi.Output.secret(
            pulumi.Output.all(self.host_keys.keys, self.auth_pass).apply(
                lambda a: Secrets.resolve(s, host_keys=a[0], vrrp_auth_pass=a[1])
            )
        )
        authorized = args.authorized_keys
        self.bundles = {
            n.name: pulumi.Output.secret(
                self.secrets.apply(lambda sec, n=n: render_node(s, n, sec, authorized))
            )
            for n in s.nodes
        }

        # Day 2 (a node's VM exists): one node after the other, the lowest priority first and
        # the MASTER last.
        # Each VM waits for the previous node's converge step, which ends only once that
        # node serves (MASTER, or BACKUP beside it): a change that replaces the VMs (a new
        # template, `pulumi up --replace`) replaces the BACKUP(s) first and the MASTER last,
        # so the VIP moves once, and a node that does not come back stops the rollout with
        # the others untouched. A first build makes every VM at once and converges the top
        # priority first: keepalived's first start decides the first MASTER (nopreempt
        # keeps it).
        rolling = s.converge and bool(args.existing)
        order = (  # the MASTER last, as its VM reports it (sorted() keeps the rest's order)
            tuple(sorted(reversed(s.start_order), key=lambda n: n.name in args.masters))
            if rolling
            else s.start_order
        )
        key_file = str(s.ssh_key_path(args.root))
        if s.converge:  # a cluster-wide VRRP change first, before any node's own step
            rollout = VrrpRollout(
                f"{name}-vrrp",
                VrrpRolloutArgs(
                    config=pulumi_config(secrets=False),
                    existing=sorted(args.existing) if args.existing is not None else None,
                    bundles=self.bundles,
                    key_file=key_file,
                    known_host_keys=self.host_keys.public_keys,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        for vm in args.adopted.values():  # the adopted server is taken as it is
            for d in differences(s, vm):
                pulumi.log.warn(d, resource=self)
        self.nodes = {}
        steps: list[pulumi.Resource] = []
        for n in order:
            bundle = self.bundles[n.name]
            node = RepoNode(
                f"{name}-{n.name}",
                RepoNodeArgs(
                    host_name=n.name,
                    domain=s.domain,
                    address=s.node_address(n),
                    gateway=s.gateway,
                    nameservers=s.nameservers,
                    cpus=s.cpus,
                    memory_mb=s.memory_mb,
                    disk_gb=s.disk_gb,
                    template=template,
                    resource_pool_id=pool_id,
                    datastore_id=datastore.id,
                    network_id=network.id,
                    user_data=bundle.apply(lambda b: b.user_data),
                    meta_data=bundle.apply(lambda b: b.meta_data),
                    stack_id=stack_id,
                    folder=s.folder,
                    annotation=s.annotation,
                    after=tuple(steps[-1:]) if rolling else (),
                    adopted=args.adopted.get(n.name),
                ),
                opts=child,
            )
            self.nodes[n.name] = node
            vm = node.vm
            if not s.converge:
                continue
            # Fabric makes the node match its bundle once its VM exists; after the previous
            # node's step: one after the other
            steps.append(
                NodeConverge(
                    f"{name}-{n.name}-converge",
                    NodeConvergeArgs(
                        vm_id=vm.id,
                        bundle=bundle,
                        ip=str(n.ip),
                        ssh_user=s.ssh_user,
                        key_file=key_file,
                        known_host_keys=self.host_keys.public_keys,
                        trust_first_contact=s.trust_first_contact,
                        vcenter={
                            "server": s.vsphere_server,
                            "user": s.vsphere_user,
                            "unverified_ssl": s.allow_unverified_ssl,
                            "stack_id": stack_id,
                        },
                        vcenter_password=password or "",
                        confirmed_host_key=n.host_key,
                        record=str(record_path(s, pulumi.get_stack(), args.root)),
                        first_contact_secrets=s.lab,
                        config=pulumi_config(secrets=False),
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[vm, rollout, *steps[-1:]]),
                )
            )
        if s.converge:
            ClusterCheck(
                f"{name}-check",
                ClusterCheckArgs(
                    config=pulumi_config(secrets=False),
                    vm_ids=[self.nodes[n.name].vm.id for n in s.nodes],
                    digests=[
                        pulumi.Output.unsecret(self.bundles[n.name].apply(lambda b: b.digest))
                        for n in s.nodes
                    ],
                    key_file=key_file,
                    known_host_keys=self.host_keys.public_keys,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=steps),
            )

        if s.dns_server:  # the VIP's name, as the article registers it by hand
            DnsRecord(
                f"{name}-dns",
                DnsRecordArgs(s, s.dns_tsig_secret.value),
                opts=pulumi.ResourceOptions(parent=self),
            )

        if s.anti_affinity:
            vsphere.ComputeClusterVmAntiAffinityRule(
                f"{name}-anti-affinity",
                name=f"{stack_id.replace('/', '-')}-anti-affinity",
                compute_cluster_id=compute.id,
                virtual_machine_ids=[self.nodes[n.name].vm.id for n in s.nodes],
                # Not mandatory: vSphere HA may still restart a failed node's VM on the host
                # of its peer rather than leave the cluster with one node.
                mandatory=False,
                opts=child,
            )

        self.outputs = {
            "vip": str(s.vip.ip),
            "dns_name": s.dns_fqdn,
            "nodes": {
                n.name: {
                    "ip": str(n.ip),
                    "vm_uuid": self.nodes[n.name].vm.uuid,
                    "priority": n.priority,
                }
                for n in s.nodes
            },
            "ssh_host_key_fingerprints": self.host_keys.fingerprint_map,
        }
        self.register_outputs(self.outputs)
