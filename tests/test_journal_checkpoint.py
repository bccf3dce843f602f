"""The daemon's workers copy the journal's WAL into the database between messages, never inside
an append (SQLite's automatic checkpoint ran in the commit that crossed 1,000 pages: a 5-15 ms
stall of that one message, the tail of the latency figures), and the WAL still does not grow
without bound."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from ingest.journal import Journal
from qscan.testing.daemon import running_daemon

MB = 1 << 20


def _frames_in_wal(path: Path) -> int:
    """The WAL file's length in frames (a checkpoint does not shrink the file; closing the last
    connection removes it)."""
    db = sqlite3.connect(path)
    try:
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()
    wal = Path(f"{path}-wal")
    return max(0, (wal.stat().st_size - 32) // (page + 24)) if wal.exists() else 0


def test_appends_do_not_checkpoint_when_told_not_to(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path, autocheckpoint=False)
    raw = os.urandom(64 * 1024)
    for i in range(100):  # ~6.5 MB: far past SQLite's 1,000-page automatic checkpoint
        j.append(f"e{i}", "message.scanned", b"{}", raw)
    assert path.stat().st_size < MB  # nothing was copied into the database by the appends
    assert _frames_in_wal(path) > 1000
    copied = j.checkpoint()
    assert copied > 1000 and path.stat().st_size > 6 * MB
    assert [e.event_id for e in j.read(0, limit=200, with_raw=False)] == [f"e{i}" for i in range(100)]
    j.close()  # the last connection: SQLite removes the WAL
    other = Journal(path)  # the default: SQLite checkpoints inside the commit, as before
    for i in range(100, 200):
        other.append(f"e{i}", "message.scanned", b"{}", raw)
    assert _frames_in_wal(path) <= 1100  # restarted after each automatic checkpoint
    other.close()


def test_the_daemons_workers_checkpoint_between_messages(tmp_path: Path) -> None:
    big = b"From: a@example.com\nTo: b@example.org\nSubject: big\n\n" + b"x" * 76 * 1024 + b"\n"
    with running_daemon(tmp_path) as h:
        for _ in range(80):  # ~6 MB of raw messages into the journal
            assert h.send(big).code == 0
        deadline = time.monotonic() + 15  # an idle worker checkpoints within a second
        while h.journal.stat().st_size < 5 * MB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert h.journal.stat().st_size >= 5 * MB, "the workers never checkpointed the journal"
