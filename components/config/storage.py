"""Validation of the volume and Ceph values: what reaches ``rbd map``, the keyring file,
``mkfs.xfs``/``mount`` and the package manager. Each check reports through a
:class:`~components.config.check.Check`, naming its key.
"""

from __future__ import annotations

import base64
import binascii
import re

from components.config.check import Check
from components.config.model import Secret

# Mounting the volume inside one of these trees would hide or replace part of the system
# (or, under /root, /var/lib, /var/log, its secrets, state and logs).
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/cache",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/run",
    "/var/spool",
)
# ... and these directories themselves (a directory below them is the operator's choice)
SYSTEM_EXACT = ("/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var", "/var/tmp")
CEPH_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
XFS_LABEL_BYTES = 12  # XFS keeps the label in a 12-byte field of the superblock
CEPH_KEY_CHARS, CEPH_KEY_BYTES = 40, 28  # what `ceph auth get-key` prints, and its decoding


def normal_mount(c: Check) -> str | None:
    """``mountPoint`` with repeated and trailing slashes collapsed; None (and a problem) when
    it is not absolute, holds a ``.``/``..`` component or lies in a system directory."""
    mount = c.v["mountPoint"]
    parts = [p for p in mount.split("/") if p]
    norm = "/" + "/".join(parts)
    if not mount.startswith("/") or norm == "/":
        c.bad("mountPoint", f"{mount!r} must be an absolute path other than /")
    elif not mount.isprintable():
        c.bad("mountPoint", f"{mount!r} must not hold control characters")
    elif "\\" in mount:
        c.bad(
            "mountPoint",
            f"{mount!r} must not hold a backslash: the mount table writes it as \\134, and the "
            "mount point is read back from there",
        )
    elif "." in parts or ".." in parts:
        c.bad("mountPoint", f"{mount!r} must not hold '.' or '..' components: write the path")
    elif norm in SYSTEM_EXACT or any(norm == d or norm.startswith(f"{d}/") for d in SYSTEM_TREES):
        c.bad(
            "mountPoint",
            f"{mount!r} is a system directory or inside one: use e.g. /mnt/<name> or /srv/<name>",
        )
    else:
        return norm
    return None


def xfs_label(c: Check) -> None:
    label = c.v["xfsLabel"]
    size = len(label.encode("utf-8"))
    wrong = []
    if not 1 <= size <= XFS_LABEL_BYTES:
        wrong.append(f"is {size} bytes, XFS takes 1-{XFS_LABEL_BYTES} bytes (UTF-8)")
    if "/" in label:
        wrong.append("must not hold '/'")
    if any(ch.isspace() for ch in label):
        wrong.append("must not hold whitespace")
    elif not label.isprintable():
        wrong.append("must not hold control characters")
    if wrong:
        c.bad("xfsLabel", f"{label!r} {'; '.join(wrong)}")


MOUNT_OPTION = re.compile(r"[a-z][a-z0-9_]*(=[A-Za-z0-9_.:-]+)?")


def mount_options(c: Check) -> None:
    """``mount -o`` options: a comma-separated list of plain words (no shell, no spaces)."""
    value = str(c.v["xfsMountOptions"])
    if value and not all(MOUNT_OPTION.fullmatch(o) for o in value.split(",")):
        c.bad(
            "xfsMountOptions",
            f"{value!r} must be comma-separated mount options like noatime,nodiscard "
            "(letters, digits, _ and option=value)",
        )


def ceph_names(c: Check) -> None:
    """Pool, image and user are arguments of ``rbd map``: never an option, never . or .."""
    for name in ("rbdPool", "rbdImage", "cephUser"):
        value = str(c.v[name])
        if not CEPH_NAME.match(value):
            c.bad(name, f"{value!r} may hold only letters, digits, '.', '_' and '-'")
        elif value.startswith("-"):
            c.bad(name, f"{value!r} must not start with '-' (rbd would read it as an option)")
        elif value in (".", ".."):
            c.bad(name, f"{value!r} must not be '.' or '..'")


def is_ceph_key(value: str) -> bool:
    """A Ceph key as ``ceph auth get-key`` prints it: 40 base64 characters, 28 bytes."""
    if len(value) != CEPH_KEY_CHARS or not value.endswith("=="):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == CEPH_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def ceph_keyring(c: Check) -> None:
    key: Secret = c.v["cephKeyring"]
    if key.value is not None and not is_ceph_key(key.value):
        c.bad(
            "cephKeyring",
            f"is not a Ceph key: {CEPH_KEY_CHARS} base64 characters ending in == "
            f"({CEPH_KEY_BYTES} bytes), nothing else, as `ceph auth get-key client.<cephUser>` "
            "prints it (value hidden)",
        )


def ceph_repo(c: Check) -> None:
    url, family = c.v["cephRepoUrl"], c.v["osFamily"]
    if family in ("el7", "el8", "el9") and not url:
        c.bad("cephRepoUrl", f"required for osFamily {family} (no ceph-common in its base)")
    if url and not re.match(r"^https://[^\s/]+\S*$", url):
        c.bad(
            "cephRepoUrl",
            f"{url!r} is not an https URL: the nodes install packages (and trust their signing "
            "key) from it as root",
        )
