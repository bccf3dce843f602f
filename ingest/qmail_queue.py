"""Running the real qmail-queue: message on fd 0, envelope on fd 1, custom errors on fd 6.

Used by ``qscan-queue-py`` (the reference client runs it for the daemon, as the native
``qscan-queue`` does) and by quarantine releases; the daemon never runs it.

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
    errno: int | None = None  # why it could not be started


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
    """Run ``program`` with ``message`` on fd 0 and ``envelope`` on fd 1 (quarantine releases,
    in-process callers; the daemon itself never runs it: qscan-queue does)."""
    start = time.monotonic()
    msg_fd = env_fd = -1
    try:  # any of these may fail (EMFILE, ENOMEM): the caller records it, nothing may leak
        msg_fd = _memfd("qscan-msg", message)
        env_fd = _memfd("qscan-env", envelope)
        return run_qmail_queue_fds(program, msg_fd, env_fd, timeout=timeout, env=env, start=start)
    finally:
        for fd in (msg_fd, env_fd):
            if fd >= 0:
                os.close(fd)


def cannot_run_text(strerror: str | None) -> str:
    """fd 6 text when qmail-queue cannot be started (missing, not executable)."""
    return f"Zqscan: cannot run qmail-queue ({strerror}) (#4.3.0)"


def fd6_text(data: bytes, errors: str = "replace") -> str | None:
    """What a qmail-queue wrote on fd 6, as passed on: NULs, CRs and LFs stripped at both ends,
    kept only when it starts with D (permanent) or Z (temporary)."""
    t = data.strip(b"\0\r\n").decode("utf-8", errors)
    return t if t[:1] in ("D", "Z") else None


def run_qmail_queue_fds(
    program: Path | str, msg_fd: int, env_fd: int, *, timeout: float = 600.0,
    env: dict[str, str] | os._Environ[str] | None = None, start: float | None = None,
    errors: str = "replace",
) -> QueueResult:
    """Run ``program`` with ``msg_fd`` on fd 0 and ``env_fd`` on fd 1, both read from where
    they stand; a pipe on fd 6 for its error text (read when it exits 82). Killed after
    ``timeout`` seconds (exit 52, as qmail-queue's own timeout)."""
    start = time.monotonic() if start is None else start
    err_r = err_w = -1
    try:
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
            return QueueResult(ec.CUSTOM_ERROR, cannot_run_text(exc.strerror), time.monotonic() - start,
                               exc.errno)
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
            text = fd6_text(data, errors)
        code = status if status >= 0 else ec.TEMP_REJECT  # killed by a signal: temporary
        return QueueResult(code, text, time.monotonic() - start)
    finally:
        for fd in (err_r, err_w):
            if fd >= 0:
                os.close(fd)
