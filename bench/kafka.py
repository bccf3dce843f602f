"""Kafka figures: relay events/s, end-to-end lag at a steady 200 messages/s, and consumer
events/s from the topic into SQLite and PostgreSQL.

    .venv/bin/python -m bench.kafka [--events 5000] [--rate 200] [--seconds 10]

Runs against Tansu (the broker the tests use: memory storage, loopback), so the figures
measure qscan's side; a real cluster adds its own replication latency.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.corpus import generate
from bench.run import RESULTS, ROOT, Daemon, log, pct, postgres_url, send_direct
from ingest.envelope import parse_envelope
from ingest.event import MessageScanned, to_json
from ingest.ids import uuid7
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic
from ingest.kafka_source import KafkaSource
from ingest.log import LogRecord, Sink, Stop
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from qscan.testing.kafka_broker import Broker, free_port


def fill_journal(path: Path, n: int) -> Journal:
    corpus = generate(300)[:-2]
    journal = Journal(path)
    opts = ProcessorOptions(hostname="bench", settings=ProcessorSettings(qmail_queue=Path("/bin/true")))
    proc = Processor(opts, journal, [])
    base = [proc._scan(make_request(m.data, m.envelope, m.env), parse_envelope(m.envelope)) for m in corpus]

    def entries() -> Iterator[tuple[str, str, bytes, bytes | None]]:
        for i in range(n):
            ev, raw = base[i % len(base)]
            ev = ev.model_copy(update={"event_id": str(uuid7())})
            yield ev.event_id, ev.type, to_json(ev, with_raw=False), raw

    journal.append_many(entries())
    return journal


def summary_sink(url: str, key: str) -> Sink:
    from compliance.summaries import SummarySink

    return SummarySink(url, name=f"s@{key}")


class TimedSink:
    """Wraps a sink to record, per event, the delay from reception to the sink's commit."""

    def __init__(self, inner: Sink, lags: list[float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.needs_raw = inner.needs_raw
        self.lags = lags

    def position(self) -> int:
        return self.inner.position()

    def set_position(self, position: int) -> None:
        self.inner.set_position(position)

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        self.inner.apply(records, position)
        now = datetime.now(UTC)
        for r in records:
            if isinstance(r.event, MessageScanned):
                self.lags.append((now - r.event.time).total_seconds() * 1000)

    def close(self) -> None:
        self.inner.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.kafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s for the lag run")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "kafka.json")
    args = ap.parse_args(argv)

    from compliance.db import upgrade
    from compliance.summaries import SummarySink

    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="kafka", dir=work))
    broker = Broker(free_port())
    broker.start()
    result: dict[str, object] = {}
    pg, pg_stop = postgres_url(work)
    try:
        settings = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=6)
        init_topic(settings)
        log(f"relay: {args.events} events ...")
        journal = fill_journal(root / "journal.db", args.events)
        t0 = time.perf_counter()
        n = Relay(journal, settings, "bench").run(Stop(), once=True)
        result["relay_events_per_s"] = round(n / (time.perf_counter() - t0), 1)

        for label, url in (("sqlite", f"sqlite:///{root / 'qscan.db'}"), ("postgres", pg)):
            if url is None:
                result[f"kafka_to_{label}_events_per_s"] = None
                continue
            upgrade(url)
            log(f"consumer from Kafka into {label} ...")
            src = KafkaSource(
                settings,
                f"summaries-{label}",
                functools.partial(summary_sink, url),
                partitions=list(range(settings.partitions)),
            )
            t0 = time.perf_counter()
            n = src.run(Stop(), once=True)
            result[f"kafka_to_{label}_events_per_s"] = round(n / (time.perf_counter() - t0), 1)

        log(f"end-to-end lag at {args.rate:.0f} messages/s for {args.seconds:.0f}s ...")
        standin = work / "qmail-queue-standin"
        import subprocess

        subprocess.run(["cc", "-O2", "-o", str(standin), str(ROOT / "bench" / "standin.c")], check=True)
        lag_settings = KafkaSettings(bootstrap_servers=[broker.bootstrap], topic="qscan.lag", partitions=6)
        init_topic(lag_settings)
        corpus = [m for m in generate(400)[:-2] if m.kind in ("plain", "alternative")]
        lags: list[float] = []
        with Daemon(work, standin, None) as d:
            url = f"sqlite:///{d.dir / 'lag.db'}"
            upgrade(url)
            stop = Stop()
            dj = Journal(d.dir / "journal.db")
            relay = Relay(dj, dataclasses.replace(lag_settings, relay_batch=200), "bench")
            threads = [threading.Thread(target=relay.run, args=(stop,), kwargs={"poll_interval": 0.01})]
            src = KafkaSource(
                lag_settings,
                "lag",
                lambda key: TimedSink(SummarySink(url, name=f"l@{key}"), lags),
                partitions=list(range(6)),
                batch=200,
            )
            threads.append(threading.Thread(target=src.run, args=(stop,)))
            for t in threads:
                t.start()
            total = int(args.rate * args.seconds)
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=16) as pool:  # an open loop: arrivals at the rate
                for i in range(total):
                    delay = start + i / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(send_direct, d.socket, corpus[i % len(corpus)])
            sent_rate = total / (time.perf_counter() - start)
            deadline = time.monotonic() + 60
            while len(lags) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.requested = True
            for t in threads:
                t.join(30)
            dj.close()
        result["lag_run"] = {
            "target_rate": args.rate,
            "achieved_rate": round(sent_rate, 1),
            "messages": total,
            "received": len(lags),
            "lag_p50_ms": round(pct(lags, 50), 1),
            "lag_p95_ms": round(pct(lags, 95), 1),
            "lag_p99_ms": round(pct(lags, 99), 1),
            "lag_mean_ms": round(statistics.mean(lags), 1) if lags else None,
        }
    finally:
        broker.stop()
        pg_stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
