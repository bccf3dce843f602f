"""Discovery index: messages indexed per second into SQLite FTS5, index size per message,
and the time of a phrase query with a date filter on what was indexed.

Standalone: ``.venv/bin/python bench/discovery.py [--count 2000] [--json FILE]``
(default output: bench/results/discovery.json).

The messages are the bench corpus (bench/corpus.py: plain text, HTML alternatives, PDF-like
and zip attachments, without its two outliers), each wrapped in a ``message.scanned`` event
the way the daemon writes it, and fed to the ``index`` consumer (compliance/discovery/
consumer.py) in batches of 200, exactly as ``qscan consume index`` applies them: text
extraction (``--workers`` processes), the FTS5 insert, the position, one transaction per
batch. The rate is messages / wall-clock seconds of ``apply``; the load average after the
run is recorded, since a shared machine makes the figure meaningless. The size is the index file
(with its WAL checkpointed) divided by the messages.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpus import BenchMessage, generate  # noqa: E402
from compliance.discovery.consumer import IndexSink  # noqa: E402
from compliance.discovery.query import parse  # noqa: E402
from compliance.discovery.search import Filters, Searcher  # noqa: E402
from compliance.discovery.settings import DiscoverySettings  # noqa: E402
from ingest.envelope import parse_envelope  # noqa: E402
from ingest.event import (  # noqa: E402
    Action,
    Category,
    ClientInfo,
    EnvelopeInfo,
    HeaderSummary,
    MessageScanned,
)
from ingest.ids import uuid7  # noqa: E402
from ingest.log import LogRecord  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "discovery.json"
BATCH = 200
START = datetime(2026, 1, 1, tzinfo=UTC)


def event(msg: BenchMessage, i: int) -> MessageScanned:
    head = email.message_from_bytes(msg.data.split(b"\n\n", 1)[0] + b"\n\n",
                                    policy=email.policy.compat32)
    env = parse_envelope(msg.envelope)
    sender = env.sender.decode("utf-8", "replace")
    rcpts = [r.decode("utf-8", "replace") for r in env.recipients]
    return MessageScanned(
        event_id=str(uuid7()), time=START + timedelta(minutes=i), host="bench.example",
        envelope=EnvelopeInfo(sender=sender, recipients=rcpts, raw=msg.envelope),
        client=ClientInfo(ip=msg.env.get("TCPREMOTEIP")),
        headers=HeaderSummary.model_validate({"from": head.get("From"), "to": head.get("To"),
                                              "subject": head.get("Subject")}),
        size=len(msg.data), sha256=hashlib.sha256(msg.data).hexdigest(),
        category=Category.CLEAN, action=Action.DELIVER, raw_message=msg.data)


def run(count: int, workers: int) -> dict[str, object]:
    corpus = generate(count)[:count]  # the two outliers come last
    events = [event(m, i) for i, m in enumerate(corpus)]
    with tempfile.TemporaryDirectory(prefix="qscan-bench-discovery-") as tmp:
        path = Path(tmp) / "discovery.db"
        sink = IndexSink(f"sqlite:///{Path(tmp) / 'unused.db'}", path, DiscoverySettings(workers=workers))
        try:
            started = time.perf_counter()
            for at in range(0, len(events), BATCH):
                batch = events[at:at + BATCH]
                sink.apply([LogRecord(at + n + 1, ev) for n, ev in enumerate(batch)],
                           at + len(batch))
            seconds = time.perf_counter() - started
            searcher = Searcher(sink.index)
            tree = parse('"quarterly report" OR "please find"')
            filters = Filters(since=START, until=START + timedelta(days=30))
            timings = []
            for _ in range(5):
                t = time.perf_counter()
                result = searcher.search(tree, filters, page_size=50)
                timings.append(time.perf_counter() - t)
            incomplete = searcher.search(parse("body:the OR subject:the OR attachment:the"))
        finally:
            sink.close()
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
    return {
        "messages": len(events),
        "workers": workers,
        "raw_bytes": sum(len(m.data) for m in corpus),
        "index_seconds": round(seconds, 3),
        "messages_per_second": round(len(events) / seconds, 1),
        "index_bytes": size,
        "index_bytes_per_message": round(size / len(events)),
        "phrase_query_with_dates_ms_best_of_5": round(min(timings) * 1000, 2),
        "phrase_query_hits": result.counts.total,
        "not_fully_indexed_of_those_with_the": incomplete.counts.incomplete,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],  # a busy box shows here
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=DiscoverySettings().workers,
                    help="extraction processes (default: [discovery] workers)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    out = run(args.count, args.workers)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
