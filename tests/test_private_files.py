"""Every file qscan creates under its data directory is private (0600, directories 0700),
whatever the umask it was started with: the journal and SQLite companions (-wal, -shm,
-journal) hold raw mail and addresses just as the main files do."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from compliance.db import make_engine
from ingest.journal import Journal
from ingest.private import make_private_dirs, prepare_sqlite_file
from qscan.cli import cli
from qscan.testing.corpus import default_corpus_dir
from qscan.testing.daemon import Harness
from qscan.testing.standin import write_standin

ROOT = Path(__file__).resolve().parent.parent
LOOSE_UMASKS = (0o022, 0o002, 0o000)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def not_private(root: Path) -> list[str]:
    """Every entry under ``root`` (and root itself) that is not 0600 / 0700."""
    bad = []
    for entry in [root, *root.rglob("*")]:
        st = entry.lstat()
        mode = stat.S_IMODE(st.st_mode)
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if mode != want:
            bad.append(f"{entry.relative_to(root.parent)} {mode:04o}")
    return bad


@pytest.mark.parametrize("mask", LOOSE_UMASKS)
def test_journal_and_its_wal_are_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    data = tmp_path / "data"
    with umask(mask):
        with Journal(data / "sub" / "journal.db") as j:
            j.append("e1", "message.scanned", b"{}", b"raw mail")
            names = {p.name for p in (data / "sub").iterdir()}
            assert {"journal.db", "journal.db-wal", "journal.db-shm"} <= names
            assert not_private(data) == []
        assert not_private(data) == []


@pytest.mark.parametrize("mask", LOOSE_UMASKS)
def test_sqlite_store_and_its_companions_are_private(tmp_path: Path, mask: int) -> None:
    data = tmp_path / "data"
    with umask(mask):
        engine = make_engine(f"sqlite:///{data / 'db' / 'qscan.db'}")
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (x TEXT)"))
                conn.execute(text("INSERT INTO t VALUES ('alice@example.com')"))
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
                assert (data / "db" / "qscan.db-wal").exists()
                assert not_private(data) == []
        finally:
            engine.dispose()
        assert not_private(data) == []


def test_loose_files_left_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with umask(0o022):
        with Journal(data / "journal.db") as j:
            j.append("e1", "message.scanned", b"{}", b"raw mail")
        for p in data.iterdir():
            p.chmod(0o644)
        # a -wal left by a crash keeps its bytes, and SQLite reuses it as it is
        (data / "journal.db-wal").write_bytes(b"")
        (data / "journal.db-wal").chmod(0o644)
        with Journal(data / "journal.db", readonly=True) as j:
            assert [e.event_id for e in j.read(0)] == ["e1"]
        assert not_private(data) == []


def test_private_dirs_and_files_are_exact(tmp_path: Path) -> None:
    with umask(0o277):  # even a umask that takes the owner's write bit away
        make_private_dirs(tmp_path / "a" / "b" / "c")
        prepare_sqlite_file(tmp_path / "a" / "b" / "c" / "x.db")
    assert not_private(tmp_path / "a") == []


# -- the real processes ------------------------------------------------------------------
def qscan(config: Path, *args: str, mask: int = 0o022) -> str:
    """Run the qscan command line as a process started under a loose umask."""
    r = subprocess.run([sys.executable, "-m", "qscan", "-c", str(config), *args], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       preexec_fn=lambda: os.umask(mask))
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.integration
def test_daemon_and_consumers_under_umask_022_leave_only_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sock_dir = Path(tempfile.mkdtemp(prefix="qs"))
    record = tmp_path / "queued"
    standin = write_standin(tmp_path / "bin" / "qmail-queue", record)
    config = tmp_path / "qscan.toml"
    config.write_text(
        f'data_dir = "{data}"\n[daemon]\nsocket = "{sock_dir}/q.sock"\nqmail_queue = "{standin}"\n'
        'workers = 1\nhostname = "mx.test.example"\n[summary_log]\ntarget = "file"\n'
        '[consumers]\nenabled = ["archive", "summaries"]\n')
    h = Harness(tmp_path, config, sock_dir / "q.sock", record, qmail_queue=standin)  # qscan-queue runs it
    with umask(0o022):  # the daemon process inherits it
        h.start()
    try:
        clean = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
        assert h.send(clean).code == 0
        bad = (default_corpus_dir() / "20-invoice-exe.eml").read_bytes()
        assert h.send(bad, TCPREMOTEIP="203.0.113.99").code == 0  # quarantined
        qscan(config, "db", "upgrade")
        assert "applied 2 events" in qscan(config, "consume", "archive", "--once")
        assert "applied 2 events" in qscan(config, "consume", "summaries", "--once")
        names = {p.relative_to(data).as_posix() for p in data.rglob("*")}
        assert {"journal.db", "journal.db-wal", "journal.db-shm", "qscan.db", "summary.log"} <= names
        assert any(n.startswith("archive/new/") for n in names)
        assert any(n.startswith("quarantine/policy/new/") for n in names)
        assert not_private(data) == []
    finally:
        h.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert not_private(data) == []
    # ... and install --check, which walks the data directory, agrees; then finds a loose file
    args = ["-c", str(config), "install", "--check", "--user", pwd.getpwuid(os.geteuid()).pw_name]
    out = CliRunner().invoke(cli, args).output
    assert "is mode 0" not in out, out
    (data / "journal.db-wal").chmod(0o644)
    (data / "archive" / "new").chmod(0o755)
    out = CliRunner().invoke(cli, args).output
    assert f"FIX   journal {data / 'journal.db-wal'} is mode 0644: readable by others" in out, out
    assert f"-> chmod 0600 {data / 'journal.db-wal'}" in out
    assert f"FIX   directory {data / 'archive' / 'new'} is mode 0755: readable by others" in out, out
    assert f"-> chmod 0700 {data / 'archive' / 'new'}" in out

