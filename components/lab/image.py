"""The lab VMs' guest image: Debian 12 built from Debian's packages, once per machine, cached.

Why Debian, not CentOS 7: this machine reaches Debian's archive, no CentOS mirror; the product
renders for both (``osFamily``), and the lab stack says ``debian``. The image is the
lab's stand-in for a vSphere template: an OS with cloud-init reading guestinfo (the VMware
datasource), open-ssh, the Ceph client (krbd ``rbd map``), xfsprogs, and the QEMU guest agent
(the lab's way into a VM without the network, as VMware Tools' guest operations are). The
packages a node's first boot installs and that the image lacks (``FIRST_BOOT``) are downloaded
now and served on the lab's bridge (:mod:`components.lab.hostd`), so the user-data's
``apt-get install`` runs for real and no guest reaches beyond the bridge.

The recipe (package lists, the files in ``image_files/``, this module's build steps) has a digest;
an image is built once per digest under ``~/.cache/repo-cluster/images/<digest>/`` and
reused, a changed recipe builds a new one. What a VM boots from it: ``vmlinux`` (the
uncompressed kernel, booted directly: QEMU skips the decompression), a small ``initrd.img``
(virtio and ext4 only), ``disk.qcow2`` (an ext4 root the VM's copy-on-write overlay sits on;
cloud-init grows it to the VM's disk size) and ``apt/`` (the packages served on the bridge).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from components.bundle.packages import BASE_PACKAGES
from components.lab.net import LabError, run

GUEST_FILES = Path(__file__).resolve().parent / "image_files"
SUITE = "bookworm"
# Installed in the image: what a vSphere template for this product would carry, and what
# makes it a VM of this lab (the guest agent, ifupdown for cloud-init's network config).
PACKAGES = (
    *("systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools", "kmod"),
    *("openssh-server", "cloud-init", "ifupdown", "iproute2", "netbase", "procps"),
    *("e2fsprogs", "qemu-guest-agent", "python3"),
    # heavy for a first boot under software emulation (ceph-common brings Python and the Ceph
    # libraries, keepalived a dozen libraries: a minute of dpkg per VM): in the template, as a
    # prepared template would have them. psmisc is not: each first boot installs it from the
    # lab's package source, as the user-data says.
    *("ceph-common", "xfsprogs", "keepalived"),
)
# What the user-data installs (components/bundle/packages.py); those the image lacks are
# installed by each VM's first boot from the lab's package source.
FIRST_BOOT = BASE_PACKAGES
ROOT_FS_MIB = 3072  # cloud-init's resizefs grows it to the VM's disk at first boot
# Units a template would have switched off: periodic jobs that only cost a lab VM CPU time.
MASKED = (
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
)
# initramfs: only what finds the root disk (the default holds every storage driver: 35 MB,
# 15 s to unpack under emulation)
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
BUILD_STEPS_VERSION = 3  # bump when the steps below change what they produce
Say = Callable[[str], None]


def cache_root() -> Path:
    base = os.environ.get("REPO_CLUSTER_CACHE") or str(Path.home() / ".cache" / "repo-cluster")
    return Path(base) / "images"


def _guest_files() -> list[Path]:
    return sorted(p for p in GUEST_FILES.iterdir() if p.is_file())


def recipe_digest() -> str:
    """What the image is made of; a new digest means a new image."""
    h = hashlib.sha256()
    recipe = {
        "suite": SUITE,
        "packages": PACKAGES,
        "first_boot": FIRST_BOOT,
        "root_fs_mib": ROOT_FS_MIB,
        "masked": MASKED,
        "initramfs": INITRAMFS_MODULES,
        "steps": BUILD_STEPS_VERSION,
    }
    h.update(json.dumps(recipe, sort_keys=True).encode())
    for f in _guest_files():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built image: what a VM boots."""

    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def apt(self) -> Path:
        """A flat package repository (``Packages`` + the .deb files) served on the bridge."""
        return self.dir / "apt"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def complete(self) -> bool:
        return self.manifest.is_file() and all(
            p.exists() for p in (self.disk, self.kernel, self.initrd, self.apt / "Packages")
        )


def current() -> Image:
    return Image(cache_root() / recipe_digest())


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(say: Say = print) -> Image:
    """The image of the current recipe, built now when the cache lacks it."""
    image = current()
    if image.complete():
        return image
    with _lock(image.dir.parent):
        if image.complete():  # another process built it while we waited
            return image
        started = time.monotonic()
        say(f"lab image: building {image.dir.name} from Debian {SUITE} (once per recipe)")
        build(image.dir)
        say(f"lab image: built in {time.monotonic() - started:.0f}s: {image.dir}")
    return image


def _host_sources() -> list[str]:
    """The package sources this machine uses (the image comes from the same archive)."""
    found = sorted(str(p) for p in Path("/etc/apt/sources.list.d").glob("*.sources"))
    found += sorted(str(p) for p in Path("/etc/apt/sources.list.d").glob("*.list"))
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file() and any(
        ln.strip() and not ln.lstrip().startswith("#") for ln in legacy.read_text().splitlines()
    ):
        found.append(str(legacy))
    return found or ["http://deb.debian.org/debian"]


def build(dest: Path) -> None:
    """Build the image into ``dest`` (made whole in a temporary directory, then renamed)."""
    if os.geteuid() != 0:
        raise LabError("building the lab image needs root (mmdebstrap, chroot)")
    missing = [t for t in ("mmdebstrap", "qemu-img", "mkfs.ext4", "apt-ftparchive") if
               shutil.which(t) is None]  # fmt: skip
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run scripts/install-deps")
    work = dest.with_name(f".build-{dest.name}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        root, debs = work / "root", work / "apt"
        debs.mkdir()
        _bootstrap(root, debs)
        _customize(root)
        _boot_files(root, work)
        _disk(root, work / "disk.qcow2")
        shutil.rmtree(root)
        packages = run(["sh", "-c", f"cd {debs} && apt-ftparchive packages ."], timeout=300)
        (debs / "Packages").write_text(packages.stdout)
        manifest = {
            "recipe": recipe_digest(),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernel": (work / "kernel-version").read_text().strip(),
            "first_boot_debs": sorted(p.name for p in debs.glob("*.deb")),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        work.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bootstrap(root: Path, debs: Path) -> None:
    """mmdebstrap: the packages installed; FIRST_BOOT downloaded (with what they need that the
    image lacks) into ``debs``."""
    first = " ".join(FIRST_BOOT)
    download = (
        'chroot "$1" apt-get clean && '
        f'chroot "$1" apt-get install -y -qq --download-only --no-install-recommends {first} && '
        f'find "$1/var/cache/apt/archives" -maxdepth 1 -name "*.deb" -exec cp -t {debs} {{}} +'
    )
    run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=apt",
            "--components=main",
            f"--include={','.join(PACKAGES)}",
            f"--customize-hook={download}",
            SUITE,
            str(root),
            *_host_sources(),
        ],
        timeout=3600,
    )


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def _customize(root: Path) -> None:
    """A template's preparation: no host keys or machine id of its own, cloud-init on guestinfo,
    the lab's package source, a small initramfs, periodic jobs off."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root, "/etc/machine-id", "")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    _write(root, "/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    _write(root, "/etc/hostname", "localhost\n")
    _write(root, "/etc/default/locale", "LANG=C.UTF-8\n")
    for f in (root / "etc/apt/sources.list.d").glob("*"):
        f.unlink()
    _write(root, "/etc/apt/sources.list", "# the lab's: sources.list.d/repo-cluster-lab.list\n")
    units = "/etc/systemd/system"
    settle = f"{units}/networking.service.d/10-repo-cluster-lab.conf"
    files = {
        "vmware-rpctool": ("/usr/bin/vmware-rpctool", 0o755),
        "90-repo-cluster-lab.cfg": ("/etc/cloud/cloud.cfg.d/90-repo-cluster-lab.cfg", 0o644),
        "repo-cluster-lab-apt": ("/usr/local/sbin/repo-cluster-lab-apt", 0o755),
        "repo-cluster-lab-apt.service": (f"{units}/repo-cluster-lab-apt.service", 0o644),
        "networking-udev-settle.conf": (settle, 0o644),
    }
    for name, (path, mode) in files.items():
        _write(root, path, (GUEST_FILES / name).read_text(), mode)
    _write(root, "/etc/initramfs-tools/conf.d/repo-cluster-lab.conf", "MODULES=list\n")
    _write(root, "/etc/initramfs-tools/modules", "".join(f"{m}\n" for m in INITRAMFS_MODULES))
    run(["systemctl", f"--root={root}", "enable", "repo-cluster-lab-apt.service"])
    run(["systemctl", f"--root={root}", "mask", *MASKED])  # absent units are masked too
    run(["chroot", str(root), "passwd", "--lock", "root"])
    run(["chroot", str(root), "update-initramfs", "-u", "-k", "all"], timeout=600)


def _boot_files(root: Path, work: Path) -> None:
    """The kernel, uncompressed (QEMU boots its ELF directly: no decompression under
    emulation), and the initramfs."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise LabError(f"lab image: expected one kernel and initrd, found {kernels} {initrds}")
    (work / "kernel-version").write_text(kernels[0].name.removeprefix("vmlinuz-") + "\n")
    (work / "vmlinux").write_bytes(decompress_kernel(kernels[0].read_bytes()))
    shutil.copyfile(initrds[0], work / "initrd.img")


def decompress_kernel(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian's is xz-compressed)."""
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise LabError("lab image: the kernel is not xz-compressed (no xz stream in vmlinuz)")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
    if not elf.startswith(b"\x7fELF"):
        raise LabError("lab image: the decompressed kernel is not an ELF file")
    return elf


def _disk(root: Path, dest: Path) -> None:
    raw = dest.with_suffix(".raw")
    with open(raw, "wb") as fh:
        fh.truncate(ROOT_FS_MIB * 1024 * 1024)
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw)], timeout=600)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(dest)], timeout=600)
    raw.unlink()
