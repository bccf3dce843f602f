"""The embedded durable log: an append-only SQLite database in WAL mode.

Why SQLite: one file, crash-safe (every write returns only after an fsync of the
WAL that holds its commit, so an acknowledged append survives power loss), concurrent
appends from every worker process serialised by SQLite's own lock, readers that
never block writers, and integrity checks for free. The raw message is stored
in its own column so consumers that only need the summary never read it.

Group commit: SQLite's own commit fsync (``synchronous=FULL``) runs while the writer
holds the database's write lock, so two workers' appends were two fsyncs in a row. The
connection runs with ``synchronous=NORMAL`` (SQLite still syncs around checkpoints) and
every method that writes ends with :meth:`Journal._sync`: an ``fdatasync`` of the WAL file
after the lock is released. It returns only once everything written to the WAL so far -
this commit included - is on disk, and fsyncs that overlap are committed together by the
file system: the next worker appends while this one waits for the disk. A method added
here that writes must end with ``self._sync()`` too (tests/test_journal_group_commit.py).

Positions are journal sequence numbers (``seq``, 1-based, strictly increasing).
"Position N" means "everything up to and including N has been handled".

**The chain.** Each event stores ``prev`` (the link of the event before it) and
``chain`` (its own link, ``ingest.journal_link.link``), computed inside the
appending transaction (``BEGIN IMMEDIATE``: the last link is read and the event
inserted under the one write lock, whichever worker process appends). Editing,
deleting or inserting an event breaks the chain where it happened
(``compliance.journal_chain`` walks it). Three ``meta`` keys keep it checkable:
``chain_start`` (the first chained seq: 1 for a new journal, the next seq for a
journal made before the chain existed, whose older events stay unchained) and
``chain_pruned`` (``SEQ HASH`` of the last event pruning deleted: the first kept
event must link to it).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest.journal_link import GENESIS, link
from ingest.private import make_private_dirs, prepare_sqlite_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    appended   REAL NOT NULL,
    body       BLOB NOT NULL,
    raw        BLOB,
    prev       TEXT,
    chain      TEXT
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
    prev: str | None = None  # the previous event's link (None: appended before the chain)
    chain: str | None = None  # this event's link (ingest.journal_link)


class JournalError(RuntimeError):
    """The journal could not durably record or read an event."""


class Journal:
    """One connection to the journal; open one per process (not fork-safe)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 autocheckpoint: bool = True) -> None:
        """``autocheckpoint=False``: this connection's commits never copy the WAL into the
        database (SQLite's automatic checkpoint, every 1,000 pages, runs inside the commit that
        crosses the mark: 5-15 ms of that one append). Whoever opens it so calls
        :meth:`checkpoint` itself, off its latency path (the daemon's workers, between messages)."""
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
            self._db.execute("PRAGMA synchronous=NORMAL")  # each write's fsync is _sync's
            if not autocheckpoint:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._wal = f"{self.path}-wal"
            self._wal_ino = -1  # the WAL file whose directory entry was last made durable
            if not readonly:
                self._retry(lambda: self._db.executescript(SCHEMA))
                self._retry(self._migrate_chain)
                self._sync()
            self._chained = self._has_chain_columns()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._cols = "seq, event_id, type, appended, body, {raw}" + (
            ", prev, chain" if self._chained else "")

    def _has_chain_columns(self) -> bool:
        names = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        return "chain" in names

    def _migrate_chain(self) -> None:
        """Give a journal made before the chain its columns and its ``chain_start``.

        Its events stay unchained (``compliance.journal_chain`` reports them as
        "unchained before seq N", not as tampering); new ones chain from GENESIS."""
        if self._has_chain_columns() and self.meta("chain_start") is not None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_chain_columns():
                self._db.execute("ALTER TABLE events ADD COLUMN prev TEXT")
                self._db.execute("ALTER TABLE events ADD COLUMN chain TEXT")
            if self.meta("chain_start") is None:
                self._set_meta("chain_start", str(self.head() + 1))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?,?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def _sync(self) -> None:
        """Make every commit so far durable: fdatasync the WAL, outside SQLite's write lock.

        The WAL is opened by name each time, so the file synced is the one SQLite writes now
        (it is removed when the last connection closes and made anew by the next); a new one
        gets its directory synced too, as SQLite does for a WAL it creates.
        """
        try:
            fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
                ino = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            if ino != self._wal_ino:
                dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                self._wal_ino = ino
        except OSError as exc:
            raise JournalError(f"cannot fsync journal {self._wal}: {exc}") from exc

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
    _INSERT = ("INSERT INTO events(seq, event_id, type, appended, body, raw, prev, chain) "
               "VALUES (?,?,?,?,?,?,?,?)")
    # The next seq (AUTOINCREMENT's counter) and the newest kept event's link, in one step.
    _TIP = ("SELECT (SELECT seq FROM sqlite_sequence WHERE name='events'), "
            "(SELECT chain FROM events ORDER BY seq DESC LIMIT 1), "
            "(SELECT value FROM meta WHERE key='chain_pruned')")

    def _start_link(self, pruned: str | None) -> str:
        """The ``prev`` of an event appended when no kept event has a link: the pruned
        point's link when pruning emptied the journal, else GENESIS (a new journal, or one
        whose events all predate the chain)."""
        empty = self._db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None
        return pruned.split()[1] if empty and pruned else GENESIS

    def append(self, event_id: str, event_type: str, body: bytes, raw: bytes | None = None,
               *, raw_sha256: str | None = None) -> int:
        """Durably append one event, chained to the one before it; returns its seq.

        ``raw_sha256``: the raw message's SHA-256 when the caller computed it already."""
        return self._append(((event_id, event_type, body, raw, raw_sha256),))

    def append_many(self, entries: Iterable[tuple[str, str, bytes, bytes | None]]) -> int:
        """Append events in one transaction (each chained to the one before); returns the
        last seq. The last link is read under the write lock ``BEGIN IMMEDIATE`` takes, so
        concurrent appenders (every worker process) chain one after the other."""
        return self._append((eid, typ, body, raw, None) for eid, typ, body, raw in entries)

    def _append(self, entries: Iterable[tuple[str, str, bytes, bytes | None, str | None]]) -> int:
        if not self._chained:
            raise JournalError(f"journal {self.path} was opened read-only before its chain "
                               "was added: open it writable once")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                last, prev, pruned = self._db.execute(self._TIP).fetchone()
                seq = int(last or 0)
                if prev is None:
                    prev = self._start_link(pruned)
                rows = []
                for event_id, event_type, body, raw, digest in entries:
                    seq += 1
                    now = time.time()
                    chain = link(prev, seq, now, event_id, event_type, body, raw, digest)
                    rows.append((seq, event_id, event_type, now, body, raw, prev, chain))
                    prev = chain
                self._db.executemany(self._INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise JournalError(f"append failed: {exc}") from exc
        self._sync()
        return seq

    # -- reading -------------------------------------------------------------
    def read(self, after: int, limit: int = 500, *, with_raw: bool = True,
             max_bytes: int = READ_MAX_BYTES) -> list[JournalEntry]:
        """Up to ``limit`` entries after ``after``, stopping early once they hold ``max_bytes``.

        Always at least one entry when there is one: a batch of big messages is bounded by
        bytes, not by count (500 messages of 25 MB would not fit in a consumer's memory).
        """
        cols = self._cols.format(raw="raw" if with_raw else "NULL")
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
        cols = self._cols.format(raw="raw" if with_raw else "NULL")
        row = self._db.execute(
            f"SELECT {cols} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return JournalEntry(*row) if row else None

    def ids_starting(self, prefix: str, limit: int = 2) -> list[str]:
        """Kept event ids that start with ``prefix`` (at most ``limit``; the UNIQUE index on
        event_id makes it a range scan), for the commands that take an id prefix."""
        rows = self._db.execute("SELECT event_id FROM events WHERE event_id >= ? AND event_id < ? "
                                "ORDER BY event_id LIMIT ?", (prefix, prefix + "\uffff", limit))
        return [r[0] for r in rows]

    def last_of_type(self, event_type: str) -> JournalEntry | None:
        """The newest kept event of one type (no index on type: a backward scan; rare use)."""
        row = self._db.execute(
            f"SELECT {self._cols.format(raw='NULL')} FROM events WHERE type = ? "
            "ORDER BY seq DESC LIMIT 1", (event_type,)).fetchone()
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
        self._sync()

    def get_position(self, name: str) -> int | None:
        row = self._db.execute("SELECT seq FROM positions WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else None

    def positions(self) -> dict[str, int]:
        return {n: int(s) for n, s in self._db.execute("SELECT name, seq FROM positions")}

    # -- small records of its readers (the relay's topic marks) ----------------
    def set_meta(self, key: str, value: str) -> None:
        """Durably record one ``meta`` value (the relay's marks; the chain keeps its own)."""
        self._set_meta(key, value)
        self._sync()

    def prune(self, required: Iterable[str], keep_seconds: float = 0.0) -> int:
        """Delete events every required reader has passed and older than ``keep_seconds``.

        A required reader without a recorded position holds everything back.
        Returns the number of events deleted. The oldest events go first and none after
        a younger one, so what stays is one unbroken stretch of the chain; the link of the
        last deleted event is kept (``chain_pruned``) for the first kept one to link to.
        """
        names = list(required)
        floor = self.head()
        pos = self.positions()
        for name in names:
            floor = min(floor, pos.get(name, 0))
        cutoff = time.time() - keep_seconds
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Up to the first event too young to go (clocks may step back: never leave a hole).
            young = self._db.execute("SELECT MIN(seq) FROM events WHERE seq <= ? AND appended >= ?",
                                     (floor, cutoff)).fetchone()[0]
            upto = floor if young is None else int(young) - 1
            last = self._db.execute("SELECT seq, chain FROM events WHERE seq <= ? "
                                    "ORDER BY seq DESC LIMIT 1", (upto,)).fetchone()
            cur = self._db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
            deleted = cur.rowcount or 0
            if deleted and last is not None and last[1] is not None:
                self._set_meta("chain_pruned", f"{int(last[0])} {last[1]}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._sync()
        if deleted:
            self.checkpoint()
        return deleted

    def checkpoint(self) -> int:
        """Copy what the WAL holds into the database as far as no reader needs it (SQLite's
        PASSIVE checkpoint: it waits for nobody, and syncs the database file before the WAL is
        reused); returns the frames copied. Cheap when there is nothing to copy."""
        try:
            _busy, _frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"checkpoint of {self.path} failed: {exc}") from exc
        return max(0, int(copied))

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
