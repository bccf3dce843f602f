"""A scripted daemon on a real unix socket: what qscan-queue reads when the daemon misbehaves.

Each connection gets the next ``Script``: the request is read whole (and kept), then the
script's answer is sent as it is - bytes that may be garbage, cut short or oversized, with
descriptors beside them (``SCM_RIGHTS``) - and, when asked, the client's ``S`` report is read
before the connection is closed. Used by tests/test_clients.py (both clients, one table) and
its seeded fuzz test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest import frames


@dataclass
class Script:
    """One connection's answer: ``answer`` bytes (sent in one go), ``fds`` made by calling
    ``make_fds`` (sent with the first byte), then read the report, or close at once."""

    answer: bytes = b""
    make_fds: Callable[[], list[int]] | None = None
    read_report: bool = False
    read_request: bool = True  # False: answer as soon as the client connects (and close)


@dataclass
class Seen:
    """What one connection brought: the request's frames, and the client's report."""

    attrs: dict[str, str] = field(default_factory=dict)
    message: bytes = b""
    envelope: bytes | None = None
    report: tuple[int, str | None] | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)  # the connection is closed


def memfd(data: bytes) -> int:
    fd = os.memfd_create("fake-final", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class FakeDaemon:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qsfake"))
        self.path = self.dir / "q.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        self.scripts: deque[Script] = deque()
        self.seen: list[Seen] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = False
        self._thread.start()

    def expect(self, script: Script) -> None:
        self.scripts.append(script)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                script = self.scripts.popleft() if self.scripts else Script()
                seen = Seen()
                self.seen.append(seen)
                try:
                    self._one(conn, script, seen)
                except Exception as exc:  # recorded: the test looks at what the client did
                    seen.error = f"{type(exc).__name__}: {exc}"
            seen.done.set()

    def _one(self, conn: socket.socket, script: Script, seen: Seen) -> None:
        conn.settimeout(10)
        if script.read_request:
            dec = frames.FrameDecoder()
            req = frames.RequestAssembler(1 << 30)
            while not req.done:
                data = conn.recv(1 << 20)
                if not data:
                    raise EOFError("client closed before the end of the request")
                for kind, payload in dec.feed(data):
                    req.add(kind, payload)
            seen.attrs, seen.message, seen.envelope = req.attrs, req.message(), req.envelope
        fds = script.make_fds() if script.make_fds else []
        try:
            if fds and script.answer:
                socket.send_fds(conn, [script.answer[:1]], fds)
                conn.sendall(script.answer[1:])
            elif script.answer:
                conn.sendall(script.answer)
        finally:
            for fd in fds:
                os.close(fd)
        if script.read_report:
            dec = frames.FrameDecoder()
            got: list[tuple[bytes, bytes]] = []
            while not got:
                data = conn.recv(65536)
                if not data:
                    raise EOFError("client closed without a report")
                got = dec.feed(data)
            kind, payload = got[0]
            assert kind == frames.STATUS, kind
            seen.report = frames.decode_result(payload, "surrogateescape")

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


@contextlib.contextmanager
def fake_daemon() -> Iterator[FakeDaemon]:
    d = FakeDaemon()
    try:
        yield d
    finally:
        d.close()
