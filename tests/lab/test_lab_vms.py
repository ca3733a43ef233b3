"""The lab's nodes are virtual machines, born as vSphere VMs are: their own kernel and systemd,
the hardware vcsim describes, a first boot by cloud-init from their guestinfo in vcsim, and no
way out of the lab's bridge. Looked at before anything converged them (this module runs first
on a fresh lab)."""

from __future__ import annotations

import base64
import gzip
import os
from pathlib import Path

import pytest

from components.bundle import PATHS, authorized_keys, render_cluster
from components.bundle.guestinfo import STACK_MARKER
from components.lab import Lab, node_exec
from components.lab import image as labimage
from components.lab import secrets as labsecrets
from components.lab import vcsim as labvcsim
from tests.lab.labkit import ROOT, STACK, fab, in_node, keyscan, qemu_processes, sh, ssh

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def bundles(sim_lab: Lab) -> dict:
    s = sim_lab.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    return render_cluster(s, secrets, authorized_keys(s, ROOT))


def test_each_vm_runs_its_own_kernel_and_systemd_and_finished_its_first_boot(sim_lab: Lab):
    host_kernel = os.uname().release
    for n in sim_lab.nodes:
        kernel = in_node(n.name, "uname", "-r").strip()
        assert kernel != host_kernel, f"{n.name} runs the host's kernel {kernel}"
        assert in_node(n.name, "cat", "/proc/1/comm").strip() == "systemd"
        assert in_node(n.name, "cloud-init", "status").split()[-1] == "done"
        assert in_node(n.name, "hostname").strip() == n.name
        dmi = in_node(n.name, "cat", "/sys/class/dmi/id/product_name").strip()
        assert dmi == "VMware Virtual Platform"
        # krbd is there (the MASTER maps with it); nothing is mapped before a converge
        in_node(n.name, "modprobe", "rbd")
        assert in_node(n.name, "sh", "-c", "ls /sys/bus/rbd/devices | wc -l").strip() == "0"


def test_each_vm_read_its_user_data_byte_for_byte_from_its_guestinfo(sim_lab: Lab, bundles):
    """cloud-init's VMware datasource, over the guestinfo channel, got exactly the bundle's
    documents that vcsim holds; then it cleared guestinfo.userdata, as the meta-data says."""
    s = sim_lab.settings
    for n in sim_lab.nodes:
        received = in_node(n.name, "cat", "/var/lib/cloud/instance/user-data.txt")
        assert received == bundles[n.name].user_data, f"{n.name}: user-data differs"
        data = in_node(n.name, "cat", "/run/cloud-init/instance-data.json")
        assert '"subplatform": "guestinfo (guestinfo.metadata)"' in data, data[:400]
        extra = labvcsim.extra_config(s, n.name)
        meta = gzip.decompress(base64.b64decode(extra["guestinfo.metadata"])).decode()
        assert meta == bundles[n.name].meta_data
        assert extra["guestinfo.userdata"] == "---"  # cleared by the guest (cleanup-guestinfo)
        assert extra[STACK_MARKER] == f"repo-cluster/{STACK}"
        assert extra["guestinfo.local-ipv4"] == str(n.address.ip)  # published by the guest


def test_no_private_key_or_secret_in_any_vm_configuration(sim_lab: Lab, bundles):
    """Whatever vcsim shows of each VM (its extraConfig, the user-data decoded) holds no
    private key, no keyring, no auth_pass: the VM made its own host key and published only
    its public half, which is the key sshd serves."""
    s = sim_lab.settings
    secrets = labsecrets.load_or_create(s, STACK, ROOT)
    needles = ["PRIVATE KEY", "auth_pass", "[client.", secrets.vrrp_auth_pass]
    for n in sim_lab.nodes:
        extra = labvcsim.extra_config(s, n.name)
        texts = [*extra.values(), bundles[n.name].user_data]
        texts.append(gzip.decompress(base64.b64decode(extra["guestinfo.metadata"])).decode())
        for needle in needles:
            assert not any(needle in text for text in texts), f"{n.name}: {needle[:12]}"
        own = extra[PATHS.host_key_guestinfo]
        served = keyscan(n, "ed25519").split()[1:3]
        assert own.split() == served, f"{n.name}: publishes {own}, serves {served}"


def test_first_boot_installed_what_the_template_lacked_from_the_lab_source(sim_lab: Lab):
    image = labimage.Image(Path(sim_lab.image_file.read_text().strip()))
    served = image.apt.joinpath("Packages").read_text()
    assert "Package: psmisc" in served
    for n in sim_lab.nodes:
        history = in_node(n.name, "cat", "/var/log/apt/history.log")
        assert "Install: psmisc" in history, history
        assert "install ok installed" in in_node(
            n.name, "dpkg-query", "-W", "-f=${Status}", "psmisc"
        )
        sources = in_node(n.name, "cat", "/etc/apt/sources.list.d/repo-cluster-lab.list")
        assert sources.strip() == f"deb [trusted=yes] {sim_lab.apt_url} ./"


def test_each_vm_has_the_hardware_and_address_vcsim_gave_it(sim_lab: Lab):
    s = sim_lab.settings
    for n in sim_lab.nodes:
        assert int(in_node(n.name, "nproc").strip()) == s.cpus
        mem_kb = int(in_node(n.name, "awk", "/MemTotal/ {print $2}", "/proc/meminfo"))
        assert s.memory_mb * 1024 * 0.85 < mem_kb <= s.memory_mb * 1024
        disk = int(in_node(n.name, "blockdev", "--getsize64", "/dev/vda"))
        assert disk == s.disk_gb * 1024**3
        root = int(in_node(n.name, "df", "--output=size", "-B1", "/").split()[-1])
        assert root > 0.9 * disk  # cloud-init grew the template's root to the VM's disk
        nic = in_node(n.name, "ip", "-4", "-o", "addr", "show", "dev", s.interface)
        assert f" {n.address} " in nic
        routes = in_node(n.name, "ip", "-4", "route")
        assert f"default via {s.gateway}" in routes
        assert node_exec(STACK, n.name, ["test", "-e", "/proc/sys/net/ipv6"]).returncode == 1


def test_the_bridge_forwards_nothing_out_of_the_lab(sim_lab: Lab):
    """A guest's default route leads to the host's address on the bridge, and no further."""
    bridge = sim_lab.bridge
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").read_text().strip() == "0"
    ports = sorted(p.name for p in Path(f"/sys/class/net/{bridge}/brif").iterdir())
    assert ports == sorted(n.tap for n in sim_lab.nodes)
    addrs = sh("ip", "-4", "-o", "addr", "show", "dev", bridge).stdout
    assert f" {sim_lab.gateway} " in addrs


def test_ssh_reaches_each_vm_by_the_host_key_it_published(sim_lab: Lab, known_hosts: Path):
    """Each VM made its own host key at first boot and published the public half in its
    guestinfo: strict host-key checking against exactly those (and the shared keys, not
    installed yet) lets ssh in."""
    for n in sim_lab.nodes:
        r = ssh(sim_lab, n, known_hosts, "hostname")
        assert r.returncode == 0 and r.stdout.strip() == n.name, r.stderr


def test_lab_up_again_changes_nothing(sim_lab: Lab):
    before = sorted(qemu_processes())
    out = fab("lab-up", "--stack", STACK)
    assert out.returncode == 0, out.stderr
    assert "nothing else to do" in out.stdout, out.stdout
    assert sorted(qemu_processes()) == before
