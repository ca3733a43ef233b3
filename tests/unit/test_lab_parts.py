"""The lab's pure parts: the guestinfo channel's protocol, the guest image's recipe digest and
kernel extraction, a VM's QEMU command line, and the drill's lab constants."""

from __future__ import annotations

import asyncio
import base64
import lzma
from pathlib import Path

import pytest

from components.converge import scenarios
from components.lab import ceph_conf, guestrpc, image, load_lab
from components.lab.qemu import Hardware, _run

pytestmark = pytest.mark.unit


def req(ident: str, command: str) -> str:
    return f"REQ {ident} {base64.b64encode(command.encode()).decode()}"


def res(line: str) -> tuple[str, str, str]:
    tag, ident, code, payload = line.rstrip("\n").split(" ")
    assert tag == "RES"
    return ident, code, base64.b64decode(payload).decode()


def test_guestinfo_channel_answers_as_vmware_tools_does() -> None:
    store = {"guestinfo.metadata": "instance-id: x\n"}
    sets: list[tuple[str, str]] = []

    def put(key: str, value: str) -> None:
        sets.append((key, value))
        store[key] = value

    get = store.get
    assert res(guestrpc.answer(req("1", "info-get guestinfo.metadata"), get, put)) == (
        "1",
        "0",
        "instance-id: x\n",
    )
    # cloud-init tells "no value" apart from a failure by this text
    assert res(guestrpc.answer(req("2", "info-get guestinfo.nothing"), get, put)) == (
        "2",
        "1",
        "No value found",
    )
    answer = guestrpc.answer(req("3", "info-set guestinfo.userdata ---"), get, put)
    assert res(answer) == ("3", "0", "")
    assert sets == [("guestinfo.userdata", "---")]
    # only guestinfo.* is readable or writable, and anything else is no request at all
    assert res(guestrpc.answer(req("4", "info-get other.key"), get, put))[1] == "1"
    assert res(guestrpc.answer(req("5", "info-set config.x y"), get, put))[1] == "1"
    assert guestrpc.answer("garbage", get, put) == ""
    assert sets == [("guestinfo.userdata", "---")]


def test_the_kernel_is_taken_out_of_its_xz_stream() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bzimage = b"MZ setup code" + b"\x00" * 100 + lzma.compress(elf, format=lzma.FORMAT_XZ)
    assert image.decompress_kernel(bzimage) == elf
    with pytest.raises(image.LabError, match="not xz-compressed"):
        image.decompress_kernel(b"MZ no stream here")


def test_the_image_digest_follows_its_recipe(tmp_path: Path, monkeypatch) -> None:
    files = tmp_path / "image_files"
    files.mkdir()
    for f in image.GUEST_FILES.iterdir():
        (files / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(image, "GUEST_FILES", files)
    first = image.recipe_digest()
    assert image.recipe_digest() == first  # deterministic
    (files / "vmware-rpctool").write_text("changed\n")
    assert image.recipe_digest() != first
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "vim"))
    assert len({first, image.recipe_digest()}) == 2


def test_a_vm_is_what_vsphere_would_give_a_node() -> None:
    lab = load_lab("sim")
    machine = lab.machine("repo1", "4223a7c4-0000-0000-0000-000000000001")
    hw = Hardware("4223a7c4-0000-0000-0000-000000000001", 2, 2048, 20, "00:50:56:aa:bb:cc")
    argv = machine.argv(hw, image.Image(Path("/img")), "t.sim.repo1", lab.apt_url)
    line = " ".join(argv)
    assert "-accel tcg,thread=multi" in line and "-cpu qemu64" in line
    assert "-smp 2 -m 2048" in line
    # the NIC behind a root port in slot 160 (the guest names it ens160), the vcsim MAC
    assert "pcie-root-port,id=port160,slot=160" in line
    assert "virtio-net-pci,netdev=nic0,mac=00:50:56:aa:bb:cc,bus=port160" in line
    assert "ifname=t.sim.repo1" in line
    # what cloud-init's VMware datasource checks, and the VM's BIOS UUID
    assert "product=VMware Virtual Platform" in line
    assert "uuid=4223a7c4-0000-0000-0000-000000000001" in line
    # the guest agent and the guestinfo channel, on local sockets only
    assert "name=org.qemu.guest_agent.0" in line and "name=org.repo-cluster.guestrpc" in line
    assert f"repo_cluster.apt={lab.apt_url}" in line
    assert lab.apt_url.startswith("http://198.18.50.1:")
    assert not any(a.startswith(("tcp:", "udp:")) for a in argv)


def test_the_long_stun_outlasts_the_lab_monitors_default_blocklist() -> None:
    assert scenarios.LAB_BLOCKLIST_DEFAULT == ceph_conf.LAB_BLOCKLIST_DEFAULT
    assert scenarios.STUN_LONG > ceph_conf.LAB_BLOCKLIST_DEFAULT
    stunned = scenarios.BY_KEY["master-stunned-long"]
    assert stunned.outlast == scenarios.STUN_LONG and stunned.heal == "resume"


def test_a_qmp_round_trip_leaves_the_threads_event_loop_alone() -> None:
    """Pulumi's runtime (the unit tier's mocks, in the same process as the lab tier) needs the
    main thread's event loop; asyncio.run would unset it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # stays the thread's loop: unsetting it is the bug looked for

    async def answer() -> int:
        return 42

    assert _run(answer()) == 42
    assert asyncio.get_event_loop() is loop
