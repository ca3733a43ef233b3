"""An operator-side writer: sequence-numbered, fsync'd records appended through the VIP.

Why: Veeam's promise is "what was acknowledged is on the repository". A failover that keeps
the VIP and the mount consistent but loses acknowledged writes (a write landing on the bare
mount point of a node without the volume, a double mount, a lost page cache) is still a
failed failover. The writer stands in for a Veeam data mover: one ``ssh root@VIP`` per record
appends ``N`` to a file in a directory that exists only on the volume (so a node without the
volume refuses the append instead of writing to its own disk), fsyncs it (``dd
conv=fsync``), and prints ``ack N``. Only records whose ``ack`` came back count; after the
recovery, every one of them must read back from the volume through the VIP.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field

from components.converge.probe import VipSsh

DIR = "repo-cluster-drill"


@dataclass
class Writer:
    """Appends records in a thread until :meth:`stop`, ``limit`` records or ``max_seconds``."""

    ssh: VipSsh
    mount_point: str
    run_id: str
    limit: int = 600
    max_seconds: float = 120
    pause: float = 0.05
    acked: list[int] = field(default_factory=list)
    failed: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)

    @property
    def path(self) -> str:
        return f"{self.mount_point}/{DIR}/{self.run_id}.log"

    def prepare(self) -> str | None:
        """Make the volume's directory through the VIP (a healthy cluster); None or the error."""
        d = shlex.quote(f"{self.mount_point}/{DIR}")
        mp = shlex.quote(self.mount_point)
        r = self.ssh.run(f"mountpoint -q {mp} && mkdir -p {d} && : > {shlex.quote(self.path)}")
        return None if r.returncode == 0 else f"writer: cannot prepare {self.path}: {r.stderr}"

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        path = shlex.quote(self.path)
        for n in range(1, self.limit + 1):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            command = (
                f"printf '%s\\n' {n} | dd of={path} oflag=append conv=notrunc,fsync "
                f"status=none && echo ack {n}"
            )
            r = self.ssh.run(command, timeout=self.ssh.login + 6)
            if r.returncode == 0 and r.stdout.strip() == f"ack {n}":
                self.acked.append(n)
            else:
                self.failed += 1
            time.sleep(self.pause)

    def wait_acked(self, count: int, timeout: float = 30) -> bool:
        """Wait until ``count`` more records than now were acknowledged."""
        goal = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < goal and time.monotonic() < deadline:
            if not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return len(self.acked) >= goal

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def missing(self) -> tuple[list[int], str | None]:
        """Acknowledged records that do not read back through the VIP (and a read error)."""
        r = self.ssh.run(f"cat {shlex.quote(self.path)}", timeout=self.ssh.login + 18)
        if r.returncode != 0:
            return list(self.acked), f"cannot read {self.path} through the VIP: {r.stderr.strip()}"
        seen = {int(x) for x in r.stdout.split() if x.isdigit()}
        return [n for n in self.acked if n not in seen], None
