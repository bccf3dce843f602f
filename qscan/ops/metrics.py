"""Prometheus endpoints: the daemon, the relay and each consumer serve ``/metrics`` on loopback.

Why workers report to the master instead of prometheus_client's multiprocess mode:
workers are recycled every ``max_messages_per_worker`` messages, and multiprocess
mode leaves one mmapped file per dead worker behind (thousands a day on a busy
host). Here a worker sends one small datagram per message (a JSON list, ~150
bytes, non-blocking; dropped and counted if the master ever falls behind) on a
socketpair the master made before forking, after the client already has its
answer. A thread in the master folds them into ordinary metrics and
prometheus_client's HTTP server exposes them. Gauges that describe state
(journal size, reader lag, busy workers, the notification outbox) are computed
when scraped, so they cost nothing between scrapes.

Names and labels are listed in docs/operations.md. Cardinality is bounded: labels
hold actions, categories, directions, scanner names (at most ``MAX_SCANNERS``,
then ``other``), exit codes (0-255) and reader names; never an address, a
subject or an IP.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.journal import Journal
from ingest.log import LogRecord, Sink
from qscan.config import CONSUMER_NAMES
from scanners.base import ScanContext, Scanner
from scanners.result import ScanResult

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ingest.daemon import Daemon
    from ingest.kafka_log import Relay
    from ingest.processor import Outcome, Processor
    from qscan.config import Config

log = logging.getLogger(__name__)

# Port offsets from metrics.port, one per kind of process (documented in docs/operations.md):
# the daemon, the relay, then each consumer in the order of CONSUMER_NAMES (archive +2 ...).
PORT_OFFSETS = {kind: offset for offset, kind in enumerate(("daemon", "relay", *CONSUMER_NAMES))}
MAX_SCANNERS = 32
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FAST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def port_for(cfg: Config, kind: str) -> int:
    return cfg.metrics.port + PORT_OFFSETS[kind]


def serve(cfg: Config, kind: str, registry: CollectorRegistry, port: int | None = None) -> int | None:
    """Start the HTTP endpoint; returns the port, or None (logged) when it cannot listen.

    A metrics endpoint that cannot bind must never stop mail: the process runs on without it.
    """
    port = port_for(cfg, kind) if port is None else port
    try:
        start_http_server(port, addr=cfg.metrics.address, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); running without /metrics",
                  cfg.metrics.address, port, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", cfg.metrics.address, port)
    return port


class BoundedLabel:
    """Maps free-ish strings onto a label set that cannot grow past ``limit`` values."""

    def __init__(self, limit: int = MAX_SCANNERS) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value.lower()
        if value in self.seen:
            return value
        if not _LABEL.fullmatch(value) or len(self.seen) >= self.limit:
            return "other"
        self.seen.add(value)
        return value


def error_kind(error: str) -> str:
    text = error.lower()
    return "timeout" if "timeout" in text or "timed out" in text else "error"


class TimedJournal(Journal):
    """The workers' journal: remembers how long each append (with its fsync) took."""

    def __init__(self, path: str | Path, *, readonly: bool = False, autocheckpoint: bool = True) -> None:
        super().__init__(path, readonly=readonly, autocheckpoint=autocheckpoint)
        self.append_seconds: list[float] = []

    def append(self, event_id: str, event_type: str, body: bytes, raw: bytes | None = None,
               *, raw_sha256: str | None = None) -> int:
        t0 = time.perf_counter()
        try:
            return super().append(event_id, event_type, body, raw, raw_sha256=raw_sha256)
        finally:
            self.append_seconds.append(time.perf_counter() - t0)


class TimedScanner:
    """Wraps a worker's scanner to time every call, findings or not (clean mail has none)."""

    def __init__(self, inner: Scanner, timings: list[tuple[str, float]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.timings = timings

    @property
    def version(self) -> str:  # clamd and spamd refresh theirs: always ask the scanner
        return self.inner.version

    @version.setter
    def version(self, value: str) -> None:
        self.inner.version = value

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        t0 = time.perf_counter()
        try:
            return self.inner.scan(ctx)
        finally:
            self.timings.append((self.name, time.perf_counter() - t0))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def instrument(processor: Processor) -> Processor:
    """Time each scanner of a freshly built worker processor."""
    timings: list[tuple[str, float]] = []
    processor.scanners = [TimedScanner(s, timings) for s in processor.scanners]
    processor.scan_timings = timings  # type: ignore[attr-defined]
    return processor


# -- the daemon ---------------------------------------------------------------
def sample(processor: Processor, outcome: Outcome) -> list[Any]:
    """One message's figures as a compact JSON-able list (built in the worker).

    [reply code, action, category, direction, total seconds, [[scanner, seconds]],
     [journal append seconds], [[scanner, error kind]]]
    """
    appends: list[float] = []
    journal = processor.journal
    if isinstance(journal, TimedJournal):
        appends, journal.append_seconds = journal.append_seconds, []
    timings: list[tuple[str, float]] = getattr(processor, "scan_timings", [])
    scans = [[name, round(seconds, 6)] for name, seconds in timings]
    timings.clear()
    ev = outcome.event
    if ev is None:  # envelope errors: no event, only a reply code
        return [outcome.code, "", "", "", 0.0, scans, appends, []]
    errors = [[f.scanner, error_kind(f.error)] for f in ev.findings if f.error]
    # a delivery handed to qscan-queue has no reply code: the client answers with qmail-queue's
    code = None if outcome.handed_off else outcome.code
    return [code, ev.action.value, ev.category.value, ev.client.direction,
            round(ev.timings.total_ms / 1000, 6), scans, appends, errors]


class DaemonMetrics:
    """Created in the master before it forks; ``observe`` runs in the workers."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("qscan_messages", "Messages scanned, by action, category and direction",
                                ["action", "category", "direction"], registry=r)
        self.processing = Histogram("qscan_message_processing_seconds",
                                    "Receive + parse + scan + headers, per message", buckets=SECONDS,
                                    registry=r)
        self.scan = Histogram("qscan_scan_seconds", "Time in each scanner, per message", ["scanner"],
                              buckets=SECONDS, registry=r)
        self.scanner_errors = Counter("qscan_scanner_errors", "Scanner failures (kind: error or timeout)",
                                      ["scanner", "kind"], registry=r)
        self.replies = Counter("qscan_replies", "Answers handed back to qscan-queue (0 accepted, "
                               "82 custom reply text; handoff: the message, for qscan-queue to queue)",
                               ["code"], registry=r)
        self.qmail_queue = Counter("qscan_qmail_queue_exits", "Exit codes of the real qmail-queue, as "
                                   "qscan-queue reports them (messages delivered)", ["code"], registry=r)
        self.append = Histogram("qscan_journal_append_seconds", "Journal append incl. fsync",
                                buckets=FAST_SECONDS, registry=r)
        self.dropped = Counter("qscan_metrics_samples_dropped",
                               "Per-message samples workers could not hand to the master", registry=r)
        self.scanner_label = BoundedLabel()
        self._recv, self._send = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send.setblocking(False)
        self._unsent = 0  # per worker: samples dropped since the last one that got through
        self.port: int | None = None

    # worker side ---------------------------------------------------------------
    def observe(self, processor: Processor, outcome: Outcome) -> None:
        data = sample(processor, outcome)
        data.append(self._unsent)
        try:
            self._send.send(json.dumps(data, separators=(",", ":")).encode())
            self._unsent = 0
        except OSError:  # full (the master is behind) or gone: never wait on the mail path
            self._unsent += 1

    # master side ---------------------------------------------------------------
    def apply(self, data: Sequence[Any]) -> None:
        code, action, category, direc, total, scans, appends, errors = data[:8]
        self.replies.labels("handoff" if code is None else str(int(code) & 0xFF)).inc()
        if action:
            self.messages.labels(action, category, direc).inc()
            self.processing.observe(total)
        for name, seconds in scans:
            self.scan.labels(self.scanner_label(str(name))).observe(seconds)
        for name, kind in errors:
            self.scanner_errors.labels(self.scanner_label(str(name)), kind).inc()
        for seconds in appends:
            self.append.observe(seconds)
        if len(data) > 8 and data[8]:
            self.dropped.inc(int(data[8]))

    def queue_exit(self, code: int) -> None:
        """qscan-queue reported qmail-queue's exit code (the master counts the reports)."""
        self.qmail_queue.labels(str(int(code) & 0xFF)).inc()

    def _reader(self) -> None:
        while True:
            try:
                payload = self._recv.recv(65536)
                self.apply(json.loads(payload))
            except (ValueError, TypeError, IndexError):
                log.debug("metrics: bad sample", exc_info=True)
            except OSError:
                return

    def start(self, daemon: Daemon) -> int | None:
        """In the master, before it forks: the collector thread and the HTTP endpoint."""
        self.registry.register(ScoreboardCollector(daemon))
        self.registry.register(JournalCollector(self.cfg.journal_path, self.cfg.journal.disk_budget_mb))
        threading.Thread(target=self._reader, name="metrics-samples", daemon=True).start()
        self.port = serve(self.cfg, "daemon", self.registry)
        return self.port


class ScoreboardCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterable[Metric]:
        workers = self.daemon.board.snapshot()
        busy = sum(1 for w in workers if w["state"] == "busy")
        g = GaugeMetricFamily("qscan_workers", "Live worker processes by state", labels=["state"])
        g.add_metric(["busy"], busy)
        g.add_metric(["idle"], len(workers) - busy)
        yield g
        yield GaugeMetricFamily("qscan_messages_in_flight", "Messages being handled right now",
                                value=busy)
        yield GaugeMetricFamily("qscan_workers_configured", "daemon.workers", value=self.daemon.opts.workers)
        c = CounterMetricFamily("qscan_worker_messages", "Messages handled by the live workers")
        c.add_metric([], sum(w["handled"] for w in workers))
        yield c


class JournalCollector(Collector):
    """Journal size and every reader's position and lag, read when scraped."""

    def __init__(self, path: Path, budget_mb: float) -> None:
        self.path = path
        self.budget = budget_mb * 1e6

    def collect(self) -> Iterable[Metric]:
        from qscan.ops.status import journal_info

        try:
            info = journal_info(self.path, self.budget)
        except Exception as exc:  # a scrape must answer even when the journal is unreadable
            log.warning("metrics: journal unreadable: %s", exc)
            yield GaugeMetricFamily("qscan_journal_up", "1 when the journal could be read", value=0)
            return
        yield GaugeMetricFamily("qscan_journal_up", "1 when the journal could be read", value=1)
        yield GaugeMetricFamily("qscan_journal_head", "Highest journal sequence number", value=info["head"])
        yield GaugeMetricFamily("qscan_journal_events", "Events the journal holds", value=info["events"])
        yield GaugeMetricFamily("qscan_journal_bytes", "Journal size on disk (with WAL)", value=info["bytes"])
        yield GaugeMetricFamily("qscan_journal_budget_bytes", "journal.disk_budget_mb in bytes",
                                value=info["disk_budget_bytes"])
        pos = GaugeMetricFamily("qscan_reader_position", "Journal position of each reader (consumers, relay)",
                                labels=["reader"])
        lag = GaugeMetricFamily("qscan_reader_lag_events", "Events a reader has not handled yet",
                                labels=["reader"])
        age = GaugeMetricFamily("qscan_reader_lag_seconds",
                                "Age of the oldest event a reader has not handled",
                                labels=["reader"])
        for name, p in info["positions"].items():
            pos.add_metric([name], p["position"])
            lag.add_metric([name], p["lag"])
            age.add_metric([name], p["lag_seconds"])
        yield pos
        yield lag
        yield age


def start_daemon_metrics(cfg: Config, daemon: Daemon) -> DaemonMetrics | None:
    """Wire metrics into a Daemon (before ``serve``); None when [metrics] is disabled."""
    if not cfg.metrics.enabled:
        return None
    metrics = DaemonMetrics(cfg)
    daemon.observe = metrics.observe
    daemon.on_report = metrics.queue_exit
    make = daemon.make_processor
    daemon.make_processor = lambda: instrument(make())
    metrics.start(daemon)
    return metrics


# -- consumers ------------------------------------------------------------------
class MeteredSink:
    """A Sink wrapper counting what a consumer applies and how long its batches take."""

    def __init__(self, sink: Sink, events: Counter, batches: Histogram, position: Gauge) -> None:
        self.sink = sink
        self.name = sink.name
        self.needs_raw = sink.needs_raw
        # the notify sink reads the raw headers from the Kafka topic (lists, bulk mail): keep that
        self.raw_from_topic = getattr(sink, "raw_from_topic", False)
        self._events = events.labels(_consumer_label(sink.name))
        self._batches = batches.labels(_consumer_label(sink.name))
        self._position = position.labels(_consumer_label(sink.name))
        self.last = 0

    def position(self) -> int:
        self.last = self.sink.position()
        self._position.set(self.last)
        return self.last

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        t0 = time.perf_counter()
        self.sink.apply(records, position)
        self._batches.observe(time.perf_counter() - t0)
        self._events.inc(len(records))
        self.last = position
        self._position.set(position)

    def set_position(self, position: int) -> None:
        self.sink.set_position(position)
        self.last = position
        self._position.set(position)

    def close(self) -> None:
        self.sink.close()


def _consumer_label(sink_name: str) -> str:
    # summaries@kafka.qscan.events.3 -> summaries: partitions would multiply the series
    return sink_name.partition("@")[0]


class ConsumerMetrics:
    """One per consumer process (``qscan consume NAME``)."""

    def __init__(self, cfg: Config, name: str, *, source: str) -> None:
        self.cfg = cfg
        self.name = name
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("qscan_consumer_events", "Events applied by the consumer", ["consumer"],
                              registry=r)
        self.batches = Histogram("qscan_consumer_batch_seconds", "Time to apply one batch", ["consumer"],
                                 buckets=BATCH_SECONDS, registry=r)
        self.position = Gauge("qscan_consumer_position", "Position the consumer stored last", ["consumer"],
                              registry=r)
        self.sinks: list[MeteredSink] = []
        self._engine: Any = None  # the outbox gauge's, made at the first scrape and kept
        self.kafka: Any = None  # the KafkaSource, when the consumer reads a topic (attach_kafka)
        if source == "journal":
            r.register(_FuncCollector(self._lag))
        elif source == "kafka":
            r.register(_FuncCollector(self._kafka_lag))
        from qscan.wiring.pipeline import SINKS

        self.outbox = name in SINKS and SINKS[name].outbox
        if self.outbox:
            r.register(_FuncCollector(self._outbox))
            self.notifications_sent = Counter(
                "qscan_notifications_sent", "Notifications handed to the mail system",
                ["kind", "audience"], registry=r)
            self.notification_failures = Counter(
                "qscan_notification_failures", "Failed notification attempts, by what became of the row "
                "(deferred: retried later, indoubt, failed: given up)", ["kind", "audience", "outcome"],
                registry=r)

    def wrap(self, sink: Sink) -> MeteredSink:
        metered = MeteredSink(sink, self.events, self.batches, self.position)
        self.sinks.append(metered)
        courier = getattr(sink, "courier", None)
        if self.outbox and courier is not None:
            courier.on_outcome = self.notified
        return metered

    def notified(self, kind: str, audience: str, outcome: str) -> None:
        """One delivery attempt of the notify consumer (compliance/notify/outbox.py Courier)."""
        if outcome == "sent":
            self.notifications_sent.labels(kind, audience).inc()
        else:
            self.notification_failures.labels(kind, audience,
                                              "deferred" if outcome == "pending" else outcome).inc()

    def _lag(self) -> Iterable[Metric]:
        g = GaugeMetricFamily("qscan_consumer_lag_events", "Journal head minus the consumer's position",
                              labels=["consumer"])
        if self.sinks:
            with Journal(self.cfg.journal_path, readonly=True) as j:
                head = j.head()
            g.add_metric([self.name], max(0, head - max(s.last for s in self.sinks)))
        yield g

    def attach_kafka(self, source: Any) -> None:
        """The KafkaSource this consumer reads: its per-partition lag is exported."""
        self.kafka = source

    def _kafka_lag(self) -> Iterable[Metric]:
        g = GaugeMetricFamily("qscan_consumer_lag_events",
                              "Records behind the topic's high-watermark (Kafka: summed over partitions)",
                              labels=["consumer"])
        lag = dict(self.kafka.lag) if self.kafka is not None else {}
        if lag:
            g.add_metric([self.name], sum(lag.values()))
        yield g

    def _outbox(self) -> Iterable[Metric]:
        from sqlalchemy import text

        from compliance.db import make_engine

        g = GaugeMetricFamily("qscan_notifications", "Notification outbox rows by state (sent, failed, ...)",
                              labels=["state"])
        if self._engine is None:  # one engine (and its pool) for every scrape
            self._engine = make_engine(self.cfg.sql_url)
        with self._engine.connect() as conn:
            for state, count in conn.execute(text(
                    "SELECT state, COUNT(*) FROM notifications GROUP BY state")):
                g.add_metric([str(state)], int(count))
        yield g


class _FuncCollector(Collector):
    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self.fn = fn

    def collect(self) -> Iterable[Metric]:
        try:
            yield from self.fn()
        except Exception as exc:
            log.warning("metrics: %s failed: %s", getattr(self.fn, "__name__", "collector"), exc)


def consumer_metrics(cfg: Config, name: str, *, source: str = "journal",
                     port: int | None = None) -> ConsumerMetrics | None:
    """Start a consumer's endpoint (None when [metrics] is disabled)."""
    if not cfg.metrics.enabled:
        return None
    metrics = ConsumerMetrics(cfg, name, source=source)
    serve(cfg, name, metrics.registry, port)
    return metrics


# -- the relay --------------------------------------------------------------------
class RelayCollector(Collector):
    def __init__(self, relay: Relay, journal_path: Path) -> None:
        self.relay = relay
        self.journal_path = journal_path

    def collect(self) -> Iterable[Metric]:
        from ingest.kafka_log import RELAY_NAME

        sent = CounterMetricFamily("qscan_relay_events", "Events the broker acknowledged")
        sent.add_metric([], self.relay.sent)
        yield sent
        failures = CounterMetricFamily("qscan_relay_failures", "Failed relay round trips (retried)")
        failures.add_metric([], self.relay.failures)
        yield failures
        with Journal(self.journal_path, readonly=True) as j:
            pos = j.get_position(RELAY_NAME) or 0
            pending = j.read(pos, 1, with_raw=False)
            head = j.head()
        yield GaugeMetricFamily("qscan_relay_lag_events", "Journal events not yet relayed",
                                value=head - pos if pending else 0)
        yield GaugeMetricFamily("qscan_relay_lag_seconds", "Age of the oldest event not yet relayed",
                                value=max(0.0, time.time() - pending[0].appended) if pending else 0.0)


def relay_metrics(cfg: Config, relay: Relay) -> CollectorRegistry | None:
    if not cfg.metrics.enabled:
        return None
    registry = CollectorRegistry()
    registry.register(RelayCollector(relay, cfg.journal_path))
    serve(cfg, "relay", registry)
    return registry
