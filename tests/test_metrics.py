"""Prometheus endpoints of a real daemon and a real consumer, scraped over HTTP."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from qscan.ops.metrics import MAX_SCANNERS, BoundedLabel, DaemonMetrics, error_kind
from qscan.testing.corpus import default_corpus_dir
from qscan.testing.daemon import running_daemon
from scanners.direction import direction

ROOT = Path(__file__).resolve().parent.parent
CLEAN = b"From: a@example.com\nTo: b@example.org\nSubject: hi\n\nhello\n"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port_block(n: int = 5) -> int:
    """A base port with ``n`` free ports after it (the daemon, relay and consumers' offsets)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65530:
            continue
        socks = []
        try:
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free block of ports")


def scrape(port: int) -> Samples:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(port: int, check: Callable[[Samples], bool], timeout: float = 15.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if samples and check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never got there: {json.dumps({str(k): v for k, v in samples.items()})}")
        time.sleep(0.2)


@pytest.mark.integration
def test_daemon_and_consumer_endpoints(tmp_path: Path) -> None:
    port = free_port_block()
    extra = f"[metrics]\nenabled = true\nport = {port}\n"
    # bob@example.org is local here: the last message, injected on the host, stays on it.
    with running_daemon(tmp_path, extra=extra, workers=2, daemon_extra='local_domains = ["example.org"]') as h:
        assert h.send(CLEAN, TCPREMOTEIP="192.0.2.7").code == 0
        invoice = (default_corpus_dir() / "20-invoice-exe.eml").read_bytes()
        assert h.send(invoice, TCPREMOTEIP="192.0.2.7").code == 0  # quarantined (policy)
        h.set_exit(71)
        assert h.send(CLEAN, RELAYCLIENT="").code == 71  # outbound; qmail-queue temp-fails it
        h.set_exit(0)
        assert h.send(CLEAN).code == 0  # local injection

        # the workers count a message when they answer it; the master counts qmail-queue's exit
        # when it reads the client's report, which may come a moment after the client exited
        # (and journals the compensating message.queue_failed); a worker is idle after answering
        m = wait_for(port, lambda m: value(m, "qscan_message_processing_seconds_count") == 4
                     and value(m, "qscan_qmail_queue_exits_total", code="0") == 2
                     and value(m, "qscan_qmail_queue_exits_total", code="71") == 1
                     and value(m, "qscan_journal_head") == 5
                     and value(m, "qscan_workers", state="idle") == 2)
        msgs = "qscan_messages_total"
        assert value(m, msgs, action="deliver", category="clean", direction="inbound") == 1
        assert value(m, msgs, action="quarantine", category="policy", direction="inbound") == 1
        assert value(m, msgs, action="deliver", category="clean", direction="outbound") == 1
        assert value(m, msgs, action="deliver", category="clean", direction="local") == 1
        assert value(m, "qscan_qmail_queue_exits_total", code="0") == 2
        assert value(m, "qscan_qmail_queue_exits_total", code="71") == 1
        # the deliveries were handed to qscan-queue, which answered with qmail-queue's code
        assert value(m, "qscan_replies_total", code="handoff") == 3
        assert value(m, "qscan_replies_total", code="0") == 1  # the quarantined one
        # every scanner is timed on every message, findings or not
        assert value(m, "qscan_scan_seconds_count", scanner="internal") == 4
        assert value(m, "qscan_scan_seconds_count", scanner="size") == 4
        # 4 events by the workers; the compensating message.queue_failed is the master's
        assert value(m, "qscan_journal_append_seconds_count") == 4
        assert value(m, "qscan_journal_head") == 5
        assert value(m, "qscan_workers", state="idle") == 2
        assert value(m, "qscan_messages_in_flight") == 0
        assert value(m, "qscan_metrics_samples_dropped_total") == 0
        # no label holds an address, a subject or an IP
        names = {n for (n, labels) in m for _, v in labels if "@" in v or "192.0.2" in v}
        assert not names

        consumer = subprocess.Popen(
            [sys.executable, "-m", "qscan", "-c", str(h.config), "consume", "archive"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "consumer.log", "ab"))
        try:
            c = wait_for(port + 2, lambda c: value(c, "qscan_consumer_position", consumer="archive") == 5)
            assert value(c, "qscan_consumer_events_total", consumer="archive") == 5
            assert value(c, "qscan_consumer_lag_events", consumer="archive") == 0
            assert (value(c, "qscan_consumer_batch_seconds_count", consumer="archive") or 0) >= 1
            d = wait_for(port, lambda d: value(d, "qscan_reader_position", reader="archive") == 5)
            assert value(d, "qscan_reader_lag_events", reader="archive") == 0
            assert value(d, "qscan_reader_lag_seconds", reader="archive") == 0
        finally:
            consumer.terminate()
            consumer.wait(30)


@pytest.mark.integration
def test_busy_port_does_not_stop_the_daemon(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running_daemon(tmp_path, extra=f"[metrics]\nenabled = true\nport = {port}\n") as h:
            assert h.send(CLEAN).code == 0
        assert "running without /metrics" in (tmp_path / "daemon.log").read_text()


def test_worker_samples_are_dropped_not_waited_on(tmp_path: Path) -> None:
    """A master that falls behind must never block a worker: samples are dropped and counted."""
    from ingest.processor import Outcome
    from qscan.config import parse_config
    from qscan.wiring.pipeline import make_processor

    cfg = parse_config(f'data_dir = "{tmp_path}"\n[summary_log]\ntarget = "none"\n', tmp_path / "q.toml")
    metrics = DaemonMetrics(cfg)  # its reader thread is not started: nobody drains the socket
    processor = make_processor(cfg)
    t0 = time.perf_counter()
    sent = 0
    while metrics._unsent == 0:
        metrics.observe(processor, Outcome(91, None))  # envelope error: a reply code only
        sent += 1
        assert sent < 1_000_000
    for _ in range(4):
        metrics.observe(processor, Outcome(91, None))
    assert metrics._unsent == 5
    assert time.perf_counter() - t0 < 30  # never waited for the full socket
    metrics._recv.setblocking(False)
    applied = 0
    while True:
        try:
            metrics.apply(json.loads(metrics._recv.recv(65536)))
        except BlockingIOError:
            break
        applied += 1
    metrics.observe(processor, Outcome(91, None))  # room again: this one carries the count
    metrics.apply(json.loads(metrics._recv.recv(65536)))
    assert metrics.dropped._value.get() == 5
    assert metrics.replies.labels("91")._value.get() == applied + 1
    processor.journal.close()


@given(st.lists(st.text(max_size=40), max_size=200))
def test_scanner_labels_stay_bounded(names: list[str]) -> None:
    label = BoundedLabel()
    out = {label(n) for n in names}
    assert len(out - {"other"}) <= MAX_SCANNERS
    for v in out:
        assert v == "other" or re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,31}", v)


def test_direction_and_error_kind() -> None:
    assert direction(True, "192.0.2.1") == "outbound"
    assert direction(False, "192.0.2.1") == "inbound"
    assert direction(False, None) == "local"
    assert error_kind("Timeout: timed out waiting for the reply") == "timeout"
    assert error_kind("ConnectionRefusedError: [Errno 111]") == "error"


def test_notification_outbox_by_state(migrated_url: str, tmp_path: Path) -> None:
    """The notify consumer's endpoint counts outbox rows by state, on SQLite and PostgreSQL."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from compliance.db import make_engine
    from compliance.models import Notification
    from qscan.config import parse_config
    from qscan.ops.metrics import ConsumerMetrics

    now = datetime.now(UTC)
    row = {"event_id": "e", "kind": "virus", "audience": "admin", "language": "en",
           "envelope_sender": "", "message_id": "<n@x>", "message": b"", "attempts": 1,
           "created_at": now, "next_attempt_at": now}
    engine = make_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(insert(Notification), [
            {**row, "recipient": f"admin{i}@example.com", "state": state}
            for i, state in enumerate(["sent", "sent", "sent", "failed", "pending"])])
    engine.dispose()
    cfg = parse_config(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{migrated_url}"\n', tmp_path / "q.toml")
    metrics = ConsumerMetrics(cfg, "notify", source="kafka")
    get = metrics.registry.get_sample_value
    assert get("qscan_notifications", {"state": "sent"}) == 3
    assert get("qscan_notifications", {"state": "failed"}) == 1
    assert get("qscan_notifications", {"state": "pending"}) == 1
    assert get("qscan_consumer_lag_events", {"consumer": "notify"}) is None  # Kafka: no journal lag


def test_notification_sends_and_failures_are_counted(migrated_url: str, tmp_path: Path) -> None:
    """The notify consumer's delivery path counts sends and failures by kind/audience/outcome;
    scraped over HTTP, on SQLite and PostgreSQL, with a real qmail-inject stand-in process."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from compliance.db import make_engine
    from compliance.models import Notification
    from qscan.config import parse_config
    from qscan.ops.metrics import consumer_metrics
    from qscan.wiring.notify import make_notify_sink

    inject = tmp_path / "qmail-inject"  # the last argument is the recipient
    inject.write_text('#!/bin/sh\ncat >/dev/null\nfor a; do r="$a"; done\ncase "$r" in\n'
                      '  ok*) exit 0;;\n  bad*) echo "no such user" >&2; exit 100;;\n'
                      '  *) echo "queue busy" >&2; exit 111;;\nesac\n')
    inject.chmod(0o755)
    now = datetime.now(UTC)
    row = {"event_id": "e", "language": "en", "envelope_sender": "", "message_id": "<n@x>",
           "message": b"Subject: virus found\r\n\r\nbody\r\n", "attempts": 0, "state": "pending",
           "created_at": now, "next_attempt_at": now}
    engine = make_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(insert(Notification), [
            {**row, "recipient": "ok1@example.com", "kind": "virus", "audience": "admin"},
            {**row, "recipient": "ok2@example.com", "kind": "virus", "audience": "admin"},
            {**row, "recipient": "ok3@example.com", "kind": "policy", "audience": "sender"},
            {**row, "recipient": "bad@example.com", "kind": "virus", "audience": "recipient"},
            {**row, "recipient": "later@example.com", "kind": "spam", "audience": "admin"},
        ])
    engine.dispose()
    port = free_port_block()
    cfg = parse_config(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{migrated_url}"\n'
                       f'[metrics]\nenabled = true\nport = {port}\n'
                       f'[notify]\ntransport = "qmail-inject"\nqmail_inject = "{inject}"\n', tmp_path / "q.toml")
    metrics = consumer_metrics(cfg, "notify")
    assert metrics is not None
    sink = metrics.wrap(make_notify_sink(cfg, background=False))
    try:
        result = sink.sink.deliver()  # type: ignore[attr-defined]
        assert (result.sent, result.failed, result.deferred) == (3, 1, 1), result
        first = scrape(port + 4)
        engine_after_first = metrics._engine
        m = scrape(port + 4)
    finally:
        sink.close()
    assert metrics._engine is engine_after_first is not None  # one engine for every scrape
    assert value(m, "qscan_notifications_sent_total", kind="virus", audience="admin") == 2
    assert value(m, "qscan_notifications_sent_total", kind="policy", audience="sender") == 1
    assert value(m, "qscan_notification_failures_total", kind="virus", audience="recipient",
                 outcome="failed") == 1
    assert value(m, "qscan_notification_failures_total", kind="spam", audience="admin", outcome="deferred") == 1
    assert value(m, "qscan_notifications", state="sent") == 3 == value(first, "qscan_notifications", state="sent")
    assert value(m, "qscan_notifications", state="pending") == 1
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 4}/metrics", timeout=10).read().decode()
    assert "example.com" not in text  # never an address


def test_relay_endpoint_reports_lag(tmp_path: Path) -> None:
    """The relay's /metrics, scraped over HTTP: lag from the journal, counters from the Relay."""
    from ingest.journal import Journal
    from ingest.kafka_log import RELAY_NAME, Relay
    from qscan.config import parse_config
    from qscan.ops.metrics import relay_metrics
    from qscan.wiring.pipeline import kafka_settings

    port = free_port_block()
    cfg = parse_config(f'data_dir = "{tmp_path}"\n[metrics]\nenabled = true\nport = {port}\n'
                       '[log.kafka]\nbootstrap_servers = ["127.0.0.1:1"]\n', tmp_path / "q.toml")
    with Journal(cfg.journal_path) as j:
        for i in range(4):
            j.append(f"id-{i}", "message.scanned", b"{}")
        j.set_position(RELAY_NAME, 1)
        relay = Relay(j, kafka_settings(cfg), "mx.test.example")  # no broker contact until it sends
        relay.sent, relay.failures = 7, 2
        assert relay_metrics(cfg, relay) is not None
        m = scrape(port + 1)
        assert value(m, "qscan_relay_lag_events") == 3
        assert (value(m, "qscan_relay_lag_seconds") or 0) >= 0
        assert value(m, "qscan_relay_events_total") == 7
        assert value(m, "qscan_relay_failures_total") == 2
        j.set_position(RELAY_NAME, 4)
        m = scrape(port + 1)
        assert value(m, "qscan_relay_lag_events") == 0 and value(m, "qscan_relay_lag_seconds") == 0


def test_metered_sink_keeps_what_the_kafka_source_asks_of_the_sink() -> None:
    """KafkaSource keeps the raw message for sinks that read headers from the topic (notify):
    wrapping a sink for metrics must not hide that."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from qscan.ops.metrics import MeteredSink

    class Notifyish:
        name = "notify"
        needs_raw = False
        raw_from_topic = True

        def position(self) -> int:
            return 0

    reg = CollectorRegistry()
    wrapped = MeteredSink(Notifyish(), Counter("e", "e", ["consumer"], registry=reg),  # type: ignore[arg-type]
                          Histogram("b", "b", ["consumer"], registry=reg),
                          Gauge("p", "p", ["consumer"], registry=reg))
    assert wrapped.raw_from_topic is True and wrapped.needs_raw is False
