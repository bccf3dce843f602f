"""The web console on a million messages: ``python -m bench.web_console [--rows N]``.

Loads N summary rows (default 1,000,000; bench/audit_search.py's generator and bulk loader) into
a fresh SQLite database - and into a throw-away PostgreSQL server when one is installed - then
times the console's pages in process (Starlette's TestClient, so the figure is the server's work:
session, account, query, count, template, no network): the audit search's first page for the
common filters, a deep page (keyset), and the message view of a few messages (SQL side: the
generated rows have no stored copies). Best of three warm runs. Targets (issue 24): first page
<= 300 ms, message view <= 100 ms. Results: bench/results/web_console.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, select, text

from bench.audit_search import SEED, load, log
from compliance import accounts, db
from compliance.models import Message
from qscan.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "web_console.json"
PASSWORD = "bench password 1"
SEARCH_TARGET, MESSAGE_TARGET = 0.300, 0.100

# (label, query) - the first page, as the form sends it
SEARCHES = [
    ("no filter", {}),
    ("since 7d", {"since": "2026-11-18"}),
    ("sender (busy address)", {"sender": "user1@example.org"}),
    ("recipient (busy address)", {"recipient": "user2@example.net"}),
    ("domain example.com, since 7d", {"domain": "example.com", "since": "2026-11-18"}),
    ("action quarantine, since 30d", {"action": "quarantine", "since": "2026-10-26"}),
    ("verdict virus", {"verdict": "virus"}),
    ("subject invoice, since 30d", {"subject": "invoice", "since": "2026-10-26"}),
    ("attachment *.exe", {"attachment": "*.exe"}),
    ("client 192.0.2.0/24, since 7d", {"client_ip": "192.0.2.0/24", "since": "2026-11-18"}),
]


def timed(fn: Callable[[], Any], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def page_time(client: Any, path: str) -> float:
    """Best of three GETs of ``path`` (each must answer 200)."""
    return timed(lambda: client.get(path).raise_for_status())


def measure(engine: Engine, url: str, work: Path, label: str) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from qscan.web.app import create_app

    cfg = parse_config(f'data_dir = "{work}"\n[sql]\nurl = "{url}"\n[daemon]\nhostname = "bench"\n'
                       "[web]\nlogin_attempts = 100\n", work / "qscan.toml")
    for login, role, addrs in (("aud", "auditor", ()), ("usr", "user", ("user1@example.org",))):
        if accounts.get(engine, login) is None:
            accounts.add(engine, lambda ev: None, login, role, password=PASSWORD, addresses=addrs,
                         actor="bench", host="bench")
    app = create_app(cfg, engine=engine, secure_cookies=False)
    out: dict[str, Any] = {"search": [], "message": []}
    for login in ("aud", "usr"):
        client = TestClient(app)
        page = client.get("/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        signed_in = client.post("/login", data={"login": login, "password": PASSWORD, "csrf": token})
        assert signed_in.status_code == 200
        for name, query in SEARCHES:
            path = "/audit?" + urlencode(query)
            seconds = page_time(client, path)
            html = client.get(path).text
            found = re.search(r"<strong>([^<]*) matching message", html)
            row = {"as": login, "search": name, "seconds": round(seconds, 4),
                   "matches": found.group(1) if found else "?"}
            out["search"].append(row)
            log(f"  [{label}] {login:<4} {name:<34} {seconds * 1000:7.1f} ms  {row['matches']} matches")
        if login == "aud":
            html = client.get("/audit").text
            for _ in range(5):  # five pages deep by the Older link (keyset)
                older = re.search(r'href="(/audit\?[^"]*after=[^"]*)"', html)
                assert older, "no Older link"
                html = client.get(older.group(1).replace("&amp;", "&")).text
            deep = older.group(1).replace("&amp;", "&")
            seconds = page_time(client, deep)
            out["search"].append({"as": login, "search": "page 6 (keyset)", "seconds": round(seconds, 4)})
            log(f"  [{label}] {login:<4} {'page 6 (keyset)':<34} {seconds * 1000:7.1f} ms")
            with engine.connect() as conn:
                ids = list(conn.scalars(select(Message.event_id).order_by(Message.received_at.desc())
                                        .limit(3)))
            for event_id in ids:
                seconds = page_time(client, f"/message/{event_id}")
                out["message"].append({"event_id": event_id, "seconds": round(seconds, 4)})
                log(f"  [{label}] message view {event_id}  {seconds * 1000:7.1f} ms")
    return out


def bench_sqlite(n: int, work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / 'web.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    log(f"SQLite: loading {n:,} messages ...")
    load(engine, n)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    try:
        return measure(engine, url, work, "sqlite")
    finally:
        engine.dispose()


def bench_postgres(n: int, work: Path) -> dict[str, Any] | None:
    from qscan.testing import postgres as pg

    if not pg.available():
        log("PostgreSQL is not installed here: skipped")
        return None
    base = Path(tempfile.mkdtemp(prefix="qscan-pg-web-bench-"))
    server = pg.start_server(base)
    try:
        url = server.url(server.create_database())
        db.upgrade(url)
        engine = db.make_engine(url)
        log(f"PostgreSQL: loading {n:,} messages ...")
        load(engine, n)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        try:
            return measure(engine, url, work, "postgresql")
        finally:
            engine.dispose()
    finally:
        pg.stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.web_console", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="messages to generate")
    ap.add_argument("--skip", default="", help="comma list: sqlite,postgresql")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="web-bench-"))
    result: dict[str, Any] = {"rows": args.rows, "seed": SEED,
                              "when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "targets": {"search_first_page": SEARCH_TARGET, "message_view": MESSAGE_TARGET}}
    try:
        if "sqlite" not in skip:
            result["sqlite"] = bench_sqlite(args.rows, work)
        if "postgresql" not in skip:
            result["postgresql"] = bench_postgres(args.rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    slow = [f"{name}: {r['as']} {r['search']} {r['seconds']:.3f} s"
            for name in ("sqlite", "postgresql") if result.get(name)
            for r in result[name]["search"] if r["seconds"] > SEARCH_TARGET]
    slow += [f"{name}: message view {r['seconds']:.3f} s"
             for name in ("sqlite", "postgresql") if result.get(name)
             for r in result[name]["message"] if r["seconds"] > MESSAGE_TARGET]
    for line in slow:
        log("SLOW: " + line)
    log(f"results: {args.out}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
