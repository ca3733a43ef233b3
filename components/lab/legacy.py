"""The article's single repository server, set up in the lab for a stack to adopt.

Before the article's Part 7 there is one Veeam Linux repository server: the RBD image mapped and
its XFS mounted at boot by its own unit (``rbd-<image>.service``, with the automount line), and
Veeam writing there through the server's address. :func:`make_server` builds that server in the
lab, as an admin made it by hand: a VM in vcsim (no stack marker, the settings a vCenter reports,
see :func:`server_spec`), booted by the host agent (it runs the VM of a node
the stack adopts), its first boot from a user-data of its own (no repo-cluster file), then the
Ceph client's files and the unit written through the guest agent (a key never goes in a VM's
extraConfig), the unit enabled and started. What it returns is what the admin reads on the
console for the stack's ``hostKey``: the fingerprint of the server's own SSH host key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2
from pyVmomi import vim

import components.lab.secrets as labsecrets
import components.lab.vcsim as labvcsim
from components.bundle import PATHS, Secrets, authorized_keys, render_node
from components.bundle.guestinfo import STACK_MARKER, guestinfo
from components.config import PROJECT_ROOT, Settings
from components.lab.net import LabError
from components.lab.plan import Lab
from components.lab.vmexec import node_exec, node_run
from components.lab.vms import Say, wait_booted
from components.vcenter import preflight

FILES = PROJECT_ROOT / "node" / "legacy"


def documents(
    s: Settings, name: str, secrets: Secrets, authorized: tuple[str, ...]
) -> tuple[str, str, dict[str, bytes]]:
    """(user-data, meta-data, the Ceph client's files by path) of the server ``name``."""
    node = s.node(name)
    bundle = render_node(s, node, secrets, authorized)  # its meta-data: the same network
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(FILES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    unit_path = PATHS.unit_file(PATHS.rbd_unit(s.rbd_image))
    unit = env.get_template("rbd.service.j2").render(s=s, unit_path=unit_path)
    user_data = env.get_template("user-data.j2").render(
        node=node, fqdn=node.fqdn(s.domain), authorized=authorized, unit=unit, unit_path=unit_path
    )
    wanted = (PATHS.ceph_conf, PATHS.ceph_keyring(s.ceph_user))
    files = {f.path: f.content for f in bundle.files if f.path in wanted}
    return user_data, bundle.meta_data, files


def server_spec(s: Settings, name: str, datastore: Any, network: Any, extra: dict[str, str]) -> Any:
    """The lab's VM spec of the stack's size, with what a vCenter reports of any VM (and vcsim
    stores only when given): the tools upgrade policy, the disk's sharing and IO shares. An
    adoption reads them (components/vcenter/adoption.py)."""
    spec = labvcsim.vm_spec(s, name, datastore, network, extra)
    spec.tools = vim.vm.ToolsConfigInfo(toolsUpgradePolicy="manual")
    disk = spec.deviceChange[1].device
    disk.backing.sharing = "sharingNone"
    disk.storageIOAllocation = vim.StorageResourceManager.IOAllocationInfo(
        limit=-1, reservation=0, shares=vim.SharesInfo(level="normal", shares=1000)
    )
    return spec


def create_server(s: Settings, name: str, extra: dict[str, str]) -> None:
    """The server's VM in vcsim (:func:`server_spec`, ``extra`` as its extraConfig), powered
    on; LabError when a VM of that name exists already."""
    with preflight.connect(s) as si:
        content = si.RetrieveContent()
        if labvcsim.find(content, vim.VirtualMachine, name) is not None:
            raise LabError(f"vcsim: a VM named {name!r} exists already")
        vm = labvcsim.create(content, s, lambda ds, net: server_spec(s, name, ds, net, extra))
        labvcsim.wait_task(vm.PowerOnVM_Task())


def make_server(lab: Lab, name: str, repo: Path, say: Say = print) -> str:
    """The server ``name`` running with the volume mounted; the SHA256 fingerprint of its SSH
    host key. LabError when a step fails."""
    s = lab.settings
    secrets = labsecrets.load_or_create(s, lab.stack, repo)
    authorized = authorized_keys(s, repo, required=True)
    user_data, meta_data, files = documents(s, name, secrets, authorized)
    extra = {k: v for k, v in guestinfo(user_data, meta_data, "").items() if k != STACK_MARKER}
    create_server(s, name, extra)
    say(f"lab {lab.stack}: {name}: the single repository server, made by hand in vcsim")
    wait_booted(lab, [name], say, time.monotonic())
    for path, data in files.items():  # typed in on the console
        node_exec(
            lab.stack,
            name,
            ["sh", "-c", f"umask 077; mkdir -p {Path(path).parent}; cat > {path}"],
            input=data.decode(),
            check=True,
        )
    unit = PATHS.rbd_unit(s.rbd_image)
    node_run(
        lab.stack, name, f"systemctl daemon-reload && systemctl enable --now {unit}", check=True
    )
    mounted = node_exec(lab.stack, name, ["findmnt", "-rn", "-o", "SOURCE", s.mount_point]).stdout
    if not mounted.strip().startswith("/dev/rbd"):
        raise LabError(f"{name}: {unit} did not mount the volume on {s.mount_point}: {mounted!r}")
    say(f"lab {lab.stack}: {name}: {s.rbd_pool}/{s.rbd_image} mapped, mounted on {s.mount_point}")
    out = node_exec(
        lab.stack, name, ["ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True
    ).stdout
    return out.split()[1]
