"""Never queue what the client gave up on; never leave a "deliver" event without its fate.

A slow scan that outlasts qscan-queue's QSCAN_TIMEOUT makes the client temp-fail, so the
sender retries: if the daemon queued the message anyway it would be delivered twice. These
tests run a real daemon with a slow scanner (the cmdline scanner running ``sleep``) and the
stand-in qmail-queue, a real qscan-queue against a server that never answers, and the
processor in-process with its hand-off broken in the ways the OS can break it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest import exitcodes as ec
from ingest.daemon import DaemonOptions, bind_socket, client_connected
from ingest.envelope import build_envelope
from ingest.event import MessageScanned, QueueFailed, from_json
from ingest.journal import Journal
from ingest.processor import (
    CLIENT_GONE_TEXT,
    DEADLINE_TEXT,
    HANDOFF_FAIL_TEXT,
    NOT_RUN,
    Processor,
    ProcessorOptions,
    ProcessorSettings,
    make_request,
)
from qscan.config import parse_config
from qscan.testing.daemon import CLIENT, running_daemon
from qscan.testing.injector import inject
from qscan.testing.standin import recorded, write_standin
from qscan.wiring.pipeline import processor_options
from scanners.base import ScanContext
from scanners.result import Disposition, ScanResult, Verdict

MSG = b"From: a@example.com\nSubject: slow\n\nbody\n"
ENV = build_envelope(b"a@example.com", [b"b@example.org"])
SLEEP = shutil.which("sleep") or "/bin/sleep"


def events(journal_path: Path) -> list[object]:
    j = Journal(journal_path)
    try:
        return [from_json(x.body, x.raw) for x in j.read(0, 1000)]
    finally:
        j.close()


def slow_scanner(seconds: float) -> str:
    return (f'[scanners]\nenabled = ["cmdline"]\n[cmdline]\nname = "slowav"\n'
            f'argv = ["{SLEEP}", "{seconds}"]\ntimeout = 30\n')


def wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


# -- real daemon --------------------------------------------------------------------------
@pytest.mark.integration
def test_client_deadline_travels_to_the_daemon(tmp_path: Path) -> None:
    # The daemon is configured for 1200 s but this client waits 1 s (its QSCAN_TIMEOUT): it sends
    # its deadline, so the daemon never queues after the client said 451 (field report: "451
    # but queued" when QSCAN_TIMEOUT was lower than daemon.client_timeout).
    with running_daemon(tmp_path, extra=slow_scanner(3), workers=1) as h:
        t0 = time.monotonic()
        res = h.send(MSG, QSCAN_TIMEOUT="1")
        took = time.monotonic() - t0
        assert res.code == ec.CUSTOM_ERROR and res.fd6.startswith("Z"), res
        assert took < 2.8, took  # gave up at its deadline, not when the scan ended
        wait_for(lambda: any(isinstance(e, MessageScanned) for e in events(h.journal)))
        time.sleep(0.3)
        assert h.recorded() == []  # the stand-in qmail-queue never saw it: no double delivery
        [scanned] = [e for e in events(h.journal) if isinstance(e, MessageScanned)]
        assert (scanned.action, scanned.reason) == ("tempfail", "deadline")


@pytest.mark.integration
def test_client_gone_before_qmail_queue_means_not_queued(tmp_path: Path) -> None:
    # A client that does not say how long it waits (an older one) and leaves early: only the
    # liveness peek right before qmail-queue can notice it gave up.
    from ingest import frames

    with running_daemon(tmp_path, extra=slow_scanner(2), workers=1) as h:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(h.socket))
            s.sendall(frames.encode(frames.HELLO, frames.PROTOCOL) + frames.encode(frames.MESSAGE, MSG)
                      + frames.encode(frames.ENVELOPE, ENV) + frames.encode(frames.END))
            time.sleep(0.5)
        wait_for(lambda: any(isinstance(e, QueueFailed) for e in events(h.journal)))
        time.sleep(0.3)
        assert h.recorded() == []
        [scanned] = [e for e in events(h.journal) if isinstance(e, MessageScanned)]
        [failed] = [e for e in events(h.journal) if isinstance(e, QueueFailed)]
        assert failed.ref_event_id == scanned.event_id
        assert (failed.exit_code, failed.reply) == (NOT_RUN, CLIENT_GONE_TEXT)


@pytest.mark.integration
def test_scan_past_the_deadline_is_temp_failed_not_queued(tmp_path: Path) -> None:
    # client_timeout 3, margin 1: a 2.5 s scan leaves less than the margin, so the daemon answers
    # temp-fail (the client, still waiting, gets it) and records why, without queueing.
    with running_daemon(tmp_path, extra=slow_scanner(2.5), workers=1,
                        daemon_extra="client_timeout = 3\ndeadline_margin = 1") as h:
        res = h.send(MSG, QSCAN_TIMEOUT="3")
        assert (res.code, res.fd6) == (ec.CUSTOM_ERROR, DEADLINE_TEXT)
        assert h.recorded() == []
        [ev] = events(h.journal)
        assert isinstance(ev, MessageScanned)
        assert (ev.action, ev.reason, ev.reply) == ("tempfail", "deadline", DEADLINE_TEXT)
        summary = (tmp_path / "summary.log").read_text()
        assert "tempfail" in summary and "deadline" in summary


@pytest.mark.integration
def test_fast_message_within_deadline_is_queued(tmp_path: Path) -> None:
    with running_daemon(tmp_path, extra=slow_scanner(0.1), workers=1,
                        daemon_extra="client_timeout = 5\ndeadline_margin = 1") as h:
        res = h.send(MSG, envelope=ENV, QSCAN_TIMEOUT="5")
        assert res.code == 0, res
        [(msg, env)] = h.recorded()
        assert env == ENV and msg.endswith(MSG)


@pytest.mark.integration
def test_daemon_socket_has_the_configured_mode(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as h:
        st = os.stat(h.socket)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o666  # who may submit is decided by peer uid


def test_bind_socket_applies_a_configured_mode(tmp_path: Path) -> None:
    d = Path(tempfile.mkdtemp(prefix="qs"))
    try:
        sock = bind_socket(DaemonOptions(socket=d / "s.sock", socket_mode=0o640))
        try:
            assert stat.S_IMODE(os.stat(d / "s.sock").st_mode) == 0o640
        finally:
            sock.close()
    finally:
        shutil.rmtree(d)


# -- real qscan-queue against a server that accepts and never answers ------------------------
@pytest.fixture
def hanging_server() -> Iterator[tuple[Path, threading.Event]]:
    """Accepts, reads the request, then trickles one byte of an answer that never completes
    every 0.3 s: a per-call timeout would wait forever, only a real deadline ends it."""
    d = Path(tempfile.mkdtemp(prefix="qs"))
    path = d / "hang.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(0.3)
            partial = b"R\x00\x00\x04\x00" + b"7" * 1024  # declares 1 KiB, sent a byte at a time
            i = 0
            while not stop.is_set():
                try:
                    conn.recv(65536)
                except TimeoutError:
                    pass
                except OSError:
                    return
                if i < len(partial):
                    try:
                        conn.send(partial[i:i + 1])
                    except OSError:
                        return
                    i += 1

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path, stop
    finally:
        stop.set()
        srv.close()
        t.join(5)
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.integration
def test_client_timeout_is_one_deadline_over_the_whole_wait(
    hanging_server: tuple[Path, threading.Event],
) -> None:
    path, _ = hanging_server
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QSCAN_SOCKET": str(path),
           "QSCAN_TIMEOUT": "1.5"}
    t0 = time.monotonic()
    res = inject(CLIENT, MSG, ENV, env, fd6=True, timeout=30)
    took = time.monotonic() - t0
    assert res.code == ec.CUSTOM_ERROR and res.fd6.startswith("Z"), res
    assert 1.4 < took < 4.0, took


# -- the processor in-process: every failure after the journal append is compensated ---------
@pytest.fixture
def proc(tmp_path: Path) -> Iterator[tuple[Processor, Journal, Path]]:
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    yield Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, []), \
        journal, tmp_path / "rec"
    journal.close()


def journal_events(journal: Journal) -> list[object]:
    return [from_json(x.body, x.raw) for x in journal.read(0, 100)]


def assert_compensated(journal: Journal, code: int, reply_start: str) -> QueueFailed:
    [scanned, failed] = journal_events(journal)
    assert isinstance(scanned, MessageScanned) and scanned.action == "deliver"
    assert isinstance(failed, QueueFailed) and failed.ref_event_id == scanned.event_id
    assert failed.exit_code == code
    assert failed.reply is not None and failed.reply.startswith(reply_start), failed.reply
    return failed


@pytest.mark.parametrize("broken", ["memfd_create", "pipe"])
def test_os_failure_before_spawn_writes_queue_failed(
    proc: tuple[Processor, Journal, Path], monkeypatch: pytest.MonkeyPatch, broken: str,
) -> None:
    p, journal, rec = proc
    opened = len(os.listdir("/proc/self/fd"))

    def fail(*a: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, broken, fail)
    out = p.process(make_request(MSG, ENV))
    monkeypatch.undo()
    assert (out.code, out.text) == (ec.CUSTOM_ERROR, HANDOFF_FAIL_TEXT)
    failed = assert_compensated(journal, NOT_RUN, "Zqscan: cannot run qmail-queue: OSError")
    assert "Too many open files" in (failed.reply or "")
    assert recorded(rec) == []
    assert len(os.listdir("/proc/self/fd")) == opened  # no memfd or pipe leaked


def test_unexpected_error_in_spawn_writes_queue_failed(
    proc: tuple[Processor, Journal, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, journal, _ = proc

    def boom(*a: object, **k: object) -> int:
        raise ValueError("embedded null byte")

    monkeypatch.setattr(os, "posix_spawn", boom)
    out = p.process(make_request(MSG, ENV))
    assert (out.code, out.text) == (ec.CUSTOM_ERROR, HANDOFF_FAIL_TEXT)
    assert_compensated(journal, NOT_RUN, "Zqscan: cannot run qmail-queue: ValueError")


def test_qmail_queue_not_executable_writes_queue_failed(proc: tuple[Processor, Journal, Path]) -> None:
    p, journal, _ = proc
    os.chmod(p.opt.settings.qmail_queue, 0o644)
    out = p.process(make_request(MSG, ENV))
    assert out.code == ec.CUSTOM_ERROR and out.text and out.text.startswith("Zqscan: cannot run qmail-queue")
    assert_compensated(journal, ec.CUSTOM_ERROR, "Zqscan: cannot run qmail-queue")


def test_client_gone_is_checked_once_and_compensated(proc: tuple[Processor, Journal, Path]) -> None:
    p, journal, rec = proc
    calls: list[int] = []

    def gone() -> bool:
        calls.append(1)
        return False

    req = make_request(MSG, ENV)
    req.client_alive = gone
    out = p.process(req)
    assert (out.code, out.text) == (ec.CUSTOM_ERROR, CLIENT_GONE_TEXT) and calls == [1]
    assert_compensated(journal, NOT_RUN, CLIENT_GONE_TEXT)
    assert recorded(rec) == []


@pytest.mark.parametrize("action", ["deliver", "quarantine"])
def test_past_deadline_records_tempfail_and_queues_nothing(
    proc: tuple[Processor, Journal, Path], action: str,
) -> None:
    p, journal, rec = proc
    if action == "quarantine":  # an accepted quarantine would be kept twice on the retry too
        p.scanners = [_Quarantiner()]
    req = make_request(MSG, ENV)
    req.client_deadline = time.monotonic() + 10  # 10 s left, margin 30: too late
    out = p.process(req)
    assert (out.code, out.text) == (ec.CUSTOM_ERROR, DEADLINE_TEXT)
    [ev] = journal_events(journal)
    assert isinstance(ev, MessageScanned)
    assert (ev.action, ev.reason) == ("tempfail", "deadline")
    assert recorded(rec) == []


def test_within_deadline_queues_and_cuts_qmail_queue_to_what_is_left(
    proc: tuple[Processor, Journal, Path],
) -> None:
    p, journal, rec = proc
    (rec / "sleep").write_text("5")  # the stand-in would outlive the client
    req = make_request(MSG, ENV)
    p.opt = dataclasses.replace(p.opt, settings=dataclasses.replace(p.opt.settings, deadline_margin=0.5))
    req.client_deadline = time.monotonic() + 2.5  # margin passes; 1.5 s (minus slack) for qmail-queue
    t0 = time.monotonic()
    out = p.process(req)
    assert time.monotonic() - t0 < 3.5
    assert out.code == ec.TIMEOUT  # killed before the client's deadline: temp-fail, recorded
    [scanned, failed] = journal_events(journal)
    assert isinstance(scanned, MessageScanned) and scanned.action == "deliver"
    assert isinstance(failed, QueueFailed) and failed.exit_code == ec.TIMEOUT
    assert recorded(rec) == []


class _Quarantiner:
    name = "q"
    version = "1"

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        return [ScanResult(scanner="q", verdict=Verdict.POLICY, name="rule",
                           disposition=Disposition.QUARANTINE)]


def test_client_connected_peeks_without_waiting() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        a.setblocking(False)
        t0 = time.perf_counter()
        assert client_connected(a) is True
        assert time.perf_counter() - t0 < 0.05
        b.sendall(b"x")
        assert client_connected(a) is True and a.recv(1) == b"x"  # peeked, not consumed
        b.close()
        assert client_connected(a) is False
    finally:
        a.close()


# -- unparseable MIME follows internal.error_action ------------------------------------------
@pytest.mark.parametrize(
    ("action", "code", "event_action", "queued"),
    [("quarantine", 0, "quarantine", 0), ("reject", 82, "reject", 0), ("tempfail", 82, "tempfail", 0),
     ("deliver", 0, "deliver", 1), ("drop", 0, "drop", 0)],
)
def test_unparseable_mime_uses_the_configured_error_action(
    proc: tuple[Processor, Journal, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    action: str, code: int, event_action: str, queued: int,
) -> None:
    cfg = parse_config(f'data_dir = "{tmp_path}"\n[internal]\nerror_action = "{action}"\n',
                       tmp_path / "qscan.toml")
    p, journal, rec = proc
    p.opt = dataclasses.replace(p.opt, unparseable_action=processor_options(cfg).unparseable_action)

    def unparseable(raw: bytes) -> object:
        raise LookupError("unknown encoding: x-broken")

    monkeypatch.setattr("ingest.processor.parse", unparseable)
    out = p.process(make_request(MSG, ENV))
    assert out.code == code
    if code == 82:
        assert out.text and out.text[0] == ("D" if action == "reject" else "Z")
    [ev] = journal_events(journal)
    assert isinstance(ev, MessageScanned)
    assert (ev.category, ev.action) == ("malformed", event_action)
    assert ev.findings[0].name == "unparseable" and "x-broken" in ev.findings[0].detail
    assert len(recorded(rec)) == queued
