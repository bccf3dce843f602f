"""Files qscan keeps under its data directory are private: files 0600, directories 0700.

Whatever the umask qscan was started with. Two layers do it: every qscan process sets
``PRIVATE_UMASK`` when it starts (the command line's entry point), and each place that makes
a file holding mail, addresses or keys makes it with an exact mode, so library callers and
tests started under umask 022 get the same result.

SQLite (3.40 here, and every version since 3.7.x) creates a database's ``-wal``, ``-shm``
and ``-journal`` files with the mode of the database file itself (and fixes an empty
leftover's mode the same way), so a database file made 0600 *before* the first connection
keeps its companions private; a non-empty leftover keeps its mode, so loose ones are
tightened here too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def restrict_umask() -> int:
    """Set the process umask to 0o077 (keeps any stricter bits); returns the old one."""
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    return old


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable (a file or directory created in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(path: Path, *, durable: bool = False) -> None:
    """Create ``path`` and every missing parent with mode 0700 exactly (the umask neither
    loosens nor tightens it); directories that already exist are left as they are.

    ``durable``: fsync each new directory into its parent. A directory created but not
    fsynced can vanish on a crash together with every message already "durably" written in it."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)
        if durable:
            fsync_dir(d.parent)


def create_private_file(path: Path) -> bool:
    """Create an empty ``path`` with mode 0600 exactly unless something is there; True if made."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def tighten(path: Path, mode: int = FILE_MODE) -> None:
    """Take group and other bits off an existing ``path`` (not through a symlink).

    Path-based on purpose: closing any descriptor of an open SQLite database would drop the
    POSIX locks this process's connections hold on it. Not ours to change (EPERM): left as
    it is, for `qscan install --check` to report.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & 0o077:
        return
    with contextlib.suppress(PermissionError):
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def prepare_sqlite_file(path: Path, *, create: bool = True) -> None:
    """Before the first connection to a SQLite database file: make it (when ``create``) 0600,
    and tighten a loose one and any loose companion files an older version or a crash left."""
    if create and not os.path.lexists(path):
        create_private_file(path)
    for p in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)):
        tighten(p)
