"""Discovery search: indexing rate, query time over a million messages, index size.

``.venv/bin/python bench/discovery.py [--count 2000] [--messages 1000000] [--skip ...]``
(``make bench-discovery``; results: bench/results/discovery.json). Two parts:

**Indexing** (``indexing``): the bench corpus (bench/corpus.py: plain text, HTML
alternatives, PDF-like and zip attachments, without its two outliers), each wrapped in a
``message.scanned`` event the way the daemon writes it, fed to the ``index`` consumer
(compliance/discovery/consumer.py) in batches of 200, exactly as ``qscan consume index``
applies them: text extraction (``--workers`` processes), the FTS5 insert, the position,
one transaction per batch. The rate is messages / wall-clock seconds of ``apply``; the
load average after the run is recorded, since a shared machine makes the figure
meaningless. The size is the index file (WAL checkpointed) divided by the messages.

**Query** (``query``): ``--messages`` synthetic indexed messages (default 1,000,000)
written straight into the index tables (the consumer would take hours; extraction is
not what is measured here): SQLite FTS5 through executemany, PostgreSQL through COPY,
its tsvectors computed by the server (``to_tsvector('simple', ...)``, as the consumer
does) and the GIN indexes built after the load. The text is drawn from a Zipf-distributed
vocabulary of 30,000 words (a few hundred common English words first, then made-up ones)
cut into a pool of sentences, ~100 words of body per message, a subject, addresses
from a population with a few busy custodians and a long tail, attachment names and text
on some; 3% of messages are second copies of another (same hash). The phrase searched
for, ``"quarterly report"``, is planted in 1% of the messages. Then the search
``qscan discover search '"quarterly report"' --since D --until D+30d`` runs exactly as
the CLI runs it (compliance/discovery/search.py: the counts - total, per custodian, per
month - and the first page of 50 hits with snippets): first (cold) and best of 3.
The index size per message is the SQLite file (WAL checkpointed) or the PostgreSQL
relations (``pg_total_relation_size``) divided by the messages.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.audit_search import Population, log  # noqa: E402
from bench.corpus import BenchMessage, generate  # noqa: E402
from compliance import db  # noqa: E402
from compliance.discovery import schema  # noqa: E402
from compliance.discovery.compile import FTS5_COLUMNS  # noqa: E402
from compliance.discovery.consumer import IndexSink  # noqa: E402
from compliance.discovery.index import DiscoveryIndex  # noqa: E402
from compliance.discovery.query import parse, tokens  # noqa: E402
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


def run_indexing(count: int, workers: int) -> dict[str, object]:
    corpus = generate(count)[:count]  # the two outliers come last
    events = [event(m, i) for i, m in enumerate(corpus)]
    with tempfile.TemporaryDirectory(prefix="qscan-bench-discovery-") as tmp:
        path = Path(tmp) / "discovery.db"
        sink = IndexSink(f"sqlite:///{Path(tmp) / 'unused.db'}", path, DiscoverySettings(workers=workers))
        try:
            started, cpu = time.perf_counter(), time.process_time()
            for at in range(0, len(events), BATCH):
                batch = events[at:at + BATCH]
                sink.apply([LogRecord(at + n + 1, ev) for n, ev in enumerate(batch)],
                           at + len(batch))
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu  # all of it with --workers 1 (in-process)
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
        # with one worker everything runs in this process: its CPU per message, and the rate
        # the machine's cores could reach doing nothing else (what a busy box hides)
        **({"cpu_ms_per_message": round(cpu * 1000 / len(events), 2),
            "cpu_bound_messages_per_second_all_cores":
                round((os.cpu_count() or 1) * len(events) / cpu, 1)} if workers == 1 else {}),
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


# -- query time over N synthetic indexed messages ---------------------------------------
SEED = 20261207
END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 365
CHUNK = 20_000
PHRASE = "quarterly report"
PLANTED = 0.01  # of the messages say the phrase
DUPLICATES = 0.03  # of the messages are a second copy of an earlier one
_COMMON = """the of and to a in is it you that he was for on are with as i his they be at one
have this from or had by hot word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write would
like so these her long make thing see him two has look more day could go come did number
sound no most people my over know water than call first who may down side been now find any
new work part take get place made live where after back little only round man year came show
every good me give our under name very through just form sentence great think say help low
line differ turn cause much mean before move right boy old too same tell does set three want
air well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left late
run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river
car feet care second book carry took science eat room friend began idea fish mountain stop
once base hear horse cut sure watch color face wood main enough plain girl usual young ready
above ever red list though feel talk bird soon body dog family direct pose leave song measure
door product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit
power town fine certain fly fall lead cry dark machine note wait plan figure star box noun
field rest correct able pound done beauty drive stood contain front teach week final gave
green oh quick develop ocean warm free minute strong special mind behind clear tail produce
fact street inch multiply nothing course stay wheel full force blue object decide surface deep
moon island foot system busy test record boat common gold possible plane stead dry wonder
laugh thousand ago ran check game shape equate miss brought heat snow tire bring yes distant
fill east paint language among invoice contract budget meeting payment account transfer
quarterly report review project schedule delivery order customer supplier merger acquisition
board agenda minutes draft proposal forecast revenue margin audit compliance legal counsel
settlement pricing discount shipment warehouse"""
COMMON = _COMMON.split()
SUBJECT_WORDS = ["invoice", "report", "meeting", "contract", "offer", "update", "quarterly",
                 "budget", "payroll", "review", "schedule", "delivery", "shipment", "order",
                 "payment", "reminder", "project", "proposal", "minutes", "draft", "agenda",
                 "holiday", "policy", "security", "account", "merger", "forecast", "urgent"]
ATTACHMENT_NAMES = ["budget", "forecast", "minutes", "contract", "invoice", "scan", "report",
                    "slides", "notes", "figures", "plan", "statement"]
ATTACHMENT_EXTS = ["pdf", "docx", "xlsx", "pptx", "zip", "txt", "csv"]


def _vocabulary(rng: random.Random, size: int = 30_000) -> tuple[list[str], list[float]]:
    """Words and cumulative Zipf weights: the common words first, then made-up ones."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "gu", "ri", "bo",
                 "fe", "zi", "an", "or", "el", "us", "im", "ex", "tr", "st", "pl", "qu"]
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    cum, total = [], 0.0
    for rank in range(1, len(words) + 1):
        total += 1.0 / rank ** 1.07
        cum.append(total)
    return words, cum


class Synthetic:
    """Indexed messages, deterministic from the seed, in chunks of rows for the three tables."""

    def __init__(self, n: int, seed: int = SEED) -> None:
        self.n = n
        self.rng = rng = random.Random(seed)
        words, cum = _vocabulary(rng)
        pool = rng.choices(words, cum_weights=cum, k=400_000)
        self.sentences = [" ".join(pool[i:i + 4 + (i % 11)]) for i in range(0, 360_000, 9)]
        self.address = Population(rng).address  # bench/audit_search.py's: busy custodians, a long tail

    def text(self, lo: int, hi: int) -> str:
        return ". ".join(self.rng.choices(self.sentences, k=self.rng.randint(lo, hi)))

    def chunks(self) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]],
                                       list[dict[str, Any]]]]:
        rng = self.rng
        start = END - timedelta(days=DAYS)
        step = DAYS * 86400 / self.n
        shas: list[str] = []
        for base in range(0, self.n, CHUNK):
            docs, people, texts = [], [], []
            for i in range(base, min(self.n, base + CHUNK)):
                doc_id = i + 1
                when = start + timedelta(seconds=i * step + rng.random() * step)
                sender, rcpts = self.address(), [self.address() for _ in range(
                    1 + (rng.random() < 0.3) + (rng.random() < 0.1))]
                subject = " ".join(rng.choice(SUBJECT_WORDS)
                                   for _ in range(rng.randint(2, 6))).capitalize()
                body = self.text(6, 14)
                if rng.random() < PLANTED:
                    cut = rng.randrange(len(body) // 2)
                    at = body.find(" ", cut) + 1
                    body = f"{body[:at]}see the {PHRASE} attached {body[at:]}"
                names, attached = "", ""
                if rng.random() < 0.25:
                    names = (f"{rng.choice(ATTACHMENT_NAMES)}-{rng.randrange(1000)}."
                             f"{rng.choice(ATTACHMENT_EXTS)}")
                    if rng.random() < 0.6:
                        attached = self.text(4, 30)
                sha = (rng.choice(shas) if shas and rng.random() < DUPLICATES
                       else f"{rng.getrandbits(256):064x}")
                shas.append(sha)
                docs.append({"id": doc_id, "event_id": f"{uuid7()}", "sha256": sha,
                             "received_at": when, "host": "mx1.example.com", "sender": sender,
                             "subject": subject, "incomplete": None, "position": doc_id})
                people.append({"doc_id": doc_id, "address": sender, "role": "from"})
                people.extend({"doc_id": doc_id, "address": r, "role": "to"} for r in rcpts)
                texts.append({"doc_id": doc_id, "subject": subject, "hdr_from": sender,
                              "hdr_to": " ".join(rcpts),
                              "hdr_cc": self.address() if rng.random() < 0.1 else "",
                              "body": body, "attachment": f"{names}\n{attached}".strip()})
            yield docs, people, texts


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite format


DOC_COLUMNS = ("id", "event_id", "sha256", "received_at", "host", "sender", "subject",
               "incomplete", "position")
PEOPLE_COLUMNS = ("doc_id", "address", "role")
TEXT_COLUMNS = ("doc_id", *FTS5_COLUMNS)


def load_sqlite(path: Path, n: int) -> float:
    DiscoveryIndex(db.make_engine(f"sqlite:///{path}")).close()  # the schema, as the consumer makes it
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # a bench load: durability is not measured
    conn.execute("PRAGMA cache_size = -1000000")
    t0 = time.perf_counter()
    done = 0
    for docs, people, texts in Synthetic(n).chunks():
        with conn:
            conn.executemany(
                f"INSERT INTO discovery_docs ({', '.join(DOC_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(DOC_COLUMNS))})",
                [tuple(_sqlite_time(d[c]) if c == "received_at" else d[c] for c in DOC_COLUMNS)
                 for d in docs])
            conn.executemany("INSERT INTO discovery_participants (doc_id, address, role) "
                             "VALUES (?, ?, ?)", [tuple(p[c] for c in PEOPLE_COLUMNS)
                                                 for p in people])
            conn.executemany(
                f"INSERT INTO discovery_text (rowid, {', '.join(FTS5_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(TEXT_COLUMNS))})",
                [tuple(t[c] for c in TEXT_COLUMNS) for t in texts])
        done += len(docs)
        if done % 100_000 < CHUNK:
            log(f"  sqlite: {done:>9,} messages ({done / (time.perf_counter() - t0):,.0f}/s)")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def load_postgres(url: str, n: int) -> float:
    engine = db.make_engine(url)
    tables = [schema.docs, schema.participants, schema.pg_text]
    indexes = [i for t in tables for i in t.indexes]
    t0 = time.perf_counter()
    with engine.begin() as conn:  # indexes after the load: how a bulk load is done
        for index in indexes:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
        conn.exec_driver_sql("CREATE UNLOGGED TABLE bench_text (doc_id bigint, "
                             "received_at timestamptz, "
                             + ", ".join(f"{c} text, n_{c} text" for c in FTS5_COLUMNS) + ")")
    done = 0
    staged = (*TEXT_COLUMNS, "received_at", *(f"n_{c}" for c in FTS5_COLUMNS))
    for docs, people, texts in Synthetic(n).chunks():
        for d, t in zip(docs, texts, strict=True):
            # the vectors are built from the query language's tokens, as the consumer does
            t.update({f"n_{c}": " ".join(tokens(t[c])) for c in FTS5_COLUMNS})
            t["received_at"] = d["received_at"]
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            for table, cols, rows in (("discovery_docs", DOC_COLUMNS, docs),
                                      ("discovery_participants", PEOPLE_COLUMNS, people),
                                      ("bench_text", staged, texts)):
                with raw.cursor() as cur, cur.copy(
                        f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in cols])
        done += len(docs)
        if done % 100_000 < CHUNK:
            log(f"  postgresql: {done:>9,} messages copied "
                f"({done / (time.perf_counter() - t0):,.0f}/s)")
    with engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        log("  postgresql: tsvectors ...")
        conn.exec_driver_sql(
            "INSERT INTO discovery_text (doc_id, received_at, " + ", ".join(FTS5_COLUMNS) + ", "
            + ", ".join(f"tsv_{c}" for c in FTS5_COLUMNS) + ") SELECT doc_id, received_at, "
            + ", ".join(FTS5_COLUMNS) + ", "
            + ", ".join(f"to_tsvector('simple', n_{c})" for c in FTS5_COLUMNS) + " FROM bench_text")
        conn.exec_driver_sql("DROP TABLE bench_text")
        conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('discovery_docs', 'id'), "
                             "(SELECT max(id) FROM discovery_docs))")
        log("  postgresql: indexes ...")
        for index in indexes:
            index.create(conn)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - t0


EXPLAIN = False  # --explain: print the plan of every statement of the first search


def explain(index: DiscoveryIndex, tree: Any, filters: Filters) -> None:
    """Run one search capturing its statements, then print each one's plan (EXPLAIN QUERY
    PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL)."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(index.engine, "before_cursor_execute", grab)
    try:
        Searcher(index).search(tree, filters, page_size=50)
    finally:
        event.remove(index.engine, "before_cursor_execute", grab)
    prefix = "EXPLAIN QUERY PLAN " if index.kind == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    raw = index.engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, parameters in seen:
            log("-" * 72 + "\n" + statement)
            t = time.perf_counter()
            cur.execute(prefix + statement, parameters)
            for row in cur.fetchall():
                log("    " + " | ".join(str(x) for x in row))
            log(f"  ({(time.perf_counter() - t) * 1000:.1f} ms)")
    finally:
        raw.close()


def time_queries(index: DiscoveryIndex) -> list[dict[str, Any]]:
    searcher = Searcher(index)
    since = END - timedelta(days=60)
    cases = [
        (f'"{PHRASE}" --since/--until (30 days)', f'"{PHRASE}"',
         Filters(since=since, until=since + timedelta(days=30))),
        (f'"{PHRASE}" (all time)', f'"{PHRASE}"', Filters()),
        ("budget AND forecast --since/--until (30 days)", "budget AND forecast",
         Filters(since=since, until=since + timedelta(days=30))),
    ]
    out = []
    for label, query, filters in cases:
        tree = parse(query)
        if EXPLAIN and query == cases[0][1] and filters == cases[0][2]:
            explain(index, tree, filters)
        runs = []
        for _ in range(4):
            t = time.perf_counter()
            result = searcher.search(tree, filters, page_size=50)
            runs.append(time.perf_counter() - t)
        out.append({"search": label, "first_ms": round(runs[0] * 1000, 1),
                    "best_of_3_ms": round(min(runs[1:]) * 1000, 1),
                    "total": result.counts.total, "hits_on_page": len(result.hits)})
        log(f"  [{index.kind}] {label:<48} first {runs[0] * 1000:8.1f} ms, best "
            f"{min(runs[1:]) * 1000:8.1f} ms, {result.counts.total:,} messages")
    return out


def bench_sqlite_query(n: int, work: Path) -> dict[str, Any]:
    path = work / "discovery.db"
    log(f"SQLite FTS5: writing {n:,} synthetic indexed messages ...")
    seconds = load_sqlite(path, n)
    size = path.stat().st_size
    index = DiscoveryIndex(db.make_engine(f"sqlite:///{path}"))
    try:
        queries = time_queries(index)
    finally:
        index.close()
    return {"load_seconds": round(seconds, 1), "index_bytes": size,
            "index_bytes_per_message": round(size / n), "queries": queries}


def bench_postgres_query(n: int) -> dict[str, Any] | None:
    try:
        from qscan.testing import postgres as pg
    except ImportError:
        return None
    if not pg.available():
        log("PostgreSQL is not installed here: skipped")
        return None
    base = Path(tempfile.mkdtemp(prefix="qscan-pg-bench-"))  # the server's user can enter /tmp
    server = pg.start_server(base)
    try:
        url = server.url(server.create_database())
        db.upgrade(url)
        log(f"PostgreSQL: writing {n:,} synthetic indexed messages ...")
        seconds = load_postgres(url, n)
        index = DiscoveryIndex(db.make_engine(url), pg_config="simple")
        try:
            with index.engine.connect() as conn:
                size = int(conn.exec_driver_sql(
                    "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY["
                    "'discovery_docs', 'discovery_participants', 'discovery_text']::regclass[]) c"
                ).scalar() or 0)
            queries = time_queries(index)
        finally:
            index.close()
        return {"load_seconds": round(seconds, 1), "index_bytes": size,
                "index_bytes_per_message": round(size / n), "queries": queries,
                "server": server.bindir.parent.name}
    finally:
        pg.stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000, help="bench corpus messages to index")
    ap.add_argument("--workers", type=int, default=DiscoverySettings().workers,
                    help="extraction processes (default: [discovery] workers)")
    ap.add_argument("--messages", type=int, default=1_000_000,
                    help="synthetic indexed messages the query runs over")
    ap.add_argument("--skip", default="", help="comma list of: index, sqlite, postgresql")
    ap.add_argument("--explain", action="store_true",
                    help="print the plans of the first search's statements")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    global EXPLAIN
    EXPLAIN = args.explain
    # SIGTERM unwinds like Ctrl-C, so the throw-away server and files are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                           "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                           "cpus": os.cpu_count(), "targets": {
                               "messages_per_second": 300, "query_ms": 500}}
    if "index" not in skip:
        log(f"indexing {args.count} bench corpus messages ({args.workers} workers) ...")
        out["indexing"] = run_indexing(args.count, args.workers)
        log(f"  {out['indexing']['messages_per_second']} messages/s")
    query: dict[str, Any] = {"messages": args.messages, "seed": SEED}
    work = Path(tempfile.mkdtemp(prefix="qscan-bench-discovery-"))
    try:
        if "sqlite" not in skip:
            query["sqlite"] = bench_sqlite_query(args.messages, work)
        if "postgresql" not in skip:
            query["postgresql"] = bench_postgres_query(args.messages)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(query) > 2:
        out["query"] = query
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
