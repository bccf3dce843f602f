"""`qscan report`: traffic graphs from the SQL store (Qmail-Scanner's qs2mrtg, done today's way).

Figures come from the ``messages``, ``parts`` and ``findings`` tables the
summaries consumer fills, on SQLite or PostgreSQL: counts are grouped in SQL
(one dialect-specific expression buckets times into hours or days, in UTC);
percentiles are exact nearest-rank values picked by the database too (window
functions, on both dialects), so memory stays bounded however much mail a site
has: only three rows per day and per scanner come back. Charts are PNGs drawn
by matplotlib's headless Agg backend, and one static ``index.html`` shows them
beside the same figures in tables, so a number can be read off rather than
guessed from a bar.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from compliance.models import Finding, Message, Part
from scanners.direction import DIRECTIONS

BLOCKED_CATEGORIES = ("spam", "virus", "policy", "dlp", "malformed")
CATEGORIES = ("clean", *BLOCKED_CATEGORIES)
ACTIONS = ("deliver", "quarantine", "reject", "tempfail", "drop")
BLOCKING_ACTIONS = ("quarantine", "reject", "drop")  # tempfail: the sender retries; not blocked
BLOCKED_COLUMNS = (*BLOCKED_CATEGORIES, "tagged")  # tagged: delivered, but not clean (spam headers)
PERCENTILES = (50, 90, 99)
TOP = 15
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


def bucket(engine: Engine, column: InstrumentedAttribute[datetime], unit: str) -> ColumnElement[str]:
    """A UTC hour or day label ('2026-11-25 10:00' / '2026-11-25') computed by the database."""
    if engine.dialect.name == "postgresql":
        fmt = "YYYY-MM-DD HH24:00" if unit == "hour" else "YYYY-MM-DD"
        return func.to_char(func.timezone("UTC", column), fmt)
    if engine.dialect.name == "sqlite":  # stored as UTC text by the summaries consumer
        return func.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d", column)
    raise ValueError(f"qscan report supports SQLite and PostgreSQL, not {engine.dialect.name}")


def labels_between(start: datetime, end: datetime, unit: str) -> list[str]:
    """Every bucket label in [start, end], so quiet hours show as zero, not as a gap."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    t = start.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        t = t.replace(hour=0)
    out = []
    while t <= end:
        out.append(t.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"))
        t += step
    return out


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
    unit: str  # bucket of the traffic chart: hour or day
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)  # bucket -> direction -> n
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


def gather(engine: Engine, start: datetime, end: datetime, unit: str) -> ReportData:
    data = ReportData(start=start, end=end, unit=unit)
    window = and_(Message.received_at >= start, Message.received_at <= end)
    hour = bucket(engine, Message.received_at, unit)
    day = bucket(engine, Message.received_at, "day")
    data.traffic = {b: {d: 0 for d in DIRECTIONS} for b in labels_between(start, end, unit)}
    data.daily = {b: defaultdict(int) for b in labels_between(start, end, "day")}
    data.blocked = {b: dict.fromkeys(BLOCKED_COLUMNS, 0) for b in labels_between(start, end, "day")}
    with engine.connect() as conn:
        stmt1 = select(hour, Message.direction, func.count()).where(window)
        for b, direc, n in conn.execute(stmt1.group_by(hour, Message.direction)):
            data.traffic.setdefault(b, {d: 0 for d in DIRECTIONS})[direc] = int(n)
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
            if action in BLOCKING_ACTIONS and cat in BLOCKED_CATEGORIES:
                blocked[cat] += int(n)
            elif action == "deliver" and cat != "clean":  # spam tagged in its headers, say
                blocked["tagged"] += int(n)
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
def _figure(width: float = 10.0, height: float = 4.0) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on a mail server
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return fig, ax


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data in this period", ha="center", va="center", transform=ax.transAxes,
            color="#777777")


def _whole_numbers(axis: Any) -> None:
    """Counts of messages: no 0.2-message ticks on a quiet day."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _tick_every(labels: Sequence[str], ax: Any, short: Callable[[str], str]) -> None:
    step = max(1, len(labels) // 14)
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels([short(labels[i]) for i in range(0, len(labels), step)], rotation=45, ha="right",
                       fontsize=8)


def chart_traffic(data: ReportData, path: Path) -> None:
    fig, ax = _figure()
    labels = list(data.traffic)
    x = range(len(labels))
    for d in DIRECTIONS:
        ax.plot(x, [data.traffic[b][d] for b in labels], label=d, color=COLORS[d], linewidth=1.4)
    ax.set_title(f"Messages per {data.unit} by direction (UTC)")
    ax.set_ylabel("messages")
    _tick_every(labels, ax, (lambda s: s[5:]) if data.unit == "hour" else (lambda s: s))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    _whole_numbers(ax.yaxis)
    if not data.messages:
        _no_data(ax)
    _save(fig, path)


def chart_verdicts(data: ReportData, path: Path) -> None:
    fig, ax = _figure()
    days = list(data.blocked)
    bottom = [0] * len(days)
    for cat in BLOCKED_COLUMNS:
        values = [data.blocked[d].get(cat, 0) for d in days]
        label = "tagged, delivered" if cat == "tagged" else cat
        ax.bar(range(len(days)), values, bottom=bottom, label=label, color=COLORS[cat],
               hatch="//" if cat == "tagged" else None)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("Mail blocked per day (quarantined, rejected, dropped) by category; "
                 "tagged but delivered on top (UTC)", fontsize=10)
    ax.set_ylabel("messages")
    _tick_every(days, ax, lambda s: s[5:])
    ax.legend(loc="upper left", ncols=6, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max([*bottom, 1]) * 1.18)  # room for the legend above the tallest bar
    _whole_numbers(ax.yaxis)
    if not any(bottom):
        _no_data(ax)
    _save(fig, path)


def _hbar(items: Sequence[tuple[str, int]], title: str, xlabel: str, path: Path, color: str) -> None:
    fig, ax = _figure(10.0, max(2.5, 0.35 * len(items) + 1.2))
    names = [n for n, _ in items][::-1]
    values = [v for _, v in items][::-1]
    ax.barh(range(len(items)), values, color=color)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(names, fontsize=8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    _whole_numbers(ax.xaxis)
    ax.grid(axis="x", alpha=0.3)
    if not items:
        _no_data(ax)
    _save(fig, path)


def chart_scan_times(data: ReportData, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.0), dpi=100)
    days = list(data.scan_daily)
    for p, style in zip(PERCENTILES, ("-", "--", ":"), strict=True):
        left.plot(range(len(days)), [data.scan_daily[d][f"p{p}"] for d in days], style, label=f"p{p}",
                  color="#1f77b4", marker="o", markersize=3)
    left.set_title("Processing time per message (ms)")
    left.set_ylabel("ms")
    _tick_every(days, left, lambda s: s[5:])
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    left.set_ylim(bottom=0)
    if not days:
        _no_data(left)
    scanners = list(data.scan_scanners)
    width = 0.27
    for k, p in enumerate(PERCENTILES):
        right.bar([i + (k - 1) * width for i in range(len(scanners))],
                  [data.scan_scanners[s][f"p{p}"] for s in scanners], width, label=f"p{p}")
    right.set_xticks(range(len(scanners)))
    right.set_xticklabels(scanners, rotation=30, ha="right", fontsize=8)
    right.set_title("Time in each scanner per message (ms)")
    right.legend(loc="upper left", ncols=3, fontsize=8)
    right.grid(axis="y", alpha=0.3)
    tallest = max([v[f"p{PERCENTILES[-1]}"] for v in data.scan_scanners.values()] + [1.0])
    right.set_ylim(0, tallest * 1.2)
    if not scanners:
        _no_data(right)
    _save(fig, path)


CHARTS = ("traffic.png", "verdicts.png", "attachments.png", "rules.png", "scan_times.png")


def render_charts(data: ReportData, out: Path) -> Iterable[str]:
    """Draws each chart, yielding its file name (a progress bar can follow along)."""
    chart_traffic(data, out / "traffic.png")
    yield "traffic.png"
    chart_verdicts(data, out / "verdicts.png")
    yield "verdicts.png"
    _hbar(data.attachments, "Top attachment types in blocked mail (quarantined, rejected, dropped)",
          "messages", out / "attachments.png",
          "#9467bd")
    yield "attachments.png"
    _hbar([(f"{s}: {r}", n) for s, r, _, n in data.rules], "Top rules and signatures fired", "messages",
          out / "rules.png", "#d62728")
    yield "rules.png"
    chart_scan_times(data, out / "scan_times.png")
    yield "scan_times.png"


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
        "<h2>Traffic</h2>", '<img src="traffic.png" alt="messages per period by direction">',
        '<img src="verdicts.png" alt="blocked mail per day by category">',
        _table("blocked", ["day", *[f"blocked {c}" for c in BLOCKED_CATEGORIES], "tagged, delivered"],
               [(d, *[row.get(c, 0) for c in BLOCKED_COLUMNS]) for d, row in data.blocked.items()]),
        _table("daily", ["day", *daily_cols],
               [(d, *[row.get(c, 0) for c in daily_cols]) for d, row in data.daily.items()]),
        "<h2>Blocked attachment types</h2>", '<img src="attachments.png" alt="top blocked attachment types">',
        _table("attachments", ["extension or type", "messages"], data.attachments),
        "<h2>Rules and signatures fired</h2>", '<img src="rules.png" alt="top rules fired">',
        _table("rules", ["rule", "scanner", "verdict", "messages"],
               [(r, s, v, n) for s, r, v, n in data.rules]),
        "<h2>Scan time</h2>", '<img src="scan_times.png" alt="processing time percentiles">',
        _table("scan-daily", ["day", "p50 ms", "p90 ms", "p99 ms", "messages"],
               [(d, v["p50"], v["p90"], v["p99"], int(v["n"])) for d, v in data.scan_daily.items()]),
        _table("scan-scanners", ["scanner", "p50 ms", "p90 ms", "p99 ms", "runs"],
               [(s, v["p50"], v["p90"], v["p99"], int(v["n"])) for s, v in data.scan_scanners.items()]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def choose_unit(period: timedelta, unit: str) -> str:
    if unit != "auto":
        return unit
    return "hour" if period <= timedelta(days=14) else "day"


def window(period: timedelta, now: datetime | None = None) -> tuple[datetime, datetime]:
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return end - period, end
