"""The host side of a lab VM's guestinfo channel (the guest side: image_files/vmware-rpctool).

A line protocol over the VM's virtio-serial port (QEMU's ``rpc.sock``):
``REQ <id> <base64 command>`` from the guest, ``RES <id> <0|1> <base64 payload>`` back. The
commands are VMware Tools' own: ``info-get guestinfo.KEY`` (0 and the value, or 1 and
"No value found") and ``info-set guestinfo.KEY VALUE`` (0).
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path

Get = Callable[[str], str | None]
Set = Callable[[str, str], None]


def answer(line: str, get: Get, put: Set) -> str:
    """The reply to one request line ("" for a line that is not one)."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "REQ":
        return ""
    ident, text = parts[1], base64.b64decode(parts[2]).decode(errors="replace")
    verb, _, rest = text.partition(" ")
    code, payload = 1, "Unknown command\n"
    if verb == "info-get" and rest.startswith("guestinfo."):
        value = get(rest.strip())
        code, payload = (0, value) if value else (1, "No value found")
    elif verb == "info-set" and rest.startswith("guestinfo."):
        key, _, value = rest.partition(" ")
        put(key, value)
        code, payload = 0, ""
    return f"RES {ident} {code} {base64.b64encode(payload.encode()).decode()}\n"


def serve(sock: Path, get: Get, put: Set, wanted: Callable[[], bool]) -> None:
    """Answer the guest on ``sock`` while ``wanted()``; reconnects when QEMU drops it."""
    while wanted():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(sock))
                s.settimeout(1.0)
                buf = b""
                while wanted():
                    try:
                        chunk = s.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        reply = answer(line.decode(errors="replace"), get, put)
                        if reply:
                            s.sendall(reply.encode())
        except OSError:
            time.sleep(0.5)
