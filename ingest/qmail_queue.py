"""Running the real qmail-queue: message on fd 0, envelope on fd 1, custom errors on fd 6.

The message and envelope go in memfds rather than pipes: qmail-queue reads fd 0
to EOF before it touches fd 1, and a regular file can never deadlock that
ordering, needs no writer thread, and costs one copy. posix_spawn (vfork) keeps
the spawn cheap even when a worker has a large heap.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import exitcodes as ec


@dataclass(frozen=True, slots=True)
class QueueResult:
    code: int
    text: str | None  # 'D...' / 'Z...' from fd 6, when the program wrote one
    elapsed: float


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def wait_pid(pid: int, timeout: float) -> int | None:
    """Wait for ``pid`` up to ``timeout`` seconds; the exit status, or None on timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # pragma: no cover - kernels before 5.3
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.005)
        return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    finally:
        os.close(pidfd)


def run_qmail_queue(
    program: Path | str, message: bytes, envelope: bytes, *, timeout: float = 600.0,
    env: dict[str, str] | None = None,
) -> QueueResult:
    start = time.monotonic()
    msg_fd = env_fd = err_r = err_w = -1
    try:  # any of these may fail (EMFILE, ENOMEM): the caller records it, nothing may leak
        msg_fd = _memfd("qscan-msg", message)
        env_fd = _memfd("qscan-env", envelope)
        err_r, err_w = os.pipe()
        try:
            pid = os.posix_spawn(
                str(program),
                [str(program)],
                env if env is not None else {"PATH": "/usr/bin:/bin"},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, msg_fd, 0),
                    (os.POSIX_SPAWN_DUP2, env_fd, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, ec.CUSTOM_ERROR_FD),
                ],
            )
        except OSError as exc:  # missing or not executable: configuration trouble
            return QueueResult(
                ec.CUSTOM_ERROR, f"Zqscan: cannot run qmail-queue ({exc.strerror}) (#4.3.0)",
                time.monotonic() - start,
            )
        os.close(err_w)
        err_w = -1
        status = wait_pid(pid, timeout)
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return QueueResult(ec.TIMEOUT, None, time.monotonic() - start)
        text = None
        if status == ec.CUSTOM_ERROR:
            os.set_blocking(err_r, False)
            try:
                data = os.read(err_r, 4096)
            except BlockingIOError:
                data = b""
            t = data.decode("utf-8", "replace").strip("\0\r\n")
            text = t if t[:1] in ("D", "Z") else None
        code = status if status >= 0 else ec.TEMP_REJECT  # killed by a signal: temporary
        return QueueResult(code, text, time.monotonic() - start)
    finally:
        for fd in (msg_fd, env_fd, err_r, err_w):
            if fd >= 0:
                os.close(fd)
