"""Audit search over the summary store: who sent what to whom, when.

Addresses match whole and case-insensitively (``Alice@Example.COM`` finds
``alice@example.com``), or as a pattern when they contain ``*``; nothing else
in the user's text is special (``%`` and ``_`` match themselves). Every value
reaches the database as a bound parameter.

Times are UTC. ``since`` is inclusive, ``until`` exclusive, so consecutive
ranges never count a message twice. Results are newest first, with the event
id as tie-break so ``offset`` paging is stable.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import ColumnElement, Engine, SQLColumnExpression, String, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from compliance.models import Message, Recipient
from compliance.summaries import utc

FIELDS = (
    "time", "event_id", "action", "category", "reason", "client_ip", "sender",
    "recipients", "subject", "size", "attachments", "queue_status",
)


class text_lower(FunctionElement[str]):
    """Unicode-aware lower(): PostgreSQL's lower() is; SQLite's only folds ASCII."""

    type = String()
    name = "text_lower"
    inherit_cache = True


@compiles(text_lower)
def _text_lower(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(text_lower, "sqlite")
def _text_lower_sqlite(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"qscan_lower({compiler.process(element.clauses, **kw)})"  # see compliance.db


def _like_pattern(value: str, *, contains: bool = False) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%")
    return f"%{pattern}%" if contains else pattern


def _address(value: str) -> str:
    """'<Alice@Example.com>' → 'alice@example.com'; '<>' is the null sender of bounces."""
    return value.strip().removeprefix("<").removesuffix(">").strip().lower()


def _match(column: SQLColumnExpression[str], value: str) -> ColumnElement[bool]:
    return column.like(_like_pattern(value), escape="\\") if "*" in value else column == value


def _filters(
    *,
    sender: str | None = None,
    recipient: str | None = None,
    domain: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    action: str | None = None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if sender is not None:
        where.append(_match(func.lower(Message.sender), _address(sender)))
    if recipient is not None:
        rcpt = _match(func.lower(Recipient.address), _address(recipient))
        where.append(Message.event_id.in_(select(Recipient.event_id).where(rcpt)))
    if domain is not None:
        d = domain.strip().lstrip("@").lower()  # domains are stored lowercased
        by_rcpt = select(Recipient.event_id).where(_match(Recipient.domain, d))
        where.append(or_(_match(Message.sender_domain, d), Message.event_id.in_(by_rcpt)))
    if since is not None:
        where.append(Message.received_at >= utc(since))
    if until is not None:
        where.append(Message.received_at < utc(until))
    if subject:
        pattern = _like_pattern(subject.lower(), contains=True)
        where.append(text_lower(Message.subject).like(pattern, escape="\\"))
    if action is not None:
        where.append(Message.action == action)
    return where


def search(
    engine: Engine,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    domain: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    action: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Matching messages, newest first; ``limit=None`` returns them all."""
    where = _filters(sender=sender, recipient=recipient, domain=domain, since=since,
                     until=until, subject=subject, action=action)
    m = Message
    stmt = (
        select(m.received_at, m.event_id, m.action, m.category, m.reason, m.client_ip,
               m.sender, m.subject, m.size, m.attachments, m.queue_status)
        .where(*where)
        .order_by(m.received_at.desc(), m.event_id.desc())
        .offset(offset)
        .limit(limit)
    )
    with engine.connect() as conn:
        found = conn.execute(stmt).all()
        ids = [row.event_id for row in found]
        recipients: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            rstmt = (select(Recipient.event_id, Recipient.address)
                     .where(Recipient.event_id.in_(ids)).order_by(Recipient.id))
            for event_id, address in conn.execute(rstmt):
                recipients[event_id].append(address)
    out = []
    for row in found:
        item = row._asdict()
        item["time"] = utc(item.pop("received_at"))
        item["recipients"] = ",".join(recipients[row.event_id])
        out.append({k: item[k] for k in FIELDS})
    return out


def count(
    engine: Engine,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    domain: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    action: str | None = None,
) -> int:
    where = _filters(sender=sender, recipient=recipient, domain=domain, since=since,
                     until=until, subject=subject, action=action)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Message).where(*where)).scalar_one()


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _printable(value: Any) -> str:
    """No terminal escapes from mail reach the auditor's screen (C1 controls too)."""
    if isinstance(value, datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M:%S")
    text = "" if value is None else str(value)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


_TABLE_RECIPIENTS = 3
_NO_WRAP = {"time", "event_id", "action", "size", "queue_status"}  # copied whole, so kept whole


def _table_cell(row: dict[str, Any], name: str) -> Text:
    value = row.get(name)
    if name == "recipients" and value:
        rcpts = str(value).split(",")
        if len(rcpts) > _TABLE_RECIPIENTS:  # a list mailing keeps one row one row
            value = ",".join(rcpts[:_TABLE_RECIPIENTS]) + f" (+{len(rcpts) - _TABLE_RECIPIENTS} more)"
    # Text(), never str: a subject like "[red]" must not be read as markup.
    return Text(_printable(value))


def render_table(rows: Sequence[dict[str, Any]], *, width: int | None = None) -> str:
    """For reading on a terminal; long recipient lists are shortened (csv/json keep all)."""
    table = Table(show_lines=False, expand=False)
    columns = ("time", "event_id", "action", "reason", "client_ip", "sender",
               "recipients", "subject", "size", "queue_status")
    for name in columns:
        header = "time (UTC)" if name == "time" else name.replace("_", " ")
        table.add_column(header, overflow="fold", no_wrap=name in _NO_WRAP,
                         justify="right" if name == "size" else "left")
    for row in rows:
        table.add_row(*(_table_cell(row, name) for name in columns))
    buf = io.StringIO()
    Console(file=buf, width=width or 200, no_color=True, highlight=False).print(table)
    return buf.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    # Subjects and senders come from strangers: a leading '=' would run as a
    # spreadsheet formula when the export is opened (CSV injection, OWASP).
    value = _plain(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV for spreadsheets (formula-like cells get a leading quote); use JSON for tools."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in FIELDS})
    return buf.getvalue()


def render_json(rows: Iterable[dict[str, Any]]) -> str:
    """Exact values, for tools: a list of objects, times in ISO 8601 (UTC)."""
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows],
                      indent=2, ensure_ascii=False) + "\n"
