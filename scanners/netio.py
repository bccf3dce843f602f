"""Short, bounded request/reply exchanges with clamd and spamd over unix or TCP sockets.

One connection per request, closed afterwards: no state survives a daemon restart
or a fork, and every step runs against one deadline so a hung server costs at most
the configured timeout. The server may answer before it has read everything (clamd
stops reading once a stream exceeds its StreamMaxLength and says so): the socket is
polled between frames and a reply already sent is read even when the server has
reset the connection.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T", covariant=True)


class Reader(Protocol[T]):
    def feed(self, data: bytes) -> T | None: ...

    def eof(self) -> T: ...


class Timeout(OSError):
    """The exchange did not complete before its deadline."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    socket: str | None
    host: str
    port: int

    def __str__(self) -> str:
        return f"unix:{self.socket}" if self.socket else f"{self.host}:{self.port}"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout("timed out")
    return left


def connect(endpoint: Endpoint, connect_timeout: float, deadline: float) -> socket.socket:
    timeout = min(connect_timeout, _remaining(deadline))
    if endpoint.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(endpoint.socket)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)


def _readable(sock: socket.socket) -> bool:
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def exchange(
    endpoint: Endpoint,
    frames: Iterable[bytes],
    reader: Reader[T],
    *,
    connect_timeout: float,
    timeout: float,
) -> T:
    """Send ``frames`` then read one reply; raises OSError (incl. Timeout) on any failure."""
    deadline = time.monotonic() + timeout
    with connect(endpoint, connect_timeout, deadline) as sock:
        try:
            for frame in frames:
                if _readable(sock):
                    break  # the server answered early; what it says decides
                sock.settimeout(_remaining(deadline))
                sock.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it stopped reading: its reply, if any, is waiting
        except TimeoutError as exc:
            raise Timeout("timed out sending") from exc
        while True:
            sock.settimeout(_remaining(deadline))
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return reader.eof()
            except TimeoutError as exc:
                raise Timeout("timed out waiting for the reply") from exc
            if not data:
                return reader.eof()
            done = reader.feed(data)
            if done is not None:
                return done
