"""QSCAN/1 straight over the daemon's socket, without a qscan-queue process (tests, benchmarks).

``read_answer`` reads the daemon's answer as a client must: an ``R`` frame is the answer; an
``X`` frame hands the final message over (a memfd beside it, ``SCM_RIGHTS``), and the client
reports what its qmail-queue said (``S``). Here ``queue`` stands in for qmail-queue: given the
message's bytes it returns (exit code, fd 6 text); by default it "queues" nothing and says 0.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from ingest import frames

Queue = Callable[[bytes], tuple[int, str | None]]


def request(message: bytes, envelope: bytes, attrs: dict[str, str] | None = None) -> bytes:
    """A whole request, framed as qscan-queue frames it."""
    out = [frames.encode(frames.HELLO, frames.PROTOCOL)]
    out += [frames.encode(frames.ATTR, f"{k}={v}".encode()) for k, v in (attrs or {}).items()]
    out += [frames.encode(frames.MESSAGE, message[i:i + frames.MAX_CHUNK])
            for i in range(0, len(message), frames.MAX_CHUNK)]
    out += [frames.encode(frames.ENVELOPE, envelope), frames.encode(frames.END)]
    return b"".join(out)


def _accepted(message: bytes) -> tuple[int, str | None]:
    return 0, None


def read_answer(sock: socket.socket, timeout: float, queue: Queue = _accepted
                ) -> tuple[int, str | None] | None:
    """The answer to the request sent on ``sock``: (code, text), or None on EOF or timeout.
    For a hand-off, what ``queue`` answered (and reported to the daemon)."""
    dec = frames.FrameDecoder()
    fds: list[int] = []
    end = time.monotonic() + timeout
    try:
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, got_fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
            except OSError:  # timeout, reset
                return None
            fds += got_fds
            if not data:
                return None
            for kind, payload in dec.feed(data):
                if kind == frames.RESULT:
                    return frames.decode_result(payload)
                assert kind == frames.HANDOFF and len(fds) == 1, (kind, fds)
                size, _timeout = frames.decode_handoff(payload)
                message = os.pread(fds[0], size, 0)
                code, text = queue(message)
                sock.sendall(frames.encode_status(code, text))
                return code, text
        return None
    finally:
        for fd in fds:
            os.close(fd)


def send(sock_path: str | os.PathLike[str], message: bytes, envelope: bytes,
         attrs: dict[str, str] | None = None, timeout: float = 60, queue: Queue = _accepted
         ) -> tuple[int, str | None] | None:
    """One request on a new connection; its answer (see ``read_answer``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(os.fspath(sock_path))
        s.sendall(request(message, envelope, attrs))
        return read_answer(s, timeout, queue)
