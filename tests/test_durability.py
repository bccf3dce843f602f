"""Crashes and shutdowns never lose mail nor leave half-written events."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from ingest.event import from_json
from ingest.journal import Journal
from qscan.testing.daemon import running_daemon
from qscan.testing.injector import InjectResult

pytestmark = pytest.mark.integration

MSG = b"From: a@example.com\nSubject: in flight\n\nbody\n"


def send_in_background(h, results: list[InjectResult]) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=lambda: results.append(h.send(MSG)))
    t.start()
    return t


def wait_for_event_count(journal: Path, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Journal(journal) as j:
            if j.count() >= n:
                return
        time.sleep(0.02)
    raise AssertionError("event never appeared")


def test_kill_9_in_flight_temp_fails_and_restart_flows(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as h:
        assert h.send(MSG).code == 0
        h.set_exit(0, sleep=30)  # the scan hangs (via a slow stand-in the client runs: see below)
        h.stop()
        # A message the daemon is scanning when it dies: the client temp-fails, nothing queued.
        h.config.write_text(h.config.read_text() + '[scanners]\nenabled = ["cmdline"]\n[cmdline]\n'
                            'argv = ["/bin/sleep", "30"]\n')
        h.start()
        h.set_exit(0)
        results: list[InjectResult] = []
        t = send_in_background(h, results)
        time.sleep(1.0)  # connected, scanning
        h.stop(signal.SIGKILL)
        t.join(30)
        assert results and results[0].code == 82 and results[0].fd6.startswith("Z")  # temporary
        assert len(h.recorded()) == 1  # only the first message
        with Journal(h.journal) as j:
            assert j.integrity_ok()
            for entry in j.read(0, 1000):
                from_json(entry.body, entry.raw)  # every event decodes whole
        h.config.write_text(h.config.read_text().split("[scanners]")[0])
        h.start()
        assert h.send(MSG).code == 0
        assert h.send(MSG).code == 0


def test_kill_9_while_qmail_queue_runs_delivers_exactly_once(tmp_path: Path) -> None:
    # qscan-queue runs qmail-queue itself: once it holds the final message, the daemon's death
    # changes nothing - the message is queued once and the sender told so (issue #21).
    with running_daemon(tmp_path) as h:
        h.set_exit(0, sleep=1.5)
        results: list[InjectResult] = []
        t = send_in_background(h, results)
        h.wait_running()  # the client has the final message and qmail-queue is running
        h.stop(signal.SIGKILL)
        t.join(30)
        assert results and results[0].code == 0, results
        assert len(h.recorded()) == 1
        with Journal(h.journal) as j:
            assert j.integrity_ok() and j.count() == 1


def test_sigterm_finishes_in_flight_message(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as h:
        h.set_exit(0, sleep=1.5)
        results: list[InjectResult] = []
        t = send_in_background(h, results)
        wait_for_event_count(h.journal, 1)
        assert h.stop(signal.SIGTERM) == 0
        t.join(30)
        assert results[0].code == 0  # accepted: it was finished, not abandoned
        assert len(h.recorded()) == 1
        assert not h.socket.exists()


def test_workers_are_recycled(tmp_path: Path) -> None:
    extra = ""
    with running_daemon(tmp_path, extra=extra, workers=1) as h:
        h.stop()
        h.config.write_text(h.config.read_text().replace("workers = 1", "workers = 1\nmax_messages_per_worker = 2"))
        h.start()
        codes = [h.send(MSG).code for _ in range(7)]
        assert codes == [0] * 7
        assert len(h.recorded()) == 7


def test_kill_worker_mid_message_is_replaced(tmp_path: Path) -> None:
    import os

    with running_daemon(tmp_path, workers=1) as h:
        h.set_exit(0, sleep=1.5)
        results: list[InjectResult] = []
        t = send_in_background(h, results)
        h.wait_running()  # the client runs qmail-queue: the worker is done with it
        assert h.proc is not None
        children = Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
        t.join(30)
        # the client had the message and ran qmail-queue: delivered once, whatever the worker did
        assert results[0].code == 0 and len(h.recorded()) == 1
        h.set_exit(0)
        deadline = time.monotonic() + 10
        while True:  # the master replaces the worker
            res = h.send(MSG)
            if res.code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert res.code == 0


def test_sighup_recycles_workers_without_losing_mail(tmp_path: Path) -> None:
    import os

    with running_daemon(tmp_path, workers=2) as h:
        assert h.proc is not None
        before = set(Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split())
        h.set_exit(0, sleep=1.0)
        results: list[InjectResult] = []
        t = send_in_background(h, results)
        wait_for_event_count(h.journal, 1)
        os.kill(h.proc.pid, signal.SIGHUP)
        t.join(30)
        assert results[0].code == 0  # the in-flight message finished
        h.set_exit(0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = set(Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split())
            if len(after) == 2 and not (after & before):
                break
            time.sleep(0.1)
        assert len(after) == 2 and not (after & before)
        assert h.send(MSG).code == 0


def test_sighup_with_a_broken_rules_file_keeps_the_running_workers(tmp_path: Path) -> None:
    # Fresh workers would die at start (the rules no longer load) and be replaced again and
    # again while mail waits: the master checks first and keeps the workers it has.
    import os

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "r"\naction = "reject"\nfilename = ["*.banned"]\n')
    with running_daemon(tmp_path, workers=2, extra=f'[internal]\nrules = "{rules}"\n') as h:
        assert h.proc is not None
        assert h.send(MSG).code == 0
        time.sleep(1.0)  # both workers have loaded the rules (they do after fork)
        before = set(Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split())
        rules.write_text('[[rule]]\nid = "r"\naction = "explode"\n')
        os.kill(h.proc.pid, signal.SIGHUP)
        time.sleep(1.5)
        after = set(Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split())
        assert after == before
        assert h.send(MSG).code == 0
        log = (h.root / "daemon.log").read_text()
        assert "SIGHUP ignored" in log and "key 'action'" in log
