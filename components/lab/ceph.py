"""The embedded lab's Ceph: one monitor and one memstore OSD on the host, cephx, the stack's pool
and image, and the stack's client with the caps a real cluster should grant it.

Why real Ceph: the fence (the image's exclusive lock, broken with ``rbd lock rm``, and
``ceph osd blocklist``) is Ceph's own; a stand-in would prove nothing. The monitor listens on the
lab bridge's address (the stack's ``cephMonitors``), never elsewhere; the data lives in the
OSD's memory (``memstore``, pool size 1), so the lab's image is gone with the lab. There is no
mgr: nothing here needs one. Files: ``.lab/<stack>/ceph/`` (config, keyrings, monitor store,
logs), ``/run/repo-cluster/<stack>/ceph/`` (pid files, admin sockets).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from components.lab.ceph_conf import IMAGE_MIB, conf_text
from components.lab.net import LabError, run
from components.lab.plan import Lab

MON_ID = "a"
OSD_ID = 0
PG_NUM = 8
# exclusive-lock: the lock the fence breaks; layering: every client (krbd 3.10 too) knows it
IMAGE_FEATURES = "layering,exclusive-lock"
TOOLS = ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool", "ceph", "rbd")
START_WAIT = 60.0


def home(lab: Lab) -> Path:
    return lab.dir / "ceph"  # config, keyrings, monitor store, logs


def run_dir(lab: Lab) -> Path:
    return lab.runtime / "ceph"  # pid files, admin sockets


def conf(lab: Lab) -> Path:
    return home(lab) / "ceph.conf"


def admin_keyring(lab: Lab) -> Path:
    return home(lab) / "client.admin.keyring"


def client_key_file(lab: Lab) -> Path:
    return home(lab) / f"client.{lab.settings.ceph_user}.key"


def monitor(lab: Lab) -> str:
    return str(lab.gateway.ip)


def admin(lab: Lab, tool: str = "ceph") -> list[str]:
    """``ceph``/``rbd`` as the lab's admin, from the host: never without ``-c`` (a Ceph tool
    without a config asks DNS for monitors)."""
    return [tool, "-c", str(conf(lab)), "-k", str(admin_keyring(lab))]


def check_plan(lab: Lab) -> list[str]:
    """Why the stack cannot use the lab's Ceph; empty when it can."""
    mons = [m.split(":")[0] for m in lab.settings.ceph_monitors]
    if mons != [monitor(lab)]:
        return [f"cephMonitors must be the lab bridge's address [{monitor(lab)}], not {mons}"]
    return []


def _pid(lab: Lab, daemon: str) -> int | None:
    """The pid of our ceph-mon/ceph-osd, only if it runs with this lab's config."""
    with suppress(OSError, ValueError):
        pid = int((run_dir(lab) / f"{daemon}.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if str(conf(lab)).encode() in cmdline:
            return pid
    return None


def daemons(lab: Lab) -> dict[str, int]:
    found = {d: _pid(lab, d) for d in ("mon", "osd")}
    return {d: p for d, p in found.items() if p is not None}


def _stop(pids: list[int], wait: float = 15.0) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def healthy(lab: Lab) -> bool:
    """Monitor and OSD running, and the stack's image there."""
    if set(daemons(lab)) != {"mon", "osd"}:
        return False
    image = f"{lab.settings.rbd_pool}/{lab.settings.rbd_image}"
    return run([*admin(lab, "rbd"), "info", image], check=False, timeout=20).returncode == 0


def _ceph(lab: Lab, *args: str) -> str:
    r = subprocess.run(
        [*admin(lab), "--connect-timeout", "20", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise LabError(f"ceph {' '.join(args[:3])}: {r.stderr.strip()[-400:]}")
    return r.stdout


def _wait(what: str, ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_WAIT
    while not ok():
        if time.monotonic() > deadline:
            raise LabError(f"lab Ceph: {what} within {START_WAIT:.0f}s")
        time.sleep(0.2)


# --------------------------------------------------------------------------- up / down


def up(lab: Lab) -> str:
    """Start the lab's Ceph with the stack's pool, client and image (XFS labelled as the
    stack says). Returns what it did. The caller removes everything on failure (:func:`down`)."""
    problems = check_plan(lab)
    if problems:
        raise LabError("; ".join(problems))
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing Ceph tools: {', '.join(missing)}; run scripts/install-deps")
    if healthy(lab):
        return ""
    down(lab)
    s = lab.settings
    h, r = home(lab), run_dir(lab)
    h.mkdir(parents=True, mode=0o700)
    r.mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    conf(lab).write_text(conf_text(lab, fsid, home(lab), run_dir(lab), monitor(lab)))
    mon_keyring = h / "mon.keyring"
    run(["ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
         "--cap", "mon", "allow *"])  # fmt: skip
    run(["ceph-authtool", "--create-keyring", str(admin_keyring(lab)), "--gen-key",
         "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
         "--cap", "mgr", "allow *"])  # fmt: skip
    run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring(lab))])
    monmap = h / "monmap"
    addrs = f"[v2:{monitor(lab)}:3300,v1:{monitor(lab)}:6789]"
    run(["monmaptool", "--create", "--addv", MON_ID, addrs, "--fsid", fsid, str(monmap)])
    c = ["-c", str(conf(lab))]
    run(["ceph-mon", *c, "--mkfs", "-i", MON_ID, "--monmap", str(monmap)])
    run(["ceph-mon", *c, "-i", MON_ID])
    _wait("no monitor quorum", lambda: "mon" in daemons(lab))
    osd_uuid = str(uuid.uuid4())
    osd_id = _ceph(lab, "osd", "new", osd_uuid).strip()
    if osd_id != str(OSD_ID):
        raise LabError(f"lab Ceph: expected osd.{OSD_ID}, got osd.{osd_id}")
    osd_keyring = h / "osd.keyring"
    run(["ceph-authtool", "--create-keyring", str(osd_keyring), "--gen-key",
         "-n", f"osd.{OSD_ID}"])  # fmt: skip
    _ceph(lab, "auth", "add", f"osd.{OSD_ID}", "osd", "allow *", "mon", "allow profile osd",
          "-i", str(osd_keyring))  # fmt: skip
    (h / "osd").mkdir()
    run(["ceph-osd", *c, "-i", str(OSD_ID), "--mkfs", "--osd-uuid", osd_uuid])
    run(["ceph-osd", *c, "-i", str(OSD_ID)])
    _wait("the OSD is not up", lambda: '"num_up_osds":1' in _ceph(lab, "osd", "stat", "-f", "json"))
    _ceph(lab, "osd", "pool", "create", s.rbd_pool, str(PG_NUM))
    _ceph(lab, "osd", "pool", "set", s.rbd_pool, "size", "1", "--yes-i-really-mean-it")
    run([*admin(lab, "rbd"), "pool", "init", s.rbd_pool], timeout=60)
    _client(lab)
    _image(lab)
    _ceph(lab, "health", "mute", "MGR_DOWN", "--sticky")
    return (
        f"Ceph mon {monitor(lab)} + memstore osd.{OSD_ID}, pool {s.rbd_pool}, image "
        f"{s.rbd_image} (XFS '{s.xfs_label}'), client.{s.ceph_user} (profile rbd)"
    )


def _client(lab: Lab) -> None:
    """client.<cephUser> with ``profile rbd`` on the pool (it may blocklist: the fence), keyed
    with the stack's ``cephKeyring`` when it sets one, else with a new key."""
    s = lab.settings
    name = f"client.{s.ceph_user}"
    caps = ["mon", "profile rbd", "osd", f"profile rbd pool={s.rbd_pool}"]
    key = s.ceph_keyring.value
    if key is None:
        _ceph(lab, "auth", "get-or-create", name, *caps)
    else:
        with tempfile.TemporaryDirectory(dir=home(lab)) as tmp:
            keyring = Path(tmp) / "keyring"
            run(["ceph-authtool", "--create-keyring", str(keyring), "-n", name,
                 "--add-key", key])  # fmt: skip
            _ceph(lab, "auth", "import", "-i", str(keyring))
            _ceph(lab, "auth", "caps", name, *caps)
    out = _ceph(lab, "auth", "get-key", name).strip()
    fd = os.open(client_key_file(lab), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(out + "\n")


def _image(lab: Lab) -> None:
    """The image, holding an XFS labelled as the stack says (made on a sparse file here and
    imported: the host maps nothing)."""
    s = lab.settings
    with tempfile.TemporaryDirectory(dir=home(lab)) as tmp:
        img = Path(tmp) / "xfs.img"
        with open(img, "wb") as fh:
            fh.truncate(IMAGE_MIB * 1024 * 1024)
        run(["mkfs.xfs", "-q", "-L", s.xfs_label, str(img)])
        run([*admin(lab, "rbd"), "import", "--no-progress", "--image-feature", IMAGE_FEATURES,
             str(img), f"{s.rbd_pool}/{s.rbd_image}"], timeout=120)  # fmt: skip


def watchers(lab: Lab) -> set[str] | None:
    """Client addresses with the image open (``rbd status``), or None if Ceph did not answer."""
    s = lab.settings
    image = f"{s.rbd_pool}/{s.rbd_image}"
    try:
        r = run([*admin(lab, "rbd"), "status", image], check=False, timeout=10)
    except LabError:
        return None
    if r.returncode != 0:
        return None
    return {w.split("=", 1)[1] for w in r.stdout.split() if w.startswith("watcher=")}


def blocklist(lab: Lab) -> set[str] | None:
    """The OSD blocklist's entries (client instances), or None if Ceph did not answer."""
    try:
        r = run([*admin(lab), "osd", "blocklist", "ls"], check=False, timeout=30)
    except LabError:
        return None
    if r.returncode != 0:
        return None
    return {line.split()[0] for line in r.stdout.splitlines() if ":" in line}


def client_key(lab: Lab) -> str | None:
    """The key of client.<cephUser> (for the bundle's keyring), when the lab's Ceph is up."""
    with suppress(OSError):
        return client_key_file(lab).read_text().strip() or None
    return None


def down(lab: Lab) -> bool:
    """Stop the daemons and remove every file; whether anything was there."""
    pids = list(daemons(lab).values())
    _stop(pids)
    found = bool(pids) or home(lab).exists() or run_dir(lab).exists()
    shutil.rmtree(home(lab), ignore_errors=True)
    shutil.rmtree(run_dir(lab), ignore_errors=True)
    return found


def leftovers(lab: Lab) -> list[str]:
    found = [f"ceph-{d} pid {p}" for d, p in daemons(lab).items()]
    return found + [str(p) for p in (home(lab), run_dir(lab)) if p.exists()]
