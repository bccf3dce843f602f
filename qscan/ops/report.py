"""`qscan report`: traffic graphs from the SQL store (Qmail-Scanner's qs2mrtg, done today's way).

Figures come from the ``messages``, ``parts`` and ``findings`` tables the
summaries consumer fills, on SQLite or PostgreSQL: counts are grouped in SQL
(one dialect-specific expression buckets times, in UTC); percentiles are exact
nearest-rank values picked by the database too (window functions, on both
dialects), so memory stays bounded however much mail a site has: only three
rows per day and per scanner come back.

The charts tell what happened, not a shape: counts per bucket are bars (a line
would draw a ramp between two buckets that had no mail), the bucket size follows
the period shown (a minute for the last hour, an hour for a week, a day for a
month: at most ``MAX_BARS`` bars), and without ``--since`` the period is the
data's own (its first message in the last 31 days, to now), not a fixed week in
which yesterday's test mail is one spike at the right edge. Charts are SVG
(``qscan.ops.svg``: no plotting library) and one static ``index.html`` shows
them beside the same figures in tables, so a number can be read off rather than
guessed from a bar; each bar also carries its value (hover).
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, Integer, and_, cast, extract, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from compliance.models import Finding, Message, Part
from qscan.ops.svg import Series, bars, hbars
from scanners.direction import DIRECTIONS

BLOCKED_CATEGORIES = ("spam", "virus", "policy", "dlp", "malformed")
CATEGORIES = ("clean", *BLOCKED_CATEGORIES)
ACTIONS = ("deliver", "quarantine", "reject", "tempfail", "drop")
BLOCKING_ACTIONS = ("quarantine", "reject", "drop")  # tempfail: the sender retries; not blocked
BLOCKED_COLUMNS = (*BLOCKED_CATEGORIES, "tagged")  # tagged: delivered, but not clean (spam headers)
PERCENTILES = (50, 90, 99)
TOP = 15
# Bucket sizes a chart may use, finest first; "auto" takes the finest that needs at most MAX_BARS.
STEPS = {"minute": 60, "5min": 300, "15min": 900, "hour": 3600, "6h": 6 * 3600, "day": 86400,
         "week": 7 * 86400}
MAX_BARS = 180
WEEK_START = 4 * 86400  # buckets of a week start on Mondays (1970-01-05), not on epoch Thursdays
DEFAULT_LOOKBACK = timedelta(days=31)  # without --since: the data's first message this far back
MIN_PERIOD = timedelta(minutes=10)
COLORS = {"inbound": "#1f77b4", "outbound": "#2ca02c", "local": "#7f7f7f", "clean": "#2ca02c",
          "spam": "#ff7f0e", "virus": "#d62728", "policy": "#9467bd", "dlp": "#8c564b",
          "malformed": "#e377c2", "tagged": "#c7c7c7"}


def parse_since(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``2w`` -> a timedelta (the report covers up to now)."""
    units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ValueError(f"not a period: {text!r} (use e.g. 90m, 36h, 7d, 2w)")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def epoch_bucket(engine: Engine, column: InstrumentedAttribute[datetime], step: int) -> ColumnElement[int]:
    """The UTC start of ``column``'s bucket of ``step`` seconds, in seconds since the epoch."""
    if engine.dialect.name == "postgresql":
        seconds: ColumnElement[int] = cast(func.floor(extract("epoch", column)), BigInteger)
    elif engine.dialect.name == "sqlite":  # stored as UTC text by the summaries consumer
        seconds = cast(func.strftime("%s", column), Integer)
    else:
        raise ValueError(f"qscan report supports SQLite and PostgreSQL, not {engine.dialect.name}")
    offset = WEEK_START if step == STEPS["week"] else 0
    return ((seconds - offset) // step) * step + offset


def bucket_starts(start: datetime, end: datetime, step: int) -> list[int]:
    """Every bucket start (epoch seconds) in [start, end], so quiet buckets show as zero, not a gap."""
    offset = WEEK_START if step == STEPS["week"] else 0
    first = (int(start.timestamp()) - offset) // step * step + offset
    return list(range(first, int(end.timestamp()) + 1, step))


def bucket_label(epoch: int, step: int) -> str:
    t = datetime.fromtimestamp(epoch, UTC)
    return t.strftime("%Y-%m-%d %H:%M" if step < STEPS["day"] else "%Y-%m-%d")


# Tick spacings on a time axis (seconds), round ones only: 10:00, 10:15, midnight, Mondays...
TICKS = (60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
         7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400)
MAX_TICKS = 12


def tick_labels(starts: list[int], step: int) -> list[str]:
    """The label under each bucket: at round times only (at most MAX_TICKS), else "".

    The time of day when the period is within one day, the date (and time) beyond."""
    if not starts:
        return []
    span = starts[-1] - starts[0] + step
    every = next((t for t in TICKS if t >= step and t % step == 0 and span / t <= MAX_TICKS), TICKS[-1])
    offset = WEEK_START if every % STEPS["week"] == 0 else 0
    with_date = span > 86400
    out = []
    for b in starts:
        if (b - offset) % every:
            out.append("")
            continue
        t = datetime.fromtimestamp(b, UTC)
        if every >= 86400 or (with_date and t.hour == 0 and t.minute == 0):
            out.append(t.strftime("%m-%d"))
        else:
            out.append(t.strftime("%m-%d %H:%M" if with_date and every >= 6 * 3600 else "%H:%M"))
    return out


def day_label(engine: Engine, column: InstrumentedAttribute[datetime]) -> ColumnElement[str]:
    """The UTC day ('2026-11-25') of ``column``, computed by the database (the per-day tables)."""
    if engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    if engine.dialect.name == "sqlite":  # stored as UTC text by the summaries consumer
        return func.strftime("%Y-%m-%d", column)
    raise ValueError(f"qscan report supports SQLite and PostgreSQL, not {engine.dialect.name}")


def days_between(start: datetime, end: datetime) -> list[str]:
    """Every UTC day in [start, end], so quiet days show as zero, not as a gap."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (what `p99` means to an operator)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(values)))
    return float(values[min(rank, len(values)) - 1])


@dataclass
class ReportData:
    start: datetime
    end: datetime
    step: int  # seconds per bucket of the traffic and blocked-mail charts
    traffic: dict[int, dict[str, int]] = field(default_factory=dict)  # bucket start -> direction -> n
    blocked_buckets: dict[int, dict[str, int]] = field(default_factory=dict)  # bucket start -> column -> n
    daily: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> column -> n
    totals: dict[str, dict[str, int]] = field(default_factory=dict)  # direction/category/action
    blocked: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> category/tagged -> n
    attachments: list[tuple[str, int]] = field(default_factory=list)  # blocked ext -> messages
    rules: list[tuple[str, str, str, int]] = field(default_factory=list)  # scanner, rule, verdict, n
    scan_daily: dict[str, dict[str, float]] = field(default_factory=dict)  # day -> p50/p90/p99/n
    scan_scanners: dict[str, dict[str, float]] = field(default_factory=dict)  # scanner -> p..

    @property
    def messages(self) -> int:
        return sum(self.totals.get("direction", {}).values())


def gather(engine: Engine, start: datetime, end: datetime, step: int) -> ReportData:
    data = ReportData(start=start, end=end, step=step)
    window = and_(Message.received_at >= start, Message.received_at <= end)
    slot = epoch_bucket(engine, Message.received_at, step)
    day = day_label(engine, Message.received_at)
    data.traffic = {b: {d: 0 for d in DIRECTIONS} for b in bucket_starts(start, end, step)}
    data.blocked_buckets = {b: dict.fromkeys(BLOCKED_COLUMNS, 0) for b in bucket_starts(start, end, step)}
    data.daily = {b: defaultdict(int) for b in days_between(start, end)}
    data.blocked = {b: dict.fromkeys(BLOCKED_COLUMNS, 0) for b in days_between(start, end)}
    with engine.connect() as conn:
        stmt1 = (select(slot, Message.direction, Message.category, Message.action, func.count()).where(window)
                 .group_by(slot, Message.direction, Message.category, Message.action))
        for b, direc, cat, action, n in conn.execute(stmt1):
            data.traffic.setdefault(int(b), {d: 0 for d in DIRECTIONS})[direc] += int(n)
            column = blocked_column(str(action), str(cat))
            if column is not None:
                data.blocked_buckets.setdefault(int(b), dict.fromkeys(BLOCKED_COLUMNS, 0))[column] += int(n)
        totals: dict[str, dict[str, int]] = {"direction": defaultdict(int), "category": defaultdict(int),
                                             "action": defaultdict(int)}
        stmt = (select(day, Message.direction, Message.category, Message.action, func.count())
                .where(window).group_by(day, Message.direction, Message.category, Message.action))
        for d, direc, cat, action, n in conn.execute(stmt):
            row = data.daily.setdefault(d, defaultdict(int))
            for key in (direc, cat, f"action:{action}", "total"):
                row[key] += int(n)
            totals["direction"][direc] += int(n)
            blocked = data.blocked.setdefault(d, dict.fromkeys(BLOCKED_COLUMNS, 0))
            column = blocked_column(action, cat)
            if column is not None:
                blocked[column] += int(n)
            totals["category"][cat] += int(n)
            totals["action"][action] += int(n)
        data.totals = {k: dict(v) for k, v in totals.items()}
        data.daily = {k: dict(v) for k, v in sorted(data.daily.items())}
        data.blocked = dict(sorted(data.blocked.items()))

        ext = func.coalesce(Part.extension, Part.content_type)
        stmt2 = (select(ext, func.count(func.distinct(Part.event_id)))
                 .join(Message, Message.event_id == Part.event_id)
                 .where(window, Message.action.in_(BLOCKING_ACTIONS), Part.filename.is_not(None))
                 .group_by(ext).order_by(func.count(func.distinct(Part.event_id)).desc(), ext).limit(TOP))
        data.attachments = [(str(e), int(n)) for e, n in conn.execute(stmt2)]

        stmt3 = (select(Finding.scanner, Finding.name, Finding.verdict, func.count())
                 .join(Message, Message.event_id == Finding.event_id)
                 .where(window, Finding.verdict != "clean", Finding.name != "")
                 .group_by(Finding.scanner, Finding.name, Finding.verdict)
                 .order_by(func.count().desc(), Finding.scanner, Finding.name).limit(TOP))
        data.rules = [(str(s), str(r), str(v), int(n)) for s, r, v, n in conn.execute(stmt3)]

        data.scan_daily = percentiles_by(conn, day, Message.processing_ms, select(Message).where(window))
        data.scan_scanners = percentiles_by(
            conn, Finding.scanner, Finding.duration_ms,
            select(Finding).join(Message, Message.event_id == Finding.event_id).where(window))
    return data


def blocked_column(action: str, category: str) -> str | None:
    """The blocked-mail column a message counts in: its category when it was kept from the
    recipient, "tagged" when delivered though not clean (spam headers), else none."""
    if action in BLOCKING_ACTIONS and category in BLOCKED_CATEGORIES:
        return category
    if action == "deliver" and category != "clean":
        return "tagged"
    return None


def percentiles_by(conn: Any, group: Any, value: Any, base: Any) -> dict[str, dict[str, float]]:
    """Nearest-rank p50/p90/p99 and the count of ``value`` per ``group``, picked in SQL.

    ``ROW_NUMBER()`` and ``COUNT(*)`` over each group (SQLite >= 3.25 and PostgreSQL) number
    the sorted values; only the rows at rank ceil(p/100 * n) come back, so the database
    sorts (spilling to disk if it must) and Python holds three rows per group. NULL counts
    as 0 ms, as before.
    """
    v = func.coalesce(value, 0.0)
    ranked = base.with_only_columns(
        group.label("g"), v.label("v"),
        func.row_number().over(partition_by=group, order_by=v).label("rn"),
        func.count().over(partition_by=group).label("n"),
    ).subquery()

    def rank(p: int) -> Any:  # ceil(p * n / 100) in integer arithmetic (n >= 1, so rank >= 1)
        return (ranked.c.n * p + 99) // 100

    stmt = (select(ranked.c.g, ranked.c.v, ranked.c.rn, ranked.c.n)
            .where(or_(*[ranked.c.rn == rank(p) for p in PERCENTILES])))
    out: dict[str, dict[str, float]] = {}
    for g, val, rn, n in conn.execute(stmt):
        row = out.setdefault(str(g), {"n": int(n)})
        for p in PERCENTILES:
            if int(rn) == (int(n) * p + 99) // 100:
                row[f"p{p}"] = round(float(val), 1)
    return {g: {**{f"p{p}": row[f"p{p}"] for p in PERCENTILES}, "n": row["n"]}
            for g, row in sorted(out.items())}


# -- charts ---------------------------------------------------------------------------
def _step_name(step: int) -> str:
    return next((name for name, seconds in STEPS.items() if seconds == step), f"{step}s")


def _per(step: int) -> str:
    return {"minute": "minute", "5min": "5 minutes", "15min": "15 minutes", "hour": "hour",
            "6h": "6 hours", "day": "day", "week": "week"}.get(_step_name(step), f"{step} s")


def chart_traffic(data: ReportData) -> str:
    starts = list(data.traffic)
    return bars(f"Messages per {_per(data.step)} by direction (UTC)",
                [bucket_label(b, data.step) for b in starts],
                [Series(d, COLORS[d], [data.traffic[b][d] for b in starts]) for d in DIRECTIONS],
                ylabel="messages", tick_labels=tick_labels(starts, data.step), tick_at_edge=True)


def chart_verdicts(data: ReportData) -> str:
    starts = list(data.blocked_buckets)
    return bars(f"Mail blocked per {_per(data.step)} (quarantined, rejected, dropped) by category; "
                "tagged but delivered on top (UTC)",
                [bucket_label(b, data.step) for b in starts],
                [Series("tagged, delivered" if c == "tagged" else c, COLORS[c],
                        [data.blocked_buckets[b][c] for b in starts], hatch=c == "tagged")
                 for c in BLOCKED_COLUMNS],
                ylabel="messages", tick_labels=tick_labels(starts, data.step), tick_at_edge=True)


def chart_scan_times(data: ReportData) -> str:
    days = list(data.scan_daily)
    shades = ("#9ecae1", "#4292c6", "#08519c")
    return bars("Processing time per message by day: p50, p90, p99 (ms)", days,
                [Series(f"p{p}", c, [data.scan_daily[d][f"p{p}"] for d in days])
                 for p, c in zip(PERCENTILES, shades, strict=True)],
                ylabel="ms", stacked=False, integer=False, tick_labels=[d[5:] for d in days])


def chart_scanner_times(data: ReportData) -> str:
    scanners = list(data.scan_scanners)
    shades = ("#fdae6b", "#f16913", "#a63603")
    return bars("Time in each scanner per message: p50, p90, p99 (ms)", scanners,
                [Series(f"p{p}", c, [data.scan_scanners[s][f"p{p}"] for s in scanners])
                 for p, c in zip(PERCENTILES, shades, strict=True)],
                ylabel="ms", stacked=False, integer=False)


CHARTS = ("traffic.svg", "verdicts.svg", "attachments.svg", "rules.svg", "scan_times.svg",
          "scanner_times.svg")


def render_charts(data: ReportData, out: Path) -> list[str]:
    """Writes every chart into ``out``; returns their file names (``CHARTS``)."""
    drawn = {
        "traffic.svg": chart_traffic(data),
        "verdicts.svg": chart_verdicts(data),
        "attachments.svg": hbars("Top attachment types in blocked mail (quarantined, rejected, dropped)",
                                 data.attachments, "#9467bd", xlabel="messages"),
        "rules.svg": hbars("Top rules and signatures fired", [(f"{s}: {r}", n) for s, r, _, n in data.rules],
                           "#d62728", xlabel="messages"),
        "scan_times.svg": chart_scan_times(data),
        "scanner_times.svg": chart_scanner_times(data),
    }
    for name, svg in drawn.items():
        (out / name).write_text(svg, encoding="utf-8")
    return list(drawn)


# -- the page -------------------------------------------------------------------------
def _table(table_id: str, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    e = html.escape
    out = [f'<table id="{e(table_id)}"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for row in rows:
        cells = [f'<th scope="row">{e(str(row[0]))}</th>']
        cells += [f"<td>{e(str(v))}</td>" for v in row[1:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(data: ReportData, host: str, generated: datetime) -> str:
    e = html.escape
    daily_cols = [*DIRECTIONS, *CATEGORIES, "total"]
    totals_rows = ([("direction: " + d, data.totals.get("direction", {}).get(d, 0)) for d in DIRECTIONS]
                   + [("category: " + c, data.totals.get("category", {}).get(c, 0)) for c in CATEGORIES]
                   + [("action: " + a, data.totals.get("action", {}).get(a, 0)) for a in ACTIONS]
                   + [("total", data.messages)])
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>qscan report {e(host)}</title>",
        "<style>body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em}"
        "td{text-align:right}thead th{background:#eee}img{max-width:100%;border:1px solid #ddd}"
        "</style></head><body>",
        f"<h1>qscan report: {e(host)}</h1>",
        f"<p>{e(data.start.strftime('%Y-%m-%d %H:%M'))} to {e(data.end.strftime('%Y-%m-%d %H:%M'))} UTC, "
        f"generated {e(generated.strftime('%Y-%m-%d %H:%M'))} UTC from the SQL store. "
        f"<strong id=\"total\">{data.messages}</strong> messages.</p>",
        "<h2>Totals</h2>", _table("totals", ["", "messages"], totals_rows),
        "<h2>Traffic</h2>", '<img src="traffic.svg" alt="messages per period by direction">',
        '<img src="verdicts.svg" alt="blocked mail per period by category">',
        f"<details><summary>per {e(_per(data.step))}: the figures of both charts "
        "(periods with mail)</summary>",
        _table("traffic", ["period (UTC)", *DIRECTIONS, *[f"blocked {c}" for c in BLOCKED_CATEGORIES],
                           "tagged, delivered"],
               [(bucket_label(b, data.step), *[row[d] for d in DIRECTIONS],
                 *[data.blocked_buckets[b][c] for c in BLOCKED_COLUMNS])
                for b, row in data.traffic.items() if any(row.values())]),
        "</details>",
        _table("blocked", ["day", *[f"blocked {c}" for c in BLOCKED_CATEGORIES], "tagged, delivered"],
               [(d, *[row.get(c, 0) for c in BLOCKED_COLUMNS]) for d, row in data.blocked.items()]),
        _table("daily", ["day", *daily_cols],
               [(d, *[row.get(c, 0) for c in daily_cols]) for d, row in data.daily.items()]),
        "<h2>Blocked attachment types</h2>", '<img src="attachments.svg" alt="top blocked attachment types">',
        _table("attachments", ["extension or type", "messages"], data.attachments),
        "<h2>Rules and signatures fired</h2>", '<img src="rules.svg" alt="top rules fired">',
        _table("rules", ["rule", "scanner", "verdict", "messages"],
               [(r, s, v, n) for s, r, v, n in data.rules]),
        "<h2>Scan time</h2>", '<img src="scan_times.svg" alt="processing time percentiles per day">',
        '<img src="scanner_times.svg" alt="processing time percentiles per scanner">',
        _table("scan-daily", ["day", "p50 ms", "p90 ms", "p99 ms", "messages"],
               [(d, v["p50"], v["p90"], v["p99"], int(v["n"])) for d, v in data.scan_daily.items()]),
        _table("scan-scanners", ["scanner", "p50 ms", "p90 ms", "p99 ms", "runs"],
               [(s, v["p50"], v["p90"], v["p99"], int(v["n"])) for s, v in data.scan_scanners.items()]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def choose_step(period: timedelta, unit: str = "auto") -> int:
    """Seconds per bucket: ``unit`` by name, or (auto) the finest that shows ``period`` in at most
    ``MAX_BARS`` bars, from a minute up to a week."""
    if unit != "auto":
        return STEPS[unit]
    seconds = period.total_seconds()
    return next((step for step in STEPS.values() if seconds / step <= MAX_BARS), STEPS["week"])


def window(period: timedelta, now: datetime | None = None) -> tuple[datetime, datetime]:
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return end - period, end


def data_window(engine: Engine, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The default period: from the first message of the last ``DEFAULT_LOOKBACK`` to now (at least
    ``MIN_PERIOD``), so the charts span the mail there is, not a fixed week around one burst."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    with engine.connect() as conn:
        first = conn.execute(select(func.min(Message.received_at))
                             .where(Message.received_at >= end - DEFAULT_LOOKBACK)).scalar()
    if first is None:
        return end - MIN_PERIOD, end
    first = first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
    return min(first.replace(second=0, microsecond=0), end - MIN_PERIOD), end
