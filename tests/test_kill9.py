"""kill -9 under load: 600 messages at concurrency 4 through the installed (native) qscan-queue
into the stand-in qmail-queue, under ``qscan run`` (daemon + archive and summaries consumers),
while a worker is killed every 0.5 s and the daemon's master once (the supervisor restarts it).

Every message must be delivered exactly once - counted per Message-ID at the stand-in - after
being told to temp-fail any number of times first; every delivery must be journaled once as
accepted (a message.scanned "deliver" that no message.queue_failed takes back), and the archive,
the SQL summaries and the journal must agree (``qscan verify`` and the counts below).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest.envelope import build_envelope
from ingest.event import MessageScanned, QueueFailed, from_json
from ingest.journal import Journal
from qscan.testing.clients import native_client
from qscan.testing.injector import InjectResult, inject
from qscan.testing.standin import recorded, write_standin

pytestmark = pytest.mark.integration

MESSAGES = 600
CONCURRENCY = 4
KILL_EVERY = 0.5  # seconds between worker kills
MASTER_KILL_AT = 6  # the master is killed instead of the 6th worker
MSGID = re.compile(rb"^Message-ID: <(kill-\d+)@test>", re.M | re.I)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _message(i: int) -> bytes:
    body = "".join(f"line {n} of message {i}\n" for n in range(i % 40))
    return (f"From: s{i}@example.com\nTo: r@example.org\nSubject: kill test {i}\n"
            f"Message-ID: <kill-{i}@test>\n\nhello {i}\n{body}").encode()


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock_dir = Path(tempfile.mkdtemp(prefix="qk"))
        self.socket = self.sock_dir / "q.sock"
        self.record = root / "queued"
        self.standin = write_standin(root / "bin" / "qmail-queue", self.record)
        self.config = root / "qscan.toml"
        self.config.write_text(
            f'data_dir = "{root}"\n[daemon]\nsocket = "{self.socket}"\nqmail_queue = "{self.standin}"\n'
            f'workers = 4\nhostname = "mx.test.example"\nsmtp_users = ["{os.getuid()}"]\ntimeout = 20\n'
            '[consumers]\nenabled = ["archive", "summaries"]\n'
        )
        self.log = open(root / "qscan-run.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "qscan", "-c", str(self.config), "run"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            assert self.proc.poll() is None, (root / "qscan-run.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)

    def master(self) -> int | None:
        """The daemon's master: the supervisor's child running ``qscan ... daemon``."""
        for pid in _children(self.proc.pid):
            if _cmdline(pid)[-2:] == ["daemon", ""] or _cmdline(pid)[-1:] == ["daemon"]:
                return pid
        return None

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "QSCAN_SOCKET": str(self.socket), "QSCAN_TIMEOUT": "30",
                "QSCAN_QMAIL_QUEUE": str(self.standin)}

    def qscan(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "qscan", "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_kill_9_under_load_delivers_every_message_exactly_once(site: Site) -> None:
    client = native_client()
    envelope = build_envelope(b"sender@example.com", [b"r@example.org"])
    done = threading.Event()
    kills = {"workers": 0, "master": 0}
    temp_fails: Counter[int] = Counter()

    def killer() -> None:
        rng = random.Random(21)
        n = 0
        while not done.wait(KILL_EVERY):
            master = site.master()
            if master is None:
                continue  # the supervisor is starting a new one
            n += 1
            if n == MASTER_KILL_AT:
                os.kill(master, signal.SIGKILL)
                kills["master"] += 1
                continue
            workers = _children(master)
            if workers:
                try:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills["workers"] += 1
                except ProcessLookupError:
                    pass

    def send(i: int) -> InjectResult:
        msg = _message(i)
        deadline = time.monotonic() + 240
        while True:
            res = inject(client, msg, envelope, site.env(), timeout=90)
            if res.code == 0:
                return res
            # only ever temporary: the sender's MTA retries later
            assert res.code == 71 or (res.code == 82 and res.fd6.startswith("Z")), (i, res)
            temp_fails[i] += 1
            assert time.monotonic() < deadline, (i, res)
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(send, range(MESSAGES)))
    finally:
        done.set()
        t.join()
    elapsed = time.monotonic() - started
    assert kills["master"] == 1 and kills["workers"] >= min(10, int(elapsed / KILL_EVERY) - 2), kills

    # -- at the stand-in: each message exactly once ---------------------------------------
    delivered = Counter(m.group(1).decode() for msg, _env in recorded(site.record)
                        if (m := MSGID.search(msg)))
    assert len(recorded(site.record)) == MESSAGES
    assert delivered == Counter({f"kill-{i}": 1 for i in range(MESSAGES)}), \
        {k: v for k, v in delivered.items() if v != 1}

    # -- the journal: every delivery accepted exactly once, every other event taken back ------
    time.sleep(1.0)  # the master records any delivery a killed worker never handed over
    with Journal(site.root / "journal.db") as j:
        events = [from_json(e.body, e.raw) for e in j.read(0, 1_000_000)]
    scanned = [e for e in events if isinstance(e, MessageScanned)]
    failed = {e.ref_event_id for e in events if isinstance(e, QueueFailed)}
    accepted = Counter(str(e.headers.message_id).strip("<>").split("@")[0] for e in scanned
                       if e.action == "deliver" and e.event_id not in failed)
    # Never a delivered message without its accepted event. A second accepted event for one
    # message is possible only for a worker killed in the microseconds between noting that
    # the hand-off is under way and the send itself (docs/protocol.md): at most a rare one.
    assert set(accepted) == {f"kill-{i}" for i in range(MESSAGES)}, \
        ({f"kill-{i}" for i in range(MESSAGES)} - set(accepted), len(scanned), len(failed))
    extra = {k: v for k, v in accepted.items() if v != 1}
    assert sum(extra.values()) - len(extra) <= 1, extra

    # -- archive = SQL = journal, once the consumers have caught up ---------------------------
    deadline = time.monotonic() + 120
    with Journal(site.root / "journal.db") as j:
        while not all(j.positions().get(n, 0) >= j.head() for n in ("archive", "summaries")):
            assert time.monotonic() < deadline, "the consumers did not catch up"
            time.sleep(0.2)
    archived = Counter(m.group(1).decode() for p in (site.root / "archive").rglob("*")
                       if p.is_file() and p.parent.name in ("new", "cur") and (m := MSGID.search(p.read_bytes())))
    assert archived == accepted
    with sqlite3.connect(site.root / "qscan.db") as db:
        rows = dict(db.execute("SELECT event_id, queue_status FROM messages").fetchall())
    assert set(rows) == {e.event_id for e in scanned}
    assert {k for k, v in rows.items() if v == "failed"} == failed & set(rows)
    verify = site.qscan("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(f"\n{MESSAGES} messages in {elapsed:.1f} s, {kills['workers']} workers and the master killed, "
          f"{sum(temp_fails.values())} temporary failures (retried), {len(scanned)} events, "
          f"{len(failed)} taken back")
