"""A throwaway BIND named: the site DNS server of the embedded lab, and the one tests/dns talks to.

Why a real named and not a fake: the point of components.dns.record is that a real server
checks the TSIG signature, the update-policy and the RFC 2136 prerequisites; only BIND itself
says whether our updates are right. Everything lives in one work directory (config, zone files,
journals, pid file, log, session key), so several servers can run side by side and `stop`
removes every trace.

Safety: named listens on 127.0.0.1 or a lab address (198.18.0.0/15, RFC 2544) only, answers
queries only from there, does no recursion, sends no NOTIFY and has no control channel. `stop`
signals a pid only after /proc/<pid>/cmdline shows a named started with this directory's config,
so a stale pid file can never make it kill some other process.

AppArmor: Debian's bind9 package installs /etc/apparmor.d/usr.sbin.named, which (when enforced)
lets /usr/sbin/named write only /var/cache/bind and /var/lib/bind. On the machine this was built
on the kernel has no AppArmor (no /sys/kernel/security/apparmor, no /sys/module/apparmor), so
the profile is inert. Where it is enforced, `start` runs a copy of the named binary from the
work directory (a profile attaches to a path, so the copy is unconfined); a work directory under
/var/cache/bind or /var/lib/bind needs no copy.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from components.config import TEST_NET

NAMED = shutil.which("named") or "/usr/sbin/named"
CHECKCONF = shutil.which("named-checkconf") or "/usr/bin/named-checkconf"
ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")
APPARMOR_WRITABLE = (Path("/var/cache/bind"), Path("/var/lib/bind"))
READY_SECONDS = 10.0
STOP_SECONDS = 10.0
MARK = "// written by components.dns.server; stop() removes this directory\n"

_LABEL = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class NamedError(RuntimeError):
    """named could not be configured, started or stopped."""


@dataclass(frozen=True, kw_only=True)
class NamedConfig:
    """One named: where its files live, where it listens, its zones and its TSIG key."""

    workdir: Path
    port: int
    zones: tuple[str, ...]
    key_name: str
    secret: str = field(repr=False)
    listen: str = "127.0.0.1"
    algorithm: str = "hmac-sha256"

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.listen)
        if address != ipaddress.ip_address("127.0.0.1") and address not in TEST_NET:
            raise ValueError(f"named may listen on 127.0.0.1 or in {TEST_NET} only, not {address}")
        if not 0 < self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        if not self.zones or not all(_LABEL.match(z) for z in (*self.zones, self.key_name)):
            raise ValueError(f"bad zone or key name in {self.zones}, {self.key_name}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"TSIG algorithm {self.algorithm} is not one of {ALGORITHMS}")
        try:
            base64.b64decode(self.secret, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the secret of TSIG key {self.key_name} is not base64") from None
        if not self.workdir.is_absolute() or '"' in str(self.workdir):
            raise ValueError(f"workdir must be an absolute path without quotes: {self.workdir}")

    @property
    def conf(self) -> Path:
        return self.workdir / "named.conf"


def new_tsig_secret() -> str:
    """A fresh TSIG secret: 32 random bytes, base64 (what `tsig-keygen -a hmac-sha256` makes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def render_conf(cfg: NamedConfig) -> str:
    """named.conf: everything in the work directory, authoritative only, updates by key only."""
    w = cfg.workdir
    zones = "".join(
        f'zone "{z}" {{ type master; file "{z}.zone"; '
        f"update-policy {{ grant {cfg.key_name} zonesub ANY; }}; }};\n"
        for z in cfg.zones
    )
    return (
        f"{MARK}options {{\n"
        f'  directory "{w}";\n  pid-file "{w}/named.pid";\n  lock-file "{w}/named.lock";\n'
        f'  session-keyfile "{w}/session.key";\n  managed-keys-directory "{w}";\n'
        f"  listen-on port {cfg.port} {{ {cfg.listen}; }};\n  listen-on-v6 {{ none; }};\n"
        "  allow-query { 127.0.0.1; 198.18.0.0/15; };\n"
        "  recursion no;\n  dnssec-validation no;\n  notify no;\n};\n"
        "controls { };\n"
        f'key "{cfg.key_name}" {{ algorithm {cfg.algorithm}; secret "{cfg.secret}"; }};\n'
        f"{zones}"
    )


def render_zone(zone: str, listen: str) -> str:
    """A minimal zone: SOA, NS ns.<zone>, and ns.<zone> A <listen address>."""
    origin = zone.rstrip(".") + "."
    return (
        f"$ORIGIN {origin}\n$TTL 300\n"
        f"@ IN SOA ns.{origin} hostmaster.{origin} ( 1 3600 600 86400 300 )\n"
        f"@ IN NS ns.{origin}\nns IN A {listen}\n"
    )


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(text)


def _apparmor_enforces_named() -> bool:
    """True when the kernel enforces an AppArmor profile on /usr/sbin/named."""
    try:
        lines = APPARMOR_PROFILES.read_text().splitlines()
    except OSError:
        return False
    return any(
        line.split(" (")[0] in ("named", "/usr/sbin/named") and "(enforce)" in line
        for line in lines
    )


def _named_binary(workdir: Path) -> str:
    if not _apparmor_enforces_named() or any(workdir.is_relative_to(p) for p in APPARMOR_WRITABLE):
        return NAMED
    copy = workdir / "named"
    shutil.copy2(NAMED, copy)
    return str(copy)


def _is_our_named(pid: int, conf: Path) -> bool:
    """Whether `pid` is a named started with `conf` (a zombie has no cmdline: not ours)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return (
        Path(argv[0]).name == "named"
        and "-c" in argv[:-1]
        and argv[argv.index("-c") + 1] == str(conf)
    )


def _pids(workdir: Path) -> list[int]:
    """The nameds of this work directory: every process whose cmdline is named -c <its conf>.
    Found in /proc rather than trusted from named.pid, which may be stale or missing (a start
    that failed early); a pid is only signalled once its cmdline proved it is ours."""
    conf = workdir / "named.conf"
    found = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in found if _is_our_named(pid, conf)]


def _gone(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _kill(pid: int, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it is still there after `seconds`; waits (bounded) for the end."""
    for sig, wait in ((signal.SIGTERM, seconds), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid):
                return
            time.sleep(0.05)
    raise NamedError(f"named (pid {pid}) did not exit after SIGKILL")


def _soa_status(cfg: NamedConfig, zone: str) -> str:
    try:
        q = dns.message.make_query(zone, dns.rdatatype.SOA)
        r = dns.query.udp(q, cfg.listen, port=cfg.port, timeout=0.5)
    except Exception as e:  # not up yet: whatever happened is the status shown on failure
        return type(e).__name__
    ok = r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and r.answer
    return "SOA" if ok else dns.rcode.to_text(r.rcode())


def _log_tail(workdir: Path, lines: int = 25) -> str:
    try:
        return "\n".join((workdir / "named.log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no named.log)"


def _wait_ready(cfg: NamedConfig, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            status["named"] = f"exited with code {proc.returncode}"
            break
        status = {z: _soa_status(cfg, z) for z in cfg.zones}
        if set(status.values()) == {"SOA"} and (cfg.workdir / "named.pid").exists():
            return
        time.sleep(0.1)
    if proc.poll() is None:
        _kill(proc.pid, 2.0)
    raise NamedError(
        f"named did not come up on {cfg.listen}:{cfg.port} within {READY_SECONDS:g} s\n"
        f"  expected: an SOA answer for each of {', '.join(cfg.zones)}\n"
        f"  actual:   {status}\n--- {cfg.workdir / 'named.log'} ---\n{_log_tail(cfg.workdir)}"
    )


def start(cfg: NamedConfig) -> int:
    """Write the config and zones into cfg.workdir, start named there, wait until every zone
    answers; returns named's pid. Stale zone files and journals there are replaced. If named
    does not come up it is killed and NamedError shows the log; the directory stays for
    `stop` to remove."""
    if not Path(NAMED).exists():
        raise NamedError(f"{NAMED} not found: run scripts/install-deps (Debian package bind9)")
    if cfg.workdir.exists() and _pids(cfg.workdir):
        raise NamedError(f"a named is already running in {cfg.workdir}")
    cfg.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for zone in cfg.zones:
        (cfg.workdir / f"{zone}.zone.jnl").unlink(missing_ok=True)
        _write(cfg.workdir / f"{zone}.zone", render_zone(zone, cfg.listen), 0o644)
    _write(cfg.conf, render_conf(cfg), 0o600)
    check = subprocess.run(
        [CHECKCONF, "-z", str(cfg.conf)], capture_output=True, text=True, timeout=30, check=False
    )
    if check.returncode != 0:
        raise NamedError(f"named-checkconf -z {cfg.conf} failed:\n{check.stdout}{check.stderr}")
    (cfg.workdir / "named.pid").unlink(missing_ok=True)
    argv = [_named_binary(cfg.workdir), "-g", "-4", "-u", "root", "-c", str(cfg.conf)]
    with (cfg.workdir / "named.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    _wait_ready(cfg, proc)
    return proc.pid


def stop(workdir: Path) -> bool:
    """Stop the named of `workdir` (verified by its cmdline, never a stale pid's process) and
    remove the directory. True if a named was stopped; False if none ran. Safe to repeat."""
    workdir = Path(workdir)
    if not workdir.exists():
        return False
    conf = workdir / "named.conf"
    if not (conf.exists() and conf.read_text().startswith(MARK)) and any(workdir.iterdir()):
        raise NamedError(f"{workdir} is not a named work directory of this module: not removed")
    pids = _pids(workdir)
    for pid in pids:
        _kill(pid)
    shutil.rmtree(workdir)
    return bool(pids)


def running(workdir: Path) -> bool:
    """Whether the named of `workdir` runs (checked by its cmdline, as `stop` does)."""
    return Path(workdir).exists() and bool(_pids(Path(workdir)))
