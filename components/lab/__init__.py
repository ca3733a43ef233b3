"""The embedded lab: everything `make lab` builds on one machine, no vCenter needed.

``net`` (commands, bridge, taps), ``image`` (the guest image, cached), ``qemu`` (one VM),
``plan`` (what a stack's lab is: names, addresses, paths), ``vmexec`` (commands inside a VM
through its guest agent), ``hostd`` (the lab's ESXi: runs vcsim's powered-on VMs as QEMU
VMs), ``vcsim`` (the vSphere simulator), ``ceph``, ``dns``, ``secrets``, ``faults`` (the
drill's VM faults), ``lifecycle`` (lab_up / lab_down), ``deploy`` (the lab's Pulumi project
copy). Imports only downward: config, bundle, vcenter, dns.
"""

from components.lab.lifecycle import health, lab_down, lab_up, leftovers
from components.lab.net import LabError
from components.lab.plan import REPO, Lab, LabNode, load_lab
from components.lab.vmexec import node_exec, node_run

__all__ = [
    "REPO",
    "Lab",
    "LabError",
    "LabNode",
    "health",
    "lab_down",
    "lab_up",
    "leftovers",
    "load_lab",
    "node_exec",
    "node_run",
]
