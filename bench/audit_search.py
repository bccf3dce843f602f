"""Audit search on a million messages: ``python -m bench.audit_search [--rows N]``.

Generates N summary rows (default 1,000,000) with their recipients, parts,
findings and DLP hits into a fresh SQLite database - and into a throw-away
PostgreSQL server when one is installed (qscan/testing/postgres.py) - then times the
searches auditors run, each exactly as ``qscan audit search`` runs it for the
table view: the page of 100 rows *and* the total count. The figure is the best
of three warm runs; the target is under one second.

Rows are written with the database's bulk path (executemany on SQLite, COPY on
PostgreSQL) into the migrated schema, indexes in place, then ANALYZEd (what
autovacuum does on PostgreSQL; on SQLite ``qscan db upgrade`` does not, so the
script also reports the plain figures first - see ``--no-analyze``).
Results: bench/results/audit_search.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from compliance import audit, db
from compliance.audit import Filters

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "audit_search.json"
SEED = 20261125
END = datetime(2026, 11, 25, tzinfo=UTC)
DAYS = 365
CHUNK = 20_000

WORDS = ["invoice", "report", "meeting", "contract", "offer", "update", "quarterly", "budget",
         "payroll", "review", "schedule", "delivery", "shipment", "order", "payment", "reminder",
         "project", "proposal", "minutes", "draft", "agenda", "holiday", "policy", "security",
         "account", "password", "newsletter", "welcome", "urgent"]
ATTACHMENTS = [("pdf", "application/pdf"), ("docx", "application/vnd.openxmlformats-officedocument"
                ".wordprocessingml.document"), ("xlsx", "application/vnd.ms-excel"),
               ("zip", "application/zip"), ("jpg", "image/jpeg"), ("png", "image/png"),
               ("exe", "application/x-msdownload"), ("html", "text/html")]
MESSAGE_COLUMNS = (
    "event_id", "position", "received_at", "host", "action", "category", "reason", "client_ip",
    "client_host", "relay", "auth_user", "sender", "sender_domain", "subject", "message_id",
    "size", "sha256", "attachments", "parts_count", "recipients_count", "spam_score",
    "processing_ms", "queue_status", "queue_exit_code", "summary", "direction", "header_from",
    "header_to", "header_cc", "header_date", "raw_sha256", "chain_seq", "chain_hash",
    "deleted_at",
)
CHILD_COLUMNS = {
    "recipients": ("event_id", "address", "domain", "received_at"),
    "parts": ("event_id", "path", "content_type", "detected_type", "filename", "extension",
              "size", "sha256"),
    "findings": ("event_id", "scanner", "verdict", "name", "score", "detail", "duration_ms"),
    "dlp_findings": ("event_id", "rule", "detector", "confidence", "count", "action", "location",
                     "evidence"),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Population:
    """Who writes to whom: a few busy addresses, a long tail, like real mail."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.domains = ["example.com", "example.org", "example.net"] + [
            f"d{i}.example" for i in range(2000)]
        self.local = [f"user{i}@{self.domains[i % 3]}" for i in range(5000)]
        self.remote = [f"p{i}@{self.domains[3 + i % 2000]}" for i in range(45000)]

    def address(self) -> str:
        r = self.rng.random()
        if r < 0.05:
            return self.local[self.rng.randrange(20)]  # the busy ones
        if r < 0.5:
            return self.local[self.rng.randrange(len(self.local))]
        return self.remote[self.rng.randrange(len(self.remote))]


def event_id(rng: random.Random, when: datetime) -> str:
    ms = int(when.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


Rows = list[dict[str, Any]]


def generate(n: int, seed: int = SEED) -> Iterator[tuple[Rows, dict[str, Rows]]]:
    rng = random.Random(seed)
    people = Population(rng)
    start = END - timedelta(days=DAYS)
    step = DAYS * 86400 / n
    for base in range(0, n, CHUNK):
        messages: Rows = []
        children: dict[str, Rows] = {k: [] for k in CHILD_COLUMNS}
        for i in range(base, min(n, base + CHUNK)):
            when = start + timedelta(seconds=i * step + rng.random() * step)
            eid = event_id(rng, when)
            sender = people.address() if rng.random() > 0.03 else ""
            rcpts = [people.address() for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1))]
            relay = rng.random() < 0.3
            local = not relay and rng.random() < 0.05
            ip = None if local else (f"192.0.2.{rng.randrange(256)}" if relay else
                                     f"{rng.randrange(1, 224)}.{rng.randrange(256)}."
                                     f"{rng.randrange(256)}.{rng.randrange(1, 255)}")
            r = rng.random()
            category, action = ("clean", "deliver")
            if r < 0.01:
                category, action = "virus", "quarantine"
            elif r < 0.08:
                category, action = "spam", "quarantine"
            elif r < 0.09:
                category, action = "policy", "reject"
            subject = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 7))).capitalize()
            atts = []
            if rng.random() < 0.15:
                ext, ctype = rng.choice(ATTACHMENTS)
                atts.append((f"{rng.choice(WORDS)}-{rng.randrange(1000)}.{ext}", ctype))
            size = rng.randrange(1_000, 200_000)
            msgid = f"<{eid}@mail.example.com>"
            sha = hashlib.sha256(eid.encode()).hexdigest()
            messages.append({
                "event_id": eid, "position": i + 1, "received_at": when,
                "host": f"mx{1 + i % 2}.example.com", "action": action, "category": category,
                "reason": category, "client_ip": ip, "client_host": None, "relay": relay,
                "auth_user": None, "sender": sender,
                "sender_domain": sender.rpartition("@")[2] if sender else "",
                "subject": subject, "message_id": msgid, "size": size, "sha256": sha,
                "attachments": ",".join(a[0] for a in atts), "parts_count": 1 + len(atts),
                "recipients_count": len(rcpts), "spam_score": round(rng.uniform(-2, 12), 1),
                "processing_ms": round(rng.uniform(1, 40), 3),
                "queue_status": "queued" if action == "deliver" else "n/a",
                "queue_exit_code": None,
                "summary": f"event={eid} action={action} category={category} reason={category} "
                           f"client={ip or 'local'} relay={'yes' if relay else 'no'} from=<{sender}> "
                           f"to={','.join(rcpts)} size={size} subject=\"{subject}\" msgid={msgid}",
                "direction": "outbound" if relay else ("local" if local else "inbound"),
                "header_from": sender, "header_to": ", ".join(rcpts), "header_cc": "",
                "header_date": when.strftime("%a, %d %b %Y %H:%M:%S +0000"), "raw_sha256": sha,
                "chain_seq": i // 2 + 1, "chain_hash": hashlib.sha256(sha.encode()).hexdigest(),
                "deleted_at": None,
            })
            for a in rcpts:
                children["recipients"].append({"event_id": eid, "address": a,
                                               "domain": a.rpartition("@")[2], "received_at": when})
            children["parts"].append({"event_id": eid, "path": "1", "content_type": "text/plain",
                                      "detected_type": "text/plain", "filename": None,
                                      "extension": None, "size": size // 2, "sha256": sha})
            for k, (name, ctype) in enumerate(atts, 2):
                children["parts"].append({"event_id": eid, "path": str(k), "content_type": ctype,
                                          "detected_type": ctype, "filename": name,
                                          "extension": name.rpartition(".")[2], "size": size // 2,
                                          "sha256": sha})
            children["findings"].append({"event_id": eid, "scanner": "clamav",
                                         "verdict": "virus" if category == "virus" else "clean",
                                         "name": f"Win.Trojan.Agent-{rng.randrange(50)}"
                                         if category == "virus" else "",
                                         "score": 0.0, "detail": "", "duration_ms": 3.0})
            if category == "spam":
                children["findings"].append({"event_id": eid, "scanner": "spamd", "verdict": "spam",
                                             "name": "BAYES_99", "score": 8.0, "detail": "",
                                             "duration_ms": 40.0})
            if rng.random() < 0.005:
                children["dlp_findings"].append({
                    "event_id": eid, "rule": rng.choice(["cards", "iban-eu", "ssn-us"]),
                    "detector": "payment_card", "confidence": "high", "count": 1,
                    "action": "monitor", "location": "body", "evidence": "4111 **** **** 1111"})
        yield messages, children


# -- loading ----------------------------------------------------------------------
def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLAlchemy's SQLite storage format
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def load(engine: Engine, n: int) -> dict[str, int]:
    counts = {"messages": 0, **{k: 0 for k in CHILD_COLUMNS}}
    pg = engine.dialect.name == "postgresql"
    t0 = time.perf_counter()
    for messages, children in generate(n):
        tables = [("messages", MESSAGE_COLUMNS, messages),
                  *((t, CHILD_COLUMNS[t], rows) for t, rows in children.items())]
        with engine.begin() as conn:
            for table, cols, rows in tables:
                if not rows:
                    continue
                counts[table] += len(rows)
                if pg:
                    raw = conn.connection.driver_connection
                    with raw.cursor() as cur, cur.copy(
                            f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row([row[c] for c in cols])
                else:
                    marks = ", ".join("?" for _ in cols)
                    conn.exec_driver_sql(
                        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                        [tuple(_sqlite_value(row[c]) for c in cols) for row in rows])
        done = counts["messages"]
        if done % 100_000 < CHUNK:
            log(f"  {done:>9,} messages ({done / (time.perf_counter() - t0):,.0f}/s)")
    return counts


# -- searching --------------------------------------------------------------------
def searches() -> list[tuple[str, Filters, int]]:
    """(label, filters, page) - what auditors ask, most selective to least."""
    now = END
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    return [
        ("newest 100, no filter", Filters(), 1),
        ("page 100 (offset 9,900)", Filters(), 100),
        ("--sender (busy address)", Filters(sender="user1@example.org"), 1),
        ("--sender (tail address) --since 30d", Filters(sender="p4242@d2242.example", since=month), 1),
        ("--recipient (busy address)", Filters(recipient="user2@example.net"), 1),
        ("--recipient '*@d7.example'", Filters(recipient="*@d7.example"), 1),
        ("--domain example.com --since 7d", Filters(domain="example.com", since=week), 1),
        ("--domain d123.example", Filters(domain="d123.example"), 1),
        ("--since 7d", Filters(since=week), 1),
        ("--since 30d --action quarantine", Filters(since=month, action="quarantine"), 1),
        ("--verdict virus", Filters(category="virus"), 1),
        ("--direction outbound --since 7d", Filters(direction="outbound", since=week), 1),
        ("--subject invoice --since 30d", Filters(subject="invoice", since=month), 1),
        ("--subject 'payroll review' (all time)", Filters(subject="payroll review"), 1),
        ("--attachment '*.exe'", Filters(attachment="*.exe"), 1),
        ("--attachment-type application/pdf --since 30d",
         Filters(attachment_type="application/pdf", since=month), 1),
        ("--client-ip 192.0.2.0/24 --since 7d", Filters(client_ip="192.0.2.0/24", since=week), 1),
        ("--client-ip 203.0.113.9", Filters(client_ip="203.0.113.9"), 1),
        ("--finding 'clamav:Win.Trojan*'", Filters(finding="clamav:Win.Trojan*"), 1),
        ("--dlp-rule cards", Filters(dlp_rule="cards"), 1),
        ("--message-id", Filters(message_id="<nobody@mail.example.com>"), 1),
    ]


def timed(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


ONLY: list[str] = []


def measure(engine: Engine, label: str) -> list[dict[str, Any]]:
    rows = []
    for name, filters, page in searches():
        if ONLY and not any(o in name for o in ONLY):
            continue
        def one(f: Filters = filters, p: int = page) -> int:
            audit.search(engine, f, limit=100, offset=(p - 1) * 100)
            return audit.count(engine, f)

        seconds, total = timed(one)
        rows.append({"search": name, "seconds": round(seconds, 4), "matches": total})
        log(f"  [{label}] {name:<52} {seconds * 1000:8.1f} ms  {total:>9,} matches")
    return rows


def bench_sqlite(n: int, work: Path, analyze: bool) -> dict[str, Any]:
    url = f"sqlite:///{work / 'audit.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    log(f"SQLite: loading {n:,} messages ...")
    t = time.perf_counter()
    counts = load(engine, n)
    out: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t, 1), "rows": counts,
                           "bytes": (work / "audit.db").stat().st_size}
    out["plain"] = measure(engine, "sqlite")
    if analyze:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        out["analyzed"] = measure(engine, "sqlite+analyze")
    engine.dispose()
    return out


def bench_postgres(n: int) -> dict[str, Any] | None:
    try:
        from qscan.testing import postgres as pg
    except ImportError:
        return None
    if not pg.available():
        log("PostgreSQL is not installed here: skipped")
        return None
    # In /tmp itself: the server runs as the postgres user, who cannot enter our work dir.
    base = Path(tempfile.mkdtemp(prefix="qscan-pg-bench-"))
    server = pg.start_server(base)
    try:
        url = server.url(server.create_database())
        db.upgrade(url)
        engine = db.make_engine(url)
        log(f"PostgreSQL: loading {n:,} messages ...")
        t = time.perf_counter()
        counts = load(engine, n)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        out: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t, 1), "rows": counts}
        out["analyzed"] = measure(engine, "postgresql")
        engine.dispose()
        return out
    finally:
        pg.stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.audit_search", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="messages to generate")
    ap.add_argument("--skip", default="", help="comma list: sqlite,postgresql")
    ap.add_argument("--no-analyze", action="store_true", help="SQLite: plain figures only")
    ap.add_argument("--only", action="append", default=[], help="time searches whose label "
                    "contains this text (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    ONLY[:] = args.only
    # SIGTERM unwinds like Ctrl-C, so the throw-away server and files are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    result: dict[str, Any] = {"rows": args.rows, "seed": SEED,
                              "when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "target_seconds": 1.0}
    try:
        if "sqlite" not in skip:
            result["sqlite"] = bench_sqlite(args.rows, work, not args.no_analyze)
        if "postgresql" not in skip:
            result["postgresql"] = bench_postgres(args.rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    slow = [(db_name, phase, r["search"], r["seconds"])
            for db_name in ("sqlite", "postgresql") if result.get(db_name)
            for phase in ("plain", "analyzed") if phase in result[db_name]
            for r in result[db_name][phase] if r["seconds"] >= 1.0]
    for db_name, phase, name, seconds in slow:
        log(f"SLOW: {db_name} ({phase}) {name}: {seconds:.2f} s")
    log(f"results: {args.out}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
