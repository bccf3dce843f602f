"""The web console's activity in SQL: each console event on the log becomes one
``console_activity`` row (the summaries consumer writes it; ``qscan verify`` compares the two
both ways, compliance.record_check), and the console lists them (``listing``).

The projection is defined once, here (``activity_row``): what the consumer writes is what verify
expects. Console events are not on the SQL hash chains; their durable record is the journal's
own hash chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, tuple_
from sqlalchemy.orm import Session

from compliance.models import ConsoleActivity
from ingest.event import ConsoleAccountChanged, ConsoleSignIn, ExportDownloaded, MessageRawRead, utc
from ingest.summary_line import clean

ConsoleEvent = ConsoleSignIn | ConsoleAccountChanged | MessageRawRead | ExportDownloaded
CONSOLE_EVENTS = (ConsoleSignIn, ConsoleAccountChanged, MessageRawRead, ExportDownloaded)
TYPES = tuple(t.model_fields["type"].default for t in CONSOLE_EVENTS)
COLUMNS = ("event_id", "time", "host", "type", "actor", "role", "outcome", "remote", "subject", "detail")
PAGE = 100


def activity_row(ev: ConsoleEvent) -> dict[str, Any]:
    """The ``console_activity`` row of a console event (bounded as the columns are)."""
    row: dict[str, Any] = {"event_id": ev.event_id, "time": utc(ev.time), "host": clean(ev.host, 255),
                           "type": ev.type, "role": None, "outcome": None, "remote": None,
                           "subject": None, "detail": None}
    if isinstance(ev, ConsoleSignIn):
        row.update(actor=clean(ev.login, 255), role=ev.role, outcome=ev.outcome,
                   remote=clean(ev.remote, 64), detail=ev.method)
    elif isinstance(ev, ConsoleAccountChanged):
        row.update(actor=clean(ev.actor, 255), role=ev.role, outcome=ev.change,
                   subject=clean(ev.login, 255),
                   detail="password" if ev.password else "SSO only")
    elif isinstance(ev, MessageRawRead):
        row.update(actor=clean(ev.actor, 255), role=ev.role, remote=clean(ev.remote, 64),
                   subject=ev.ref_event_id, detail=clean(ev.source, 255))
    else:
        row.update(actor=clean(ev.actor, 255), role=ev.role, remote=clean(ev.remote, 64),
                   subject=ev.export_id, detail=f"{ev.bytes} bytes, sha256 {ev.sha256}"[:255])
    return row


def record_activity(session: Session, events: list[ConsoleEvent]) -> int:
    """Insert the rows of ``events`` not there yet (a replay writes nothing twice); the count."""
    if not events:
        return 0
    ids = [ev.event_id for ev in events]
    there = set(session.scalars(select(ConsoleActivity.event_id)
                                .where(ConsoleActivity.event_id.in_(ids))))
    rows = {ev.event_id: activity_row(ev) for ev in events if ev.event_id not in there}
    if rows:
        session.execute(insert(ConsoleActivity), list(rows.values()))
    return len(rows)


def listing(engine: Engine, *, actor: str | None = None, kind: str | None = None,
            since: datetime | None = None, before: tuple[datetime, str] | None = None,
            limit: int = PAGE) -> list[dict[str, Any]]:
    """Newest first; ``before`` = (time, event id) of the last row of the previous page.
    ``actor``: a login, matched with or without its ``@host``."""
    stmt = select(*(getattr(ConsoleActivity, c) for c in COLUMNS))
    if actor:
        login = actor.strip().lower()
        stmt = stmt.where((ConsoleActivity.actor == login)
                          | ConsoleActivity.actor.startswith(login + "@", autoescape=True))
    if kind:
        stmt = stmt.where(ConsoleActivity.type == kind)
    if since is not None:
        stmt = stmt.where(ConsoleActivity.time >= since)
    if before is not None:
        stmt = stmt.where(tuple_(ConsoleActivity.time, ConsoleActivity.event_id) < tuple_(*before))
    stmt = stmt.order_by(ConsoleActivity.time.desc(), ConsoleActivity.event_id.desc()).limit(limit)
    with engine.connect() as conn:
        return [{**r._asdict(), "time": utc(r.time)} for r in conn.execute(stmt)]
