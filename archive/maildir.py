"""Maildir writing that survives power loss and tolerates replays.

Delivery follows the maildir protocol (write in ``tmp/``, then rename into
``new/``) with the fsyncs that make it durable: the file is fsynced *before*
the rename, otherwise a crash can leave a name in ``new/`` pointing at empty
or partial data; the ``new/`` directory is fsynced once per batch, because
one directory fsync covers every rename before it and doing it per file would
cap throughput at the disk's flush rate.

Names are chosen by the caller from the event, so delivering a name twice is a
replay and must be a no-op - including when a mail client has meanwhile moved
the message to ``cur/NAME:2,FLAGS``.

Files are 0600 and directories 0700: archived mail is as private as the
mailboxes it was copied from.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, wait
from pathlib import Path

from ingest.private import fsync_dir, make_private_dirs

FILE_MODE = 0o600
DIR_MODE = 0o700

# No "/", no ":" (the maildir info separator), no leading dot (hidden files and
# Maildir++ folders), so a name can never escape its directory or be misread.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,=-]*\Z")

# A directory timestamp this close to the moment we listed it may hide a later
# change made within the same timestamp tick. Whole-second timestamps (ext3,
# old ext4 inodes) get a long window; fine-grained ones a tick or two of slack.
_RACY_COARSE_NS = 2_000_000_000
_RACY_FINE_NS = 50_000_000


def check_name(name: str) -> str:
    """Refuse anything that is not a plain, single-component maildir name."""
    if len(name) > 200 or not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe maildir name {name!r}")
    return name


def make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents as 0700, each new entry fsynced into its parent."""
    make_private_dirs(path, durable=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Staged:
    """A message written to ``tmp/`` but neither fsynced nor visible yet."""

    __slots__ = ("fd", "maildir", "name")

    def __init__(self, maildir: Maildir, name: str, fd: int) -> None:
        self.maildir = maildir
        self.name = name
        self.fd: int | None = fd

    def sync(self) -> None:
        """fsync and close; safe to call from a worker thread (fsync drops the GIL)."""
        if self.fd is None:
            return
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.maildir.tmp / self.name)
        except FileNotFoundError:
            pass


class Maildir:
    """One maildir (``tmp/``, ``new/``, ``cur/``) written by a single consumer."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.new = self.path / "new"
        self.cur = self.path / "cur"
        self._dirty: set[Path] = set()
        self._cur_names: set[str] | None = None
        self._cur_mtime = 0
        self._cur_racy = True
        if create:
            self.create()

    def __repr__(self) -> str:
        return f"Maildir({str(self.path)!r})"

    def create(self) -> None:
        for d in (self.tmp, self.new, self.cur):
            make_dirs(d)

    # -- lookup ---------------------------------------------------------------

    def _cur_index(self) -> set[str]:
        """Base names in ``cur/``, re-listed only when the directory changed.

        Listing ``cur/`` for every message would make each delivery cost
        O(archive size); its mtime tells us when a client moved something.
        """
        st = os.stat(self.cur)
        if self._cur_names is None or self._cur_racy or st.st_mtime_ns != self._cur_mtime:
            listed_at = time.time_ns()
            with os.scandir(self.cur) as it:
                self._cur_names = {e.name.split(":", 1)[0] for e in it}
            self._cur_mtime = st.st_mtime_ns
            coarse = st.st_mtime_ns % 1_000_000_000 == 0
            window = _RACY_COARSE_NS if coarse else _RACY_FINE_NS
            self._cur_racy = listed_at - st.st_mtime_ns < window
        return self._cur_names

    def exists(self, name: str) -> bool:
        """True if ``name`` is in ``new/`` or (moved by a client) in ``cur/``."""
        check_name(name)
        if os.path.lexists(self.new / name):
            return True
        return name in self._cur_index()

    def find(self, match: Callable[[str], bool]) -> list[str]:
        """Base names in ``new/`` and ``cur/`` accepted by ``match`` (a full listing)."""
        found: set[str] = set()
        for d in (self.new, self.cur):
            with os.scandir(d) as it:
                for e in it:
                    base = e.name.split(":", 1)[0]
                    if match(base):
                        found.add(base)
        return sorted(found)

    # -- writing --------------------------------------------------------------

    def stage(self, name: str, data: bytes) -> Staged | None:
        """Write ``data`` to ``tmp/name``; None when ``name`` is already delivered."""
        if self.exists(name):
            return None
        path = self.tmp / name
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            # Left behind by a crash before the rename: the name is ours, so the
            # leftover is an incomplete copy of this very message.
            os.unlink(path)
            fd = os.open(path, flags, FILE_MODE)
        staged = Staged(self, name, fd)
        try:
            _write_all(fd, data)
        except BaseException:
            staged.discard()
            raise
        return staged

    def publish(self, staged: Staged) -> None:
        """Rename a synced staged file into ``new/`` (durable after ``sync()``)."""
        if staged.fd is not None:
            raise RuntimeError("publish before sync: the data might not be on disk")
        os.rename(self.tmp / staged.name, self.new / staged.name)
        self._dirty.add(self.new)

    def deliver(self, name: str, data: bytes) -> bool:
        """Deliver one message; returns False for a replay. Call ``sync()`` after."""
        staged = self.stage(name, data)
        if staged is None:
            return False
        try:
            staged.sync()
        except BaseException:
            staged.discard()
            raise
        self.publish(staged)
        return True

    def remove(self, name: str) -> bool:
        """Remove ``name`` from ``new/`` or ``cur/``; returns whether anything went."""
        check_name(name)
        removed = False
        try:
            os.unlink(self.new / name)
            self._dirty.add(self.new)
            removed = True
        except FileNotFoundError:
            pass
        with os.scandir(self.cur) as it:
            in_cur = [e.name for e in it if e.name.split(":", 1)[0] == name]
        for entry in in_cur:
            try:
                os.unlink(self.cur / entry)
            except FileNotFoundError:
                continue
            self._dirty.add(self.cur)
            removed = True
        if in_cur and self._cur_names is not None:
            self._cur_names.discard(name)
        return removed

    def sync(self) -> None:
        """Make every rename and unlink since the last ``sync()`` durable."""
        for d in sorted(self._dirty):
            fsync_dir(d)
        self._dirty.clear()


def deliver_batch(
    items: Iterable[tuple[Maildir, str, bytes]], executor: Executor | None = None
) -> int:
    """Deliver many messages durably; returns how many were new.

    The per-file fsyncs run concurrently when an executor is given: the
    filesystem then commits them together, which is where most of the
    throughput comes from on a real disk. Renames happen only after every
    fsync, and each touched maildir's ``new/`` is fsynced once at the end.
    """
    staged: list[Staged] = []
    touched: dict[int, Maildir] = {}
    seen: set[tuple[int, str]] = set()
    try:
        for maildir, name, data in items:
            if (id(maildir), name) in seen:  # a duplicate within the batch
                continue
            seen.add((id(maildir), name))
            s = maildir.stage(name, data)
            if s is not None:
                staged.append(s)
                touched[id(maildir)] = maildir
        _sync_all(staged, executor)
    except BaseException:
        for s in staged:
            s.discard()
        raise
    for s in staged:
        s.maildir.publish(s)
    for maildir in touched.values():
        maildir.sync()
    return len(staged)


def _sync_all(staged: Sequence[Staged], executor: Executor | None) -> None:
    if executor is None or len(staged) < 2:
        for s in staged:
            s.sync()
        return
    # Wait for every fsync before looking at errors: the caller discards the
    # staged files on failure and must not close an fd another thread is using.
    futures = [executor.submit(s.sync) for s in staged]
    wait(futures)
    for f in futures:
        f.result()  # re-raise the first fsync error, before anything is renamed
