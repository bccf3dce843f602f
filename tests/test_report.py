"""`qscan report` from a generated week of events, on SQLite and PostgreSQL.

The events go through the real summaries consumer (SummarySink) into the SQL
store; the figures in the HTML must equal counts taken from the SQL tables
directly (and from the generated events, for the per-day buckets), and every
chart's bars must carry exactly those counts, per bucket.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from compliance.db import make_engine
from compliance.summaries import SummarySink
from ingest.event import Action, Category, Finding, MessageScanned, Timings
from ingest.log import LogRecord
from qscan.cli import cli
from qscan.ops.report import (
    CHARTS,
    MAX_BARS,
    STEPS,
    bucket_label,
    choose_step,
    data_window,
    parse_since,
    percentile,
)
from tests.factories import make_event

MIX = [  # (action, category, reason, finding, attachment) and how often
    ((Action.DELIVER, Category.CLEAN, "clean", None, None), 60),
    ((Action.QUARANTINE, Category.SPAM, "spam", ("spamd", "BAYES_99"), None), 15),
    ((Action.REJECT, Category.VIRUS, "virus", ("clamd", "Eicar-Signature"), ("eicar.com", "application/x-msdos-program")), 5),
    ((Action.QUARANTINE, Category.POLICY, "double-extension", ("internal", "double-extension"),
      ("invoice.pdf.exe", "application/x-dosexec")), 8),
    ((Action.REJECT, Category.POLICY, "bad-attachment", ("internal", "bad-attachment"), ("run.vbs", "text/vbscript")), 4),
    ((Action.QUARANTINE, Category.DLP, "dlp", ("dlp", "credit-cards"), ("cards.xlsx", "application/vnd.ms-excel")), 3),
    ((Action.QUARANTINE, Category.MALFORMED, "unparseable", ("mime", "unparseable"), None), 2),
    # not blocked: a temp-failed message (the sender retries) and spam tagged and delivered
    ((Action.TEMPFAIL, Category.CLEAN, "scanner-down", None, ("report.docx", "application/msword")), 4),
    ((Action.DELIVER, Category.SPAM, "spam", ("spamd", "BAYES_80"), ("offer.zip", "application/zip")), 6),
]


def week_of_events(now: datetime, n: int = 400, seed: int = 11) -> list[MessageScanned]:
    rnd = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    events = []
    for _ in range(n):
        action, category, reason, finding, attachment = rnd.choice(kinds)
        when = now - timedelta(seconds=rnd.randint(120, 7 * 86400 - 3600))
        relay = rnd.random() < 0.3
        ip = None if not relay and rnd.random() < 0.1 else "192.0.2.10"
        findings = [Finding(scanner="size", version="1", verdict=Category.CLEAN, duration_ms=0.1)]
        if finding:
            verdict = Category.CLEAN if category == Category.CLEAN else category
            findings.append(Finding(scanner=finding[0], version="1", verdict=verdict, name=finding[1],
                                    duration_ms=round(rnd.uniform(1, 200), 2)))
        ev = make_event(action=action, category=category, reason=reason, client_ip=ip, relay=relay,
                        attachments=[(attachment[0], attachment[1], 1234)] if attachment else None,
                        findings=findings, when=when,
                        timings=Timings(total_ms=round(rnd.uniform(2, 500), 3)))
        events.append(ev)
    events.sort(key=lambda e: e.time)
    return events


class Tables(HTMLParser):
    """Every <table id=...>: a list of rows, each a list of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.ids: dict[str, str] = {}
        self.last_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.current = a.get("id") or ""
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.tables[self.current].append([])
        elif tag in ("td", "th") and self.current is not None:
            self.cell = []
        if a.get("id") and tag != "table":
            self.last_id = a["id"]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.tables[self.current][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None
        elif self.last_id and tag != "table":
            self.last_id = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if self.last_id:
            self.ids[self.last_id] = self.ids.get(self.last_id, "") + data


SVG = "{http://www.w3.org/2000/svg}"


def svg_bars(path: Path) -> list[dict[str, str]]:
    """Every bar of a chart (a well-formed SVG document): its series, label and value."""
    root = ElementTree.parse(path).getroot()
    assert root.tag == f"{SVG}svg" and int(root.get("width", "0")) >= 800
    assert not list(root.iter(f"{SVG}polyline")) and not list(root.iter(f"{SVG}path"))  # bars, never a line
    return [{"series": r.get("data-series", ""), "label": r.get("data-label", ""), "value": r.get("data-value", "")}
            for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def body(tables: Tables, table_id: str) -> dict[str, list[str]]:
    rows = tables.tables[table_id][1:]  # skip the header row
    return {r[0]: r[1:] for r in rows}


@pytest.mark.integration
def test_report_numbers_match_sql(migrated_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    events = week_of_events(now)
    sink = SummarySink(migrated_url)
    try:
        for i in range(0, len(events), 100):  # the consumer's batches
            chunk = events[i:i + 100]
            sink.apply([LogRecord(i + k + 1, ev) for k, ev in enumerate(chunk)], i + len(chunk))
    finally:
        sink.close()
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nhostname = "mx.report.example"\n')
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--since", "7d", "--out", str(out),
                                      "--url", migrated_url])
    assert result.exit_code == 0, result.output
    assert f"{len(events)} messages" in result.output

    # a week: a bar per hour, each the messages received in that hour, by direction
    step = STEPS["hour"]
    traffic = svg_bars(out / "traffic.svg")
    per_hour = Counter((bucket_label(int(ev.time.timestamp()) // step * step, step), str(ev.client.direction))
                       for ev in events)
    assert {(b["label"], b["series"]): int(b["value"]) for b in traffic} == per_hour
    assert "Messages per hour" in (out / "traffic.svg").read_text()
    blocked_bars = Counter()
    for b in svg_bars(out / "verdicts.svg"):
        blocked_bars[b["series"]] += int(b["value"])
    for name in CHARTS:
        assert svg_bars(out / name), name  # something drawn on every chart

    page = (out / "index.html").read_text()
    for name in CHARTS:
        assert f'src="{name}"' in page
    tables = Tables()
    tables.feed(page)
    assert tables.ids["total"] == str(len(events))

    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            by = {col: dict(conn.execute(text(f"SELECT {col}, COUNT(*) FROM messages GROUP BY {col}")).all())
                  for col in ("direction", "category", "action")}
            ext = dict(conn.execute(text(
                "SELECT p.extension, COUNT(DISTINCT p.event_id) FROM parts p JOIN messages m "
                "ON m.event_id = p.event_id WHERE m.action IN ('quarantine', 'reject', 'drop') "
                "AND p.filename IS NOT NULL "
                "GROUP BY p.extension")).all())
            rules = {(s, n): c for s, n, c in conn.execute(text(
                "SELECT scanner, name, COUNT(*) FROM findings WHERE verdict <> 'clean' AND name <> '' "
                "GROUP BY scanner, name")).all()}
            total_ms = sorted(float(v) for (v,) in conn.execute(text("SELECT processing_ms FROM messages")))
            blocked = dict(conn.execute(text(
                "SELECT category, COUNT(*) FROM messages WHERE action IN ('quarantine', 'reject', 'drop') "
                "GROUP BY category")).all())
            (tagged,) = conn.execute(text(
                "SELECT COUNT(*) FROM messages WHERE action = 'deliver' AND category <> 'clean'")).one()
            by_scanner: dict[str, list[float]] = {}
            for s, ms in conn.execute(text("SELECT scanner, duration_ms FROM findings")):
                by_scanner.setdefault(str(s), []).append(float(ms))
    finally:
        engine.dispose()

    totals = body(tables, "totals")
    for col, counts in by.items():
        for key, n in counts.items():
            assert totals[f"{col}: {key}"] == [str(n)], (col, key)
    assert totals["total"] == [str(len(events))]
    assert sum(by["direction"].values()) == len(events)

    daily = body(tables, "daily")
    head = tables.tables["daily"][0]
    expected_days = Counter(ev.time.strftime("%Y-%m-%d") for ev in events)
    for day, n in expected_days.items():
        assert daily[day][head.index("total") - 1] == str(n), day
    spam_days = Counter(ev.time.strftime("%Y-%m-%d") for ev in events if ev.category == Category.SPAM)
    for day, n in spam_days.items():
        assert daily[day][head.index("spam") - 1] == str(n)
    assert sum(int(r[head.index("total") - 1]) for r in daily.values()) == len(events)

    attachments = body(tables, "attachments")
    assert {k: int(v[0]) for k, v in attachments.items()} == ext
    assert "docx" not in attachments and "zip" not in attachments  # tempfail, tagged: not blocked
    assert ext  # and the blocked ones are there

    blocks = body(tables, "blocked")  # day -> blocked spam, virus, policy, dlp, malformed, tagged
    bhead = tables.tables["blocked"][0]
    for cat in ("spam", "virus", "policy", "dlp", "malformed"):
        col = bhead.index(f"blocked {cat}") - 1
        assert sum(int(r[col]) for r in blocks.values()) == blocked.get(cat, 0), cat
        assert blocked_bars[cat] == blocked.get(cat, 0), cat  # the chart's bars add up the same
    assert blocked_bars["tagged, delivered"] == tagged
    assert sum(int(r[bhead.index("tagged, delivered") - 1]) for r in blocks.values()) == tagged > 0
    assert blocked.get("spam", 0) < by["category"]["spam"]  # tagged spam is not counted as blocked
    fired = body(tables, "rules")  # rule -> scanner, verdict, messages
    assert {(v[0], k): int(v[2]) for k, v in fired.items()} == rules

    scan_days = body(tables, "scan-daily")
    assert sum(int(v[3]) for v in scan_days.values()) == len(events)
    scanners = body(tables, "scan-scanners")
    assert int(scanners["size"][3]) == len(events)
    assert max(float(v[2]) for v in scan_days.values()) <= percentile(total_ms, 100)
    # the percentiles the database picks are the nearest-rank ones, day by day and per scanner
    per_day: dict[str, list[float]] = {}
    for ev in events:
        per_day.setdefault(ev.time.strftime("%Y-%m-%d"), []).append(ev.timings.total_ms)
    for day, values in per_day.items():
        values.sort()
        assert [float(x) for x in scan_days[day][:3]] == [round(percentile(values, p), 1) for p in (50, 90, 99)]
        assert int(scan_days[day][3]) == len(values)
    for s, values in by_scanner.items():
        values.sort()
        assert [float(x) for x in scanners[s][:3]] == [round(percentile(values, p), 1) for p in (50, 90, 99)]


def test_empty_store_still_renders(migrated_url: str, tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--since", "36h", "--out", str(out),
                                      "--url", migrated_url])
    assert result.exit_code == 0, result.output
    assert "0 messages" in result.output
    for name in CHARTS:
        assert svg_bars(out / name) == [] and "no data in this period" in (out / name).read_text()
    tables = Tables()
    tables.feed((out / "index.html").read_text())
    assert len(tables.tables["daily"]) - 1 in (2, 3)  # 36 hours touch two or three UTC days


def test_missing_sqlite_store_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--out", str(tmp_path / "r"),
                                      "--url", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and f"no SQLite store at {missing} (--url" in result.output
    assert not missing.exists() and not (tmp_path / "r").exists()
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "(sql.url;" in result.output
    assert not (tmp_path / "qscan.db").exists()


def test_bad_period_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--since", "7x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--since" in result.output and "7d" in result.output


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from("mhdw"))
def test_parse_since_roundtrip(n: int, unit: str) -> None:
    seconds = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_since(f"{n}{unit}") == timedelta(seconds=n * seconds)


@given(st.text(max_size=8))
def test_parse_since_rejects_or_parses(text_: str) -> None:
    try:
        period = parse_since(text_)
    except ValueError as exc:
        assert "not a period" in str(exc)
    else:
        assert period >= timedelta(minutes=1)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
       st.sampled_from([50, 90, 99, 100]))
def test_percentile_is_a_member_and_ordered(values: list[float], p: int) -> None:
    values.sort()
    v = percentile(values, p)
    assert v in values
    assert sum(1 for x in values if x <= v) >= p / 100 * len(values)


def test_the_bucket_follows_the_period() -> None:
    assert choose_step(timedelta(minutes=10)) == STEPS["minute"]
    assert choose_step(timedelta(hours=3)) == STEPS["minute"]  # 180 bars
    assert choose_step(timedelta(hours=36)) == STEPS["15min"]
    assert choose_step(timedelta(days=7)) == STEPS["hour"]
    assert choose_step(timedelta(days=31)) == STEPS["6h"]
    assert choose_step(timedelta(days=365)) == STEPS["week"]
    assert choose_step(timedelta(days=2), "day") == STEPS["day"]


@given(st.integers(min_value=60, max_value=10 * 365 * 86400))
def test_auto_buckets_never_exceed_the_bar_budget(seconds: int) -> None:
    step = choose_step(timedelta(seconds=seconds))
    assert seconds / step <= MAX_BARS or step == STEPS["week"]
    finer = [s for s in STEPS.values() if s < step]
    assert all(seconds / s > MAX_BARS for s in finer)  # and it is the finest that fits


def test_default_period_is_the_datas_own(migrated_url: str, tmp_path: Path) -> None:
    """A burst of test mail 40 minutes ago is drawn over its own minutes, not as a spike in a week."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = [make_event(when=now - timedelta(minutes=40, seconds=-i * 20)) for i in range(9)]  # 3 minutes
    events.append(make_event(when=now - timedelta(days=40)))  # older than the default look-back
    sink = SummarySink(migrated_url)
    try:
        sink.apply([LogRecord(i + 1, ev) for i, ev in enumerate(events)], len(events))
    finally:
        sink.close()
    engine = make_engine(migrated_url)
    try:
        start, end = data_window(engine, now)
    finally:
        engine.dispose()
    assert start == (now - timedelta(minutes=40)).replace(second=0) and end == now
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["-c", str(config), "report", "--out", str(out), "--url", migrated_url])
    assert result.exit_code == 0, result.output
    assert "9 messages" in result.output
    bars = svg_bars(out / "traffic.svg")
    assert "Messages per minute" in (out / "traffic.svg").read_text()
    assert sum(int(b["value"]) for b in bars) == 9 and len({b["label"] for b in bars}) >= 3
