"""RepoNode: one repo VM, cloned from the template, its first boot driven by cloud-init.

The clone keeps what the template's guest depends on (guest id, SCSI controller type, NIC
adapter type, firmware, disk provisioning) and sets size, placement, the fixed IPv4 (guest
customization) and the cloud-init user-data/meta-data (``guestinfo.*`` in ``extra_config``).
"""

from __future__ import annotations

import inspect
import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_vsphere as vsphere

from components.bundle.guestinfo import STACK_MARKER
from components.bundle.guestinfo import guestinfo as node_guestinfo
from components.vcenter.adoption import AdoptedVm

# What an adopted VM keeps as it is (ignore_changes): every setting of the resource but its disks
# and the two policies below (declared as vCenter reports them: kept, an unset policy read as ""
# would fail the provider's own check), its extraConfig (the stack's marker goes there) and the
# provider's own knobs (how long to wait for what). Taken from the SDK, so a newer provider's
# settings are kept too.
_DECLARED = {"tools_upgrade_policy", "swap_placement_policy"}
_MANAGED = {"disks", "extra_config", "extra_config_reboot_required", "name", *_DECLARED}
_KNOBS = ("wait_for_", "force_power_off", "_timeout")
ADOPTED_KEEPS = sorted(
    "".join([p.split("_")[0], *(w.title() for w in p.split("_")[1:])])
    for p in inspect.signature(vsphere.VirtualMachine._internal_init).parameters
    if p not in ("__self__", "resource_name", "opts", "__props__", *_MANAGED)
    and not any(k in p for k in _KNOBS)
)


@dataclass(frozen=True)
class Template:
    """What a clone takes from its template (``vsphere.get_virtual_machine``)."""

    name: str
    """The template's VM name."""
    uuid: str
    """BIOS UUID, the clone source."""
    guest_id: str
    """Guest OS id (e.g. ``centos7_64Guest``)."""
    scsi_type: str
    """SCSI controller type (``pvscsi``, ``lsilogic``...)."""
    nic_type: str
    """Adapter type of the first NIC (``vmxnet3``...)."""
    firmware: str
    """``bios`` or ``efi``."""
    disk_gb: int
    """Size of the first disk, GB."""
    thin_provisioned: bool
    """Whether the first disk is thin provisioned."""
    eagerly_scrub: bool
    """Whether the first disk is eager-zeroed."""

    @classmethod
    def from_result(cls, name: str, vm: vsphere.GetVirtualMachineResult) -> Template:
        if not vm.disks or not vm.network_interface_types:
            raise pulumi.RunError(
                f"repo-cluster:template: {name!r} needs at least one disk and one NIC"
            )
        disk = vm.disks[0]
        return cls(
            name=name,
            uuid=vm.uuid,
            guest_id=vm.guest_id,
            scsi_type=vm.scsi_type,
            nic_type=vm.network_interface_types[0],
            firmware=vm.firmware or "bios",
            disk_gb=int(disk.size),
            thin_provisioned=bool(disk.thin_provisioned),
            eagerly_scrub=bool(disk.eagerly_scrub),
        )

    def check_disk(self, disk_gb: int) -> None:
        """A clone's disk can grow, never shrink."""
        if disk_gb < self.disk_gb:
            raise pulumi.RunError(
                f"repo-cluster:diskGb: {disk_gb} GB is smaller than the {self.disk_gb} GB "
                f"disk of template {self.name!r} (a clone's disk can grow, never shrink)"
            )


@dataclass(frozen=True)
class RepoNodeArgs:
    """Everything one repo VM needs; ids come from the cluster's vSphere look-ups."""

    host_name: str
    """Guest host name and VM name (``repo1``)."""
    domain: str
    """DNS domain of the guest (``skunkworks.local``)."""
    address: ipaddress.IPv4Interface
    """Fixed IPv4 address with prefix (``10.2.50.161/24``)."""
    gateway: ipaddress.IPv4Address
    """Default gateway."""
    nameservers: tuple[ipaddress.IPv4Address, ...]
    """DNS servers the guest resolves with."""
    cpus: int
    """vCPUs."""
    memory_mb: int
    """Memory, MB."""
    disk_gb: int
    """System disk, GB; not smaller than the template's disk."""
    template: Template
    """The clone source and the hardware settings taken from it."""
    resource_pool_id: str
    """Resource pool (the cluster's root pool)."""
    datastore_id: str
    """Datastore of the VM's files and disk."""
    network_id: str
    """Port group of the single NIC."""
    user_data: pulumi.Input[str]
    """cloud-init user-data: no secret file, no key (kept secret in the state all the same:
    it comes from the secret bundle, and a diff of it shows nothing an operator needs)."""
    meta_data: pulumi.Input[str]
    """cloud-init meta-data."""
    stack_id: str
    """``<project>/<stack>``: marks the VM as this stack's (see components/preflight.py)."""
    folder: str | None = None
    """VM folder, relative to the datacenter's VM folder."""
    annotation: str | None = None
    """VM notes."""
    after: tuple[pulumi.Resource, ...] = ()
    """What the VM waits for before it is created, updated or replaced (the previous node's
    converge step in a rolling change)."""
    adopted: AdoptedVm | None = None
    """The existing VM this node adopts (imported as it is, never cloned): None for a clone."""

    def __post_init__(self) -> None:
        if self.adopted is None:
            self.template.check_disk(self.disk_gb)


class RepoNode(pulumi.ComponentResource):
    """One repo VM (``vm``), cloned and customized, carrying its cloud-init data."""

    vm: vsphere.VirtualMachine

    def __init__(
        self, name: str, args: RepoNodeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("repo-cluster:index:RepoNode", name, {}, opts)
        if args.adopted is not None:
            self.vm = _adopted_vm(f"{name}-vm", args, args.adopted, self)
            self.register_outputs({"vm_uuid": self.vm.uuid, "ip": str(args.address.ip)})
            return
        t = args.template
        guestinfo = pulumi.Output.secret(
            pulumi.Output.all(args.user_data, args.meta_data).apply(
                lambda d: node_guestinfo(d[0], d[1], args.stack_id)
            )
        )
        self.vm = vsphere.VirtualMachine(
            f"{name}-vm",
            name=args.host_name,
            resource_pool_id=args.resource_pool_id,
            datastore_id=args.datastore_id,
            folder=args.folder,
            annotation=args.annotation,
            num_cpus=args.cpus,
            memory=args.memory_mb,
            guest_id=t.guest_id,
            scsi_type=t.scsi_type,
            firmware=t.firmware,
            network_interfaces=[
                vsphere.VirtualMachineNetworkInterfaceArgs(
                    network_id=args.network_id, adapter_type=t.nic_type
                )
            ],
            disks=[
                vsphere.VirtualMachineDiskArgs(
                    label="disk0",
                    size=args.disk_gb,
                    thin_provisioned=t.thin_provisioned,
                    eagerly_scrub=t.eagerly_scrub,
                )
            ],
            clone=vsphere.VirtualMachineCloneArgs(
                template_uuid=t.uuid,
                customize=vsphere.VirtualMachineCloneCustomizeArgs(
                    linux_options=vsphere.VirtualMachineCloneCustomizeLinuxOptionsArgs(
                        host_name=args.host_name, domain=args.domain
                    ),
                    network_interfaces=[
                        vsphere.VirtualMachineCloneCustomizeNetworkInterfaceArgs(
                            ipv4_address=str(args.address.ip),
                            ipv4_netmask=args.address.network.prefixlen,
                        )
                    ],
                    ipv4_gateway=str(args.gateway),
                    dns_server_lists=[str(a) for a in args.nameservers],
                    dns_suffix_lists=[args.domain],
                ),
            ),
            extra_config=guestinfo,
            # cloud-init reads guestinfo at first boot only; later changes are converged over
            # SSH, so an update of extra_config must not power-cycle a cluster node.
            extra_config_reboot_required=False,
            # Customization sets the address; nothing here waits on the guest's network
            # (vcsim reports no routable gateway).
            wait_for_guest_net_routable=False,
            wait_for_guest_net_timeout=0,
            # a replacement keeps the node's name and IP: the old VM must go first. Not managed
            # here, so never a reason to touch a running node: the swap file's placement (a
            # vCenter reports "inherit"; vcsim reports nothing, which read as drift on every up)
            # and the OVF maps of the clone block (for OVF sources only; computed after a clone).
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.after),
                delete_before_replace=True,
                ignore_changes=[
                    "swapPlacementPolicy",
                    "clone.ovfNetworkMap",
                    "clone.ovfStorageMap",
                ],
            ),
        )
        self.register_outputs({"vm_uuid": self.vm.uuid, "ip": str(args.address.ip)})


def _adopted_vm(
    name: str, args: RepoNodeArgs, vm: AdoptedVm, parent: pulumi.Resource
) -> vsphere.VirtualMachine:
    """The existing VM, imported (by its inventory path) and declared as vCenter holds it: no
    clone, no customization, no power cycle, no change to its hardware or disks. Only the
    stack's marker is added to its extraConfig, in place. ``pulumi destroy`` leaves it in
    vCenter (it was there before the stack); its disks are kept if ever removed from it."""
    return vsphere.VirtualMachine(
        name,
        name=vm.name,
        resource_pool_id=args.resource_pool_id,
        num_cpus=vm.cpus,
        memory=vm.memory_mb,
        guest_id=vm.guest_id,
        firmware=vm.firmware,
        scsi_type=vm.scsi_type,
        tools_upgrade_policy=vm.tools_upgrade_policy,
        swap_placement_policy=vm.swap_placement_policy,
        network_interfaces=[
            vsphere.VirtualMachineNetworkInterfaceArgs(network_id=net, adapter_type=kind)
            for net, kind in vm.nics
        ],
        disks=[
            vsphere.VirtualMachineDiskArgs(
                label=d.label,
                unit_number=d.unit_number,
                size=d.size_gb,
                thin_provisioned=d.thin_provisioned,
                eagerly_scrub=d.eagerly_scrub,
                disk_mode=d.disk_mode,
                disk_sharing=d.disk_sharing,
                write_through=d.write_through,
                io_share_level=d.io_share_level,
                io_share_count=d.io_share_count,
                io_limit=d.io_limit,
                io_reservation=d.io_reservation,
                keep_on_remove=True,
            )
            for d in vm.disks
        ],
        extra_config={STACK_MARKER: args.stack_id},
        extra_config_reboot_required=False,
        wait_for_guest_net_routable=False,
        wait_for_guest_net_timeout=0,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(args.after),
            import_=vm.path,
            # once adopted, as for a clone: vcsim never stores the swap placement (its "" on
            # the import must meet the declared value, it would fail the provider's check)
            ignore_changes=[*ADOPTED_KEEPS, *(["swapPlacementPolicy"] if vm.managed else [])],
            retain_on_delete=True,
        ),
    )
