"""Day 2, the first step of the article: its single repository server is adopted, with its data.

    before   repo1: the article's Part 6 server (not ours): the image mapped and its XFS
             mounted at boot by its own unit, a file written there, no keepalived
    adopted  repo1 MASTER (VIP, volume; the same VM, the same XFS)   repo2 BACKUP (a clone)

The lab makes repo1 as an admin did (components/lab/legacy.py) and reads its host key's
fingerprint on its console (the guest agent); the stack file (``adopt``, a copy of the sim
stack written for the test) then names it: ``adopt: true`` and that ``hostKey``. `make lab`
(`pulumi up`) imports its VM, clones repo2, converges repo1 first (its own unit retired, the
volume released once, then mapped exclusively and mounted by keepalived's MASTER) and repo2
after it as BACKUP. Sampled throughout: never two VIP holders or mounts, and repo2 never
mounts. After it: the file reads back through the VIP (ssh, the shared host key the stack
reports), the XFS is the same file system (its UUID), repo1 is the same VM in vcsim.

vcsim stores no swapPlacement (tests/e2e/test_engine_adopt.py): the import reads "" where a vCenter
reads the "inherit" the program declares, so in the lab the provider power-cycles the adopted
VM once (its own unit mounts the volume again at boot, and the converge releases it as
before). On a vCenter the import finds what is declared and the VM is not power-cycled.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pyVmomi import vim

from components import lab as labmod
from components.config import Settings
from components.lab import Lab
from components.lab import vcsim as labvcsim
from components.lab.legacy import make_server
from components.lab.plan import stack_id
from components.lab.vmexec import node_exec
from components.vcenter import preflight
from tests.lab.labkit import (
    ROOT,
    Samples,
    at_most_one_holder,
    keyscan,
    running_pictures,
    ssh_argv,
)
from tests.lab.test_make_lab import has_plugin, make, remove_stack

pytestmark = pytest.mark.lab

ADOPT = "adopt"
STACK_FILE = ROOT / f"Pulumi.{ADOPT}.yaml"
NAMES = ("repo1", "repo2")
# a well-formed fingerprint while the server does not exist yet (lab-up needs a valid stack)
UNKNOWN = "SHA256:" + "A" * 43


def write_stack(host_key: str) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.sim.yaml").read_text(encoding="utf-8"))
    nodes = doc["config"]["repo-cluster:nodes"]
    assert [n["name"] for n in nodes] == list(NAMES)
    nodes[0].update(adopt=True, hostKey=host_key)
    text = "# written by tests/lab/test_adopt.py; removed after it\n" + yaml.safe_dump(doc)
    STACK_FILE.write_text(text, encoding="utf-8")


@pytest.fixture
def adopt_stack(no_lab: Lab) -> Iterator[Path]:
    """The adopt stack's file; its lab and Pulumi state removed after the test (failed or not).
    The sim lab is down before and after (no_lab)."""
    if not has_plugin():
        pytest.skip(
            "adopting a VM is a Pulumi import: it needs pulumi-resource-vsphere 4.18.2 "
            "(scripts/vsphere-plugin says where it is looked for and how to install it)"
        )
    write_stack(UNKNOWN)
    try:
        yield STACK_FILE
    finally:
        remove_stack(ADOPT, STACK_FILE)


def _vm(s: Settings, name: str) -> dict[str, str]:
    """The VM ``name`` in vcsim: its uuid and managed object id."""
    with preflight.connect(s) as si:
        vm = labvcsim.find(si.RetrieveContent(), vim.VirtualMachine, name)
        return {"uuid": vm.config.uuid, "moid": vm._moId}


def _on(node: str, script: str, data: str | None = None) -> str:
    r = node_exec(ADOPT, node, ["sh", "-c", script], input=data, check=True)
    return r.stdout.strip()


def _through_the_vip(lab: Lab, text: str, tmp: Path, command: str) -> str:
    """``command`` over ssh to the VIP, trusting only the shared host key, whose fingerprint
    must be one the stack reports (``text``: `make lab`'s output)."""
    vip = str(lab.settings.vip.ip)
    scan = keyscan(vip)
    seen = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=scan, capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert seen in text, f"the VIP serves {seen}, not a host key the stack reports"
    known = tmp / "known_hosts"
    known.write_text(scan, encoding="utf-8")
    r = subprocess.run(
        ssh_argv(lab, vip, known, command), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_single_repository_server_is_adopted_with_its_data(
    adopt_stack: Path, tmp_path: Path
) -> None:
    labmod.lab_up(ADOPT, vms=False)
    lab = labmod.load_lab(ADOPT)
    s = lab.settings
    fingerprint = make_server(lab, "repo1", ROOT)
    data = f"a backup written before the adoption {time.time()}\n"
    _on("repo1", f"cat > {s.mount_point}/before-adoption; sync", data)
    xfs = _on("repo1", f"blkid -o value -s UUID $(findmnt -rn -o SOURCE {s.mount_point})")
    before = {k: _vm(s, "repo1")[k] for k in ("uuid", "moid")}
    assert labvcsim.extra_config(s, "repo1").get("repo-cluster.stack") is None

    write_stack(fingerprint)  # read on the console: the stack confirms it out of band
    with Samples(ADOPT, NAMES) as sampler:
        up = make("lab", {"STACK": ADOPT})
    text = up.stdout + up.stderr
    assert up.returncode == 0, text[-4000:]

    samples = sampler.samples
    assert len(samples) > 10, samples
    at_most_one_holder(samples)
    for i, seen in enumerate(samples):
        assert not seen.get("repo2", ("", False, False))[2], f"sample {i}: repo2 mounted: {seen}"
    assert any(seen.get("repo1", ("", False, False))[2] for seen in samples[:3]), samples[:3]
    assert running_pictures(lab, NAMES) == {
        "repo1": ("MASTER", True, True),
        "repo2": ("BACKUP", False, False),
    }

    # the data, through the VIP; the same file system; the same VM, now the stack's
    assert _through_the_vip(lab, text, tmp_path, f"cat {s.mount_point}/before-adoption") == data
    assert _on("repo1", f"blkid -o value -s UUID $(findmnt -rn -o SOURCE {s.mount_point})") == xfs
    assert {k: _vm(s, "repo1")[k] for k in ("uuid", "moid")} == before
    assert labvcsim.extra_config(s, "repo1").get("repo-cluster.stack") == stack_id(lab)
    # mapped exclusively by keepalived's MASTER now, the article's boot-time unit retired
    assert _on("repo1", "systemctl is-enabled rbd-veeamrepo.service || true") != "enabled"
    assert "exclusive" in _on("repo1", "cat /run/keepalivednotify/log")

    # a second `make lab` changes nothing
    again = make("lab", {"STACK": ADOPT})
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert re.search(r"^Resources:\n\s+\d+ unchanged\n\n", again.stdout, re.M), again.stdout
