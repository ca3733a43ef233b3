"""The embedded lab: everything `make lab` builds on one machine, no vCenter needed.

``plan`` (what a stack's lab is: names, addresses, paths), ``net`` (namespaces, links,
commands inside a node), ``node`` (one node's files and sshd), ``lifecycle`` (lab_up /
lab_down), ``secrets`` (the lab's own secrets), ``vcsim`` (the vSphere simulator). Imports
only downward: config, bundle, vcenter, dns.
"""

from components.lab.lifecycle import health, lab_down, lab_up, leftovers
from components.lab.net import LabError, node_argv, node_exec, node_run
from components.lab.plan import REPO, Lab, LabNode, State, load_lab

__all__ = [
    "REPO",
    "Lab",
    "LabError",
    "LabNode",
    "State",
    "health",
    "lab_down",
    "lab_up",
    "leftovers",
    "load_lab",
    "node_argv",
    "node_exec",
    "node_run",
]
