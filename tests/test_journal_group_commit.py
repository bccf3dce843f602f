"""Every journal write is durable before it returns, and its fsync runs outside SQLite's write
lock (group commit: the next worker appends while this one waits for the disk).

Read off the system calls themselves (strace): for each write, the last WAL frame written, the
release of the WAL write lock, and an fdatasync/fsync of the WAL file after both and before the
process says the write returned. A WAL file new to the journal has its directory synced too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import os, sys
from ingest.journal import Journal
j = Journal(sys.argv[1])
os.write(1, b"DONE open\\n")
j.append("e1", "message.scanned", b"{}", b"raw message " * 1000)
os.write(1, b"DONE append\\n")
j.append_many([("e2", "message.scanned", b"{}", None), ("e3", "message.scanned", b"{}", b"x")])
os.write(1, b"DONE append_many\\n")
j.set_position("archive", 3)
os.write(1, b"DONE set_position\\n")
deleted = j.prune(["archive"])
assert deleted == 3, deleted
os.write(1, b"DONE prune\\n")
j.append("e4", "message.scanned", b"{}", b"after a prune")
os.write(1, b"DONE append again\\n")
"""

LINE = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
WAL_WRITE_LOCK = "l_start=120, l_len=1"  # SQLite's WAL_WRITE_LOCK byte in the -shm file


def trace(tmp_path: Path, db: Path) -> list[tuple[str, str, int]]:
    out = tmp_path / "trace.txt"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=openat,pwrite64,write,fdatasync,fsync,fcntl", "-o", str(out),
         sys.executable, "-c", SCRIPT, str(db)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    calls = []
    for line in out.read_text().splitlines():
        m = LINE.match(line)
        if m:
            calls.append((m[1], m[2], int(m[3])))
    return calls


def test_each_write_is_fsynced_after_the_write_lock_and_before_it_returns(tmp_path: Path) -> None:
    require("strace", shutil.which("strace") is not None)
    db = tmp_path / "journal.db"
    calls = trace(tmp_path, db)
    wal, shm, directory = f'"{db}-wal"', f'"{db}-shm"', f'"{tmp_path}"'
    fds: dict[int, str] = {}
    segment: list[tuple[str, str]] = []  # (event, detail) since the last write returned
    done: list[str] = []
    dir_synced = False
    for name, args, ret in calls:
        if name == "openat" and ret >= 0:
            fds[ret] = args.split(",")[1].strip()
            continue
        fd = int(args.split(",")[0]) if args[:1].isdigit() else -1
        path = fds.get(fd, "")
        if name == "write" and fd == 1 and "DONE" in args:
            what = args.split("DONE ", 1)[1].split("\\n")[0]
            events = [e for e, _ in segment]
            dir_synced = dir_synced or ("fsync", directory) in segment
            if what != "open":
                # a new WAL: its directory entry is made durable before any write is acknowledged
                assert dir_synced, f"{what}: the new WAL's directory was never synced"
                last_frame = max(i for i, e in enumerate(events) if e == "wal-write")
                unlocked = max(i for i, e in enumerate(events) if e == "write-unlock")
                synced = [i for i, e in enumerate(events) if e == "wal-sync"]
                assert synced and synced[-1] > last_frame, f"{what}: WAL not synced after its commit"
                assert synced[-1] > unlocked, f"{what}: the fsync ran inside SQLite's write lock"
            done.append(what)
            segment = []
        elif name == "pwrite64" and path == wal:
            segment.append(("wal-write", ""))
        elif name == "fcntl" and path == shm and "F_UNLCK" in args and WAL_WRITE_LOCK in args:
            segment.append(("write-unlock", ""))
        elif name in ("fsync", "fdatasync") and path == wal:
            segment.append(("wal-sync", ""))
        elif name in ("fsync", "fdatasync"):
            segment.append(("fsync", path))
    assert done == ["open", "append", "append_many", "set_position", "prune", "append again"]
