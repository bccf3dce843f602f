"""The embedded durable log: an append-only SQLite database in WAL mode.

Why SQLite: one file, crash-safe (WAL + ``synchronous=FULL`` fsyncs the WAL on
every commit, so an acknowledged append survives power loss), concurrent
appends from every worker process serialised by SQLite's own lock, readers that
never block writers, and integrity checks for free. The raw message is stored
in its own column so consumers that only need the summary never read it.

Positions are journal sequence numbers (``seq``, 1-based, strictly increasing).
"Position N" means "everything up to and including N has been handled".
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest.private import make_private_dirs, prepare_sqlite_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    appended   REAL NOT NULL,
    body       BLOB NOT NULL,
    raw        BLOB
);
CREATE TABLE IF NOT EXISTS positions (
    name       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL
);
"""


READ_MAX_BYTES = 64 * 1024 * 1024  # one read's event bodies and raw messages, together


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    event_id: str
    type: str
    appended: float
    body: bytes  # event JSON without raw_message
    raw: bytes | None  # the raw message (None when not requested or not stored)


class JournalError(RuntimeError):
    """The journal could not durably record or read an event."""


class Journal:
    """One connection to the journal; open one per process (not fork-safe)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if not readonly:
                make_private_dirs(self.path.parent)
            # 0600 before SQLite opens it: the -wal/-shm it makes get the same mode (raw mail)
            prepare_sqlite_file(self.path, create=self.path.parent.is_dir())
        except OSError as exc:
            raise JournalError(f"cannot create journal {self.path}: {exc}") from exc
        try:
            self._db = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=60000")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._retry(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            self._db.execute("PRAGMA synchronous=FULL")
            if not readonly:
                self._retry(lambda: self._db.executescript(SCHEMA))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc

    @staticmethod
    def _retry(fn: Callable[[], object], attempts: int = 50) -> None:
        # Switching to WAL and creating the schema can report "locked" without waiting
        # for the busy timeout when several processes open a new journal at once.
        for i in range(attempts):
            try:
                fn()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.02 * (i + 1))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------
    def append(self, event_id: str, event_type: str, body: bytes, raw: bytes | None = None) -> int:
        """Durably append one event; returns its sequence number."""
        try:
            cur = self._db.execute(
                "INSERT INTO events(event_id, type, appended, body, raw) VALUES (?,?,?,?,?)",
                (event_id, event_type, time.time(), body, raw),
            )
        except sqlite3.Error as exc:
            raise JournalError(f"append failed: {exc}") from exc
        assert cur.lastrowid is not None
        return cur.lastrowid

    def append_many(self, entries: Iterable[tuple[str, str, bytes, bytes | None]]) -> int:
        """Append many events in one transaction (bulk loads, relays); returns the last seq."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events(event_id, type, appended, body, raw) VALUES (?,?,?,?,?)",
                    ((eid, typ, time.time(), body, raw) for eid, typ, body, raw in entries),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise JournalError(f"append failed: {exc}") from exc
        return self.head()

    # -- reading -------------------------------------------------------------
    def read(self, after: int, limit: int = 500, *, with_raw: bool = True,
             max_bytes: int = READ_MAX_BYTES) -> list[JournalEntry]:
        """Up to ``limit`` entries after ``after``, stopping early once they hold ``max_bytes``.

        Always at least one entry when there is one: a batch of big messages is bounded by
        bytes, not by count (500 messages of 25 MB would not fit in a consumer's memory).
        """
        cols = "seq, event_id, type, appended, body, " + ("raw" if with_raw else "NULL")
        cur = self._db.execute(
            f"SELECT {cols} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        out: list[JournalEntry] = []
        size = 0
        try:
            for row in cur:
                out.append(JournalEntry(*row))
                size += len(row[4]) + (len(row[5]) if row[5] is not None else 0)
                if size >= max_bytes:
                    break
        finally:
            cur.close()
        return out

    def get(self, event_id: str, *, with_raw: bool = True) -> JournalEntry | None:
        cols = "seq, event_id, type, appended, body, " + ("raw" if with_raw else "NULL")
        row = self._db.execute(
            f"SELECT {cols} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return JournalEntry(*row) if row else None

    def head(self) -> int:
        """The highest sequence number ever assigned (0 for an empty journal)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    def oldest(self) -> int:
        row = self._db.execute("SELECT MIN(seq) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # -- positions -----------------------------------------------------------
    def set_position(self, name: str, seq: int) -> None:
        """Record a consumer's (or the relay's) position; used for pruning and status."""
        self._db.execute(
            "INSERT INTO positions(name, seq, updated) VALUES (?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET seq=excluded.seq, updated=excluded.updated",
            (name, seq, time.time()),
        )

    def get_position(self, name: str) -> int | None:
        row = self._db.execute("SELECT seq FROM positions WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else None

    def positions(self) -> dict[str, int]:
        return {n: int(s) for n, s in self._db.execute("SELECT name, seq FROM positions")}

    # -- small records of its readers (the relay's topic marks) ----------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?,?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def prune(self, required: Iterable[str], keep_seconds: float = 0.0) -> int:
        """Delete events every required reader has passed and older than ``keep_seconds``.

        A required reader without a recorded position holds everything back.
        Returns the number of events deleted.
        """
        names = list(required)
        floor = self.head()
        pos = self.positions()
        for name in names:
            floor = min(floor, pos.get(name, 0))
        cutoff = time.time() - keep_seconds
        cur = self._db.execute(
            "DELETE FROM events WHERE seq <= ? AND appended < ?", (floor, cutoff)
        )
        deleted = cur.rowcount or 0
        if deleted:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return deleted

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
