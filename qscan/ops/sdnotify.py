"""systemd's readiness and watchdog protocol (sd_notify), without a library: datagrams on a socket.

A unit with ``Type=notify`` starts its process with ``NOTIFY_SOCKET`` naming a unix datagram
socket (a path, or ``@name`` in the abstract namespace); the service says ``READY=1`` there once it
serves (the daemon: socket bound and workers forked), so units ordered after it start only then.
With ``WatchdogSec=`` systemd also sets ``WATCHDOG_USEC``; the service must send ``WATCHDOG=1``
more often than that from its main loop, or systemd kills and restarts it (a hung loop, not only
a dead process). Outside systemd every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

NOTIFY_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` without the notify variables: only the main process talks to systemd
    (``NotifyAccess=main``); a child that said READY=1 would only be refused."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k not in NOTIFY_VARS}


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address if address.startswith(("/", "\0")) else ""
        self.interval: float | None = None  # seconds between pings: half of WatchdogSec
        pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        if self.address and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.interval = int(usec) / 2e6
        self.last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=value`` lines; False (never an exception) when it cannot go."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def ping(self, now: float | None = None) -> bool:
        """WATCHDOG=1, at most once per half watchdog interval: call it from every loop pass."""
        if self.interval is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self.last_ping < self.interval:
            return False
        self.last_ping = now
        return self.send("WATCHDOG=1")
