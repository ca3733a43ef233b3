"""Watching a cluster while something breaks: node samples and SSH on the VIP, timestamped.

Why: a failover is judged by what was true at every moment, not by where it ended. A single
look after the fact cannot see the volume mounted twice for half a second. So a
:class:`Sampler` looks at every node at a fixed period (each look is one round trip that runs
the nodes' own tools, :func:`components.converge.status.status_command`), and a
:class:`VipProber` starts an ``ssh`` to the VIP at a fixed period, each with strict host-key
checking against the stack's shared public keys only, as Veeam connects. How a node is reached
(``nsenter`` on the lab, SSH elsewhere) is the caller's: a plain function.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from components.converge.status import NodeStatus

Look = Callable[[], list[NodeStatus]]
"""One look at every node (the caller's transport); never raises: UNREACHABLE instead."""


@dataclass(frozen=True)
class Sample:
    """What every node said at one moment: ``t`` is seconds since the watch began."""

    t: float
    nodes: tuple[NodeStatus, ...]

    def mounted(self) -> list[str]:
        return [n.name for n in self.nodes if n.mounted]

    def writable(self) -> list[str]:
        """Nodes with the volume mounted and their Ceph client not fenced: they can write."""
        return [n.name for n in self.nodes if n.mounted and not n.fenced]

    def vip_holders(self) -> list[str]:
        return [n.name for n in self.nodes if n.holds_vip]

    def masters(self) -> list[str]:
        return [n.name for n in self.nodes if n.vrrp_state == "MASTER"]

    def brief(self) -> str:
        """``t=1.23s repo1 FAULT vip=- mnt=yes | repo2 ...``: the sample in one line."""
        parts = [
            f"{n.name} {n.vrrp_state} vip={'yes' if n.holds_vip else '-'} "
            f"mnt={'yes' if n.mounted else '-'}{' (fenced)' if n.fenced else ''}"
            for n in self.nodes
        ]
        return f"t={self.t:.2f}s " + " | ".join(parts)


class Sampler:
    """Looks at every node every ``period`` seconds in a thread, until :meth:`stop`."""

    def __init__(self, look: Look, t0: float, period: float = 0.12) -> None:
        self._look, self._t0, self._period = look, t0, period
        self.samples: list[Sample] = []
        self.worst_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _loop(self) -> None:
        last = None
        while not self._stop.is_set():
            start = time.monotonic()
            nodes = tuple(self._look())
            self.samples.append(Sample(time.monotonic() - self._t0, nodes))
            if last is not None:
                self.worst_gap = max(self.worst_gap, start - last)
            last = start
            self._stop.wait(max(0.0, self._period - (time.monotonic() - start)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def since(self, t: float) -> list[Sample]:
        return [x for x in list(self.samples) if x.t >= t]


def parallel_look(names: Sequence[str], one: Callable[[str], NodeStatus]) -> Look:
    """A :data:`Look` that asks every node at once (a sample must not lag one node behind)."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(names)))
    return lambda: list(pool.map(one, names))


# --------------------------------------------------------------------------- ssh to the VIP


def _niced() -> None:
    """Operator-side ssh clients yield the CPU to the sampler (a 2-core lab host runs both)."""
    os.nice(10)


@dataclass(frozen=True)
class VipSsh:
    """The real OpenSSH client as the operator, to the VIP, trusting only the shared keys."""

    vip: str
    user: str
    key_file: str
    known_hosts: Path
    control: Path | None = None
    """A ControlMaster socket (:meth:`shared`), or None: a login per command."""
    login: float = 2.0
    """Seconds a login may take (connect and banner); the other timeouts follow it. An
    emulated lab node needs several."""

    @classmethod
    def make(
        cls, vip: str, user: str, key_file: str, public_keys: Sequence[str], login: float = 2.0
    ) -> VipSsh:
        """Writes a private known_hosts file: ``VIP <shared key>`` lines only."""
        fd, name = tempfile.mkstemp(prefix="repo-cluster-vip-", suffix=".known_hosts")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.writelines(f"{vip} {k}\n" for k in public_keys)
        return cls(vip, user, key_file, Path(name), login=login)

    def argv(self, command: str) -> list[str]:
        opts = {
            "IdentitiesOnly": "yes",
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "ConnectTimeout": str(round(self.login)),
            "ServerAliveInterval": "1",
            "ServerAliveCountMax": "2",
            "LogLevel": "ERROR",
            # the cheapest modern key exchange: probes must not starve the nodes' sshd checks
            "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org",
        }
        if self.control is not None:
            opts |= {"ControlMaster": "auto", "ControlPath": str(self.control)}
            opts["ControlPersist"] = "60"
        flat = [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            self.key_file,
            *flat,
            f"{self.user}@{self.vip}",
            command,
        ]

    def shared(self) -> VipSsh:
        """The same client over one connection its commands share (OpenSSH's ControlMaster):
        a command costs the node a session, not a login. A failover kills the connection:
        the next command logs in afresh, to whoever holds the VIP then."""
        return dataclasses.replace(self, control=self.known_hosts.with_suffix(".ctl"))

    def run(
        self, command: str, timeout: float = 10, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``command`` on whoever holds the VIP; a timeout is exit 255, never a raise."""
        try:
            return subprocess.run(
                self.argv(command),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=_niced,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(self.argv(command), 255, "", "timed out")

    def hostname(self) -> str | None:
        """Who answers on the VIP (strict host key), or None."""
        r = self.run("hostname", timeout=self.login + 4)
        return r.stdout.strip() or None if r.returncode == 0 else None

    def close(self) -> None:
        """A shared client ends its connection; the client it was made from (:meth:`make`)
        removes its known_hosts file (both use it: close the shared one first)."""
        if self.control is None:
            self.known_hosts.unlink(missing_ok=True)
        elif self.control.exists():
            subprocess.run(
                [*self.argv("true")[:-2], "-O", "exit", f"{self.user}@{self.vip}"],
                capture_output=True,
                timeout=10,
                check=False,
            )


@dataclass(frozen=True)
class Answer:
    """One SSH probe of the VIP: started at ``t``, answered at ``done`` by ``host`` (or not)."""

    t: float
    done: float
    host: str | None


@dataclass
class VipProber:
    """Starts ``ssh VIP hostname`` every ``period`` seconds (overlapping, at most ``cap`` in
    flight), recording when each started, when it ended and who answered."""

    ssh: VipSsh
    t0: float
    period: float = 0.1
    cap: int = 4
    answers: list[Answer] = field(default_factory=list)
    gate: Callable[[], bool] | None = None
    """When set, a probe starts only while it says so (a drill: while a node holds the VIP
    and the volume): on emulated nodes every login costs the node the failover needs."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vip-prober", daemon=True)

    def __enter__(self) -> VipProber:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        flying: list[tuple[float, subprocess.Popen[str]]] = []
        next_start = time.monotonic()
        while not self._stop.is_set() or flying:
            now = time.monotonic()
            wanted = self.gate is None or self.gate()
            if not self._stop.is_set() and now >= next_start and len(flying) < self.cap and wanted:
                argv = self.ssh.argv("hostname")
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    preexec_fn=_niced,
                )
                flying.append((now - self.t0, proc))
                next_start = now + self.period
            for started, proc in list(flying):
                if proc.poll() is not None:
                    out = proc.stdout.read().strip() if proc.stdout else ""
                    done = time.monotonic() - self.t0
                    self.answers.append(
                        Answer(started, done, out if proc.returncode == 0 else None)
                    )
                    flying.remove((started, proc))
                elif time.monotonic() - self.t0 - started > self.ssh.login + 6:
                    proc.kill()
            time.sleep(0.01)

    def first_answer(self, host: str | None, after: float) -> Answer | None:
        """The first probe started at or after ``after`` that ``host`` answered (any host: None)."""
        ok = [
            a for a in self.answers if a.t >= after and a.host and (host is None or a.host == host)
        ]
        return min(ok, key=lambda a: a.t) if ok else None

    def outage(self) -> float:
        """Longest time without a successful probe start, between the first and last success."""
        ok = sorted(a.t for a in self.answers if a.host)
        return max((b - a for a, b in itertools.pairwise(ok)), default=0.0)
