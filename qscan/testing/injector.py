"""Drive a QMAILQUEUE program exactly as qmail-smtpd does.

The message goes down a pipe on fd 0 and, once it is fully written, the
envelope down a pipe on fd 1; fd 6 is a pipe for the custom error text. Used by
the demo, the tests and the benchmarks, so all three exercise the real
protocol over real file descriptors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass

from ingest.qmail_queue import wait_pid


@dataclass(frozen=True, slots=True)
class InjectResult:
    code: int
    fd6: str  # what the program wrote on fd 6 ('' when nothing)
    elapsed: float
    stderr: str = ""  # what it wrote on fd 2, when asked to keep it (capture_stderr)


def inject(
    program: str,
    message: bytes,
    envelope: bytes,
    env: dict[str, str],
    *,
    fd6: bool = True,
    timeout: float = 120.0,
    stdin_fd: int | None = None,
    capture_stderr: bool = False,
) -> InjectResult:
    """Run ``program`` once; ``stdin_fd`` replaces the message pipe (error-path tests);
    ``capture_stderr``: fd 2 goes to a file whose text is returned (a pipe could fill up)."""
    start = time.perf_counter()
    err_file = tempfile.TemporaryFile() if capture_stderr else None  # noqa: SIM115 - closed below
    m_r, m_w = os.pipe()
    e_r, e_w = os.pipe()
    x_r, x_w = os.pipe() if fd6 else (-1, -1)
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin_fd if stdin_fd is not None else m_r, 0),
        (os.POSIX_SPAWN_DUP2, e_r, 1),
    ]
    if fd6:
        actions.append((os.POSIX_SPAWN_DUP2, x_w, 6))
    if err_file is not None:
        actions.append((os.POSIX_SPAWN_DUP2, err_file.fileno(), 2))
    try:
        pid = os.posix_spawn(program, [program], env, file_actions=actions)
    finally:
        for fd in (m_r, e_r, x_w):
            if fd >= 0:
                os.close(fd)
    try:
        for fd, data in ((m_w, message), (e_w, envelope)):
            view = memoryview(data)
            try:
                while view:
                    n = os.write(fd, view[: 1 << 16])
                    view = view[n:]
            except BrokenPipeError:
                pass  # the program stopped reading (it exits with its answer)
            finally:
                os.close(fd)
        code = wait_pid(pid, timeout)
        if code is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"{program} did not exit within {timeout}s")
        text = b""
        if fd6:
            os.set_blocking(x_r, False)
            with contextlib.suppress(BlockingIOError):
                text = os.read(x_r, 4096)
        err = ""
        if err_file is not None:
            err_file.seek(0)
            err = err_file.read().decode("utf-8", "replace")
        return InjectResult(code, text.decode("utf-8", "replace"), time.perf_counter() - start, err)
    finally:
        if x_r >= 0:
            os.close(x_r)
        if err_file is not None:
            err_file.close()
