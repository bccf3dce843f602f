"""Replay: resetting a consumer to 0 and consuming again gives the same files and rows."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qscan.testing.corpus import load_corpus
from qscan.testing.daemon import Harness, running_daemon

pytestmark = pytest.mark.integration


def qscan(h: Harness, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "qscan", "-c", str(h.config), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def maildir_snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "/new/" in f"/{p.relative_to(root)}"
    }


def sql_snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(db)
    try:
        out = {}
        for table in ("messages", "recipients", "findings"):
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})") if r[1] != "id"]
            out[table] = sorted(con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall(), key=repr)
        return out
    finally:
        con.close()


def test_replay_gives_identical_maildirs_and_rows(tmp_path: Path) -> None:
    corpus = [m for m in load_corpus() if len(m.data) < 1_000_000]
    with running_daemon(tmp_path) as h:
        h.set_exit(71)  # one message that qmail-queue refuses: a compensating event follows
        assert h.send(corpus[0].data, sender=corpus[0].sender.encode(),
                      recipients=[r.encode() for r in corpus[0].recipients]).code == 71
        h.set_exit(0)
        for m in corpus:
            res = h.send(m.data, envelope=m.envelope, **m.env)
            assert res.code == 0, (m.name, res)
        qscan(h, "db", "upgrade")
        qscan(h, "consume", "archive", "--once")
        qscan(h, "consume", "summaries", "--once")
        files = maildir_snapshot(tmp_path / "archive")
        quarantined = maildir_snapshot(tmp_path / "quarantine")  # the internal scanner's invoice.pdf.exe
        rows = sql_snapshot(tmp_path / "qscan.db")
        assert len(files) + len(quarantined) == len(corpus)  # the refused message was not archived
        assert list(quarantined) and all(k.startswith("policy/new/") for k in quarantined)
        assert len(rows["messages"]) == len(corpus) + 1
        failed = [r for r in rows["messages"] if "failed" in r]
        assert len(failed) == 1

        qscan(h, "consume", "archive", "--from-start", "--once")
        qscan(h, "consume", "summaries", "--from-start", "--once")
        assert maildir_snapshot(tmp_path / "archive") == files
        assert maildir_snapshot(tmp_path / "quarantine") == quarantined
        assert sql_snapshot(tmp_path / "qscan.db") == rows

        # and a reset through the position command behaves the same way
        qscan(h, "consumer", "position", "summaries", "--set", "0")
        qscan(h, "consume", "summaries", "--once")
        assert sql_snapshot(tmp_path / "qscan.db") == rows
        status = qscan(h, "journal", "status", "--json")
        assert '"lag": 0' in status
