"""A stand-in qmail-queue for the demo, tests and benchmarks.

``write_standin(path, record_dir)`` writes a self-contained, stdlib-only script
(run with ``python -S`` so it starts fast) that reads fd 0 and fd 1 fully, as
qmail-queue does, records both under ``record_dir`` (``N.msg`` and ``N.env``),
and exits with the code found in ``record_dir/exit_code`` (default 0). When
``record_dir/reply`` exists and the code is 82 its text goes to fd 6;
``record_dir/sleep`` makes it wait that many seconds first (in-flight tests), after touching
``record_dir/.running`` (the harness's ``wait_running``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCRIPT = r'''#!@PYTHON@ -S
import os, sys, time
RECORD = @RECORD@

def read_all(fd):
    out = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(out)
        out.append(b)

def control(name, default=None):
    try:
        with open(os.path.join(RECORD, name)) as f:
            return f.read().strip()
    except OSError:
        return default

msg = read_all(0)
env = read_all(1)
delay = control("sleep")
if delay:
    open(os.path.join(RECORD, ".running"), "a").close()  # tests wait for it: qmail-queue holds the mail
    time.sleep(float(delay))
code = int(control("exit_code", "0"))
if code == 0 or control("record_failures"):
    fd = os.open(os.path.join(RECORD, ".seq"), os.O_RDWR | os.O_CREAT, 0o600)
    import fcntl
    fcntl.flock(fd, fcntl.LOCK_EX)
    n = int(os.read(fd, 32) or b"0") + 1
    os.lseek(fd, 0, 0)
    os.ftruncate(fd, 0)
    os.write(fd, str(n).encode())
    for suffix, data in ((".msg", msg), (".env", env)):
        with open(os.path.join(RECORD, "%06d%s" % (n, suffix)), "wb") as f:
            f.write(data)
    os.close(fd)
if code == 82:
    reply = control("reply")
    if reply:
        try:
            os.write(6, reply.encode())
        except OSError:
            pass
sys.exit(code)
'''


def write_standin(path: Path, record_dir: Path) -> Path:
    record_dir.mkdir(parents=True, exist_ok=True)
    text = SCRIPT.replace("@PYTHON@", sys.executable).replace("@RECORD@", repr(str(record_dir)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o755)
    return path


def recorded(record_dir: Path) -> list[tuple[bytes, bytes]]:
    """Every (message, envelope) the stand-in accepted, in order."""
    out = []
    for msg in sorted(record_dir.glob("*.msg")):
        out.append((msg.read_bytes(), msg.with_suffix(".env").read_bytes()))
    return out


DRAIN = """#!/bin/sh
# A qmail-queue any user can run (tests whose qscan-queue runs as another user): it reads the
# message and the envelope, as qmail-queue does, queues nothing and exits 0.
cat >/dev/null && cat <&1 >/dev/null
"""


def write_drain(path: Path) -> Path:
    """``DRAIN`` at ``path``, mode 0755 (its directory must be passable by that user)."""
    path.write_text(DRAIN)
    os.chmod(path, 0o755)
    return path
