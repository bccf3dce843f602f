"""The summaries consumer: projects events from the log into the SQL store.

Idempotence is by event id: a message already in ``messages`` is left exactly
as it is (its child rows too, ids included), so a replay or a duplicate
delivery from the log changes no byte. ``message.queue_failed`` only ever sets
the same two columns to the same values, so it replays safely as well. Rows
and the consumer's position commit in one transaction: after a crash the
consumer resumes exactly where its rows end.

Rows go in with executemany-style bulk inserts (no ORM object per row): a
batch of 200 events is a handful of statements.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from compliance.db import check_schema, make_engine, session_factory
from compliance.models import (
    ADDRESS_LEN,
    DETAIL_LEN,
    DOMAIN_LEN,
    SUBJECT_LEN,
    ConsumerPosition,
    Finding,
    Message,
    Recipient,
)
from ingest.event import Action, MessageScanned, QueueFailed
from ingest.log import LogRecord
from ingest.summary_line import attachment_list, clean, format_summary

log = logging.getLogger(__name__)

Row = dict[str, Any]


def utc(value: datetime) -> datetime:
    """Aware UTC; naive times from the log are UTC by contract."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()[:DOMAIN_LEN] if "@" in address else ""


def message_row(position: int, ev: MessageScanned) -> Row:
    sender = clean(ev.envelope.sender, ADDRESS_LEN)
    client = ev.client
    return {
        "event_id": ev.event_id,
        "position": position,
        "received_at": utc(ev.time),
        "host": clean(ev.host, 255),
        "action": ev.action.value,
        "category": ev.category.value,
        "reason": clean(ev.reason, 100),
        "client_ip": clean(client.ip, 64) or None,
        "client_host": clean(client.host, 255) or None,
        "relay": client.relay,
        "auth_user": clean(client.auth_user, 255) or None,
        "sender": sender,
        "sender_domain": domain_of(sender),
        "subject": clean(ev.headers.subject, SUBJECT_LEN),
        "message_id": clean(ev.headers.message_id, SUBJECT_LEN),
        "size": ev.size,
        "sha256": ev.sha256,
        "attachments": ",".join(attachment_list(ev)),
        "parts_count": len(ev.parts),
        "recipients_count": len(ev.envelope.recipients),
        "spam_score": ev.spam_score,
        "processing_ms": ev.timings.total_ms,
        "queue_status": "queued" if ev.action == Action.DELIVER else "n/a",
        "queue_exit_code": None,
        "summary": format_summary(ev),
    }


def recipient_rows(ev: MessageScanned) -> list[Row]:
    rows = []
    for rcpt in ev.envelope.recipients:
        address = clean(rcpt, ADDRESS_LEN)
        rows.append({"event_id": ev.event_id, "address": address, "domain": domain_of(address)})
    return rows


def finding_rows(ev: MessageScanned) -> list[Row]:
    return [
        {
            "event_id": ev.event_id,
            "scanner": clean(f.scanner, 64),
            "verdict": f.verdict.value,
            "name": clean(f.name, 200),
            "score": f.score,
            "detail": clean(f.detail, DETAIL_LEN),
            "duration_ms": f.duration_ms,
        }
        for f in ev.findings
    ]


# Core (not ORM) UPDATE: executemany over all of a batch's failures in one call.
_messages = cast(Table, Message.__table__)
_mark_failed = (
    update(_messages)
    .where(_messages.c.event_id == bindparam("ref"))
    .values(queue_status="failed", queue_exit_code=bindparam("code"))
)


class SummarySink:
    """The ``summaries`` projection (a ``ingest.log.Sink``)."""

    name = "summaries"
    needs_raw = False  # the raw message stays in the journal and the archive

    def __init__(self, url: str, *, name: str = "summaries") -> None:
        self.name = name
        self.engine = make_engine(url)
        try:
            check_schema(self.engine)
        except Exception:
            self.engine.dispose()
            raise
        self._read = session_factory(self.engine)
        self._write = session_factory(self.engine, write=True)

    def position(self) -> int:
        with self._read() as session:
            stmt = select(ConsumerPosition.position).where(ConsumerPosition.name == self.name)
            return session.scalar(stmt) or 0

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        """One transaction per batch: new messages first, then the batch's queue failures.

        A failure is written after its message even when both sit in one batch.
        """
        messages: dict[str, Row] = {}
        events: list[MessageScanned] = []
        failures: list[Row] = []
        for rec in records:
            ev = rec.event
            if isinstance(ev, MessageScanned):
                if ev.event_id not in messages:  # a duplicate within the batch
                    messages[ev.event_id] = message_row(rec.position, ev)
                    events.append(ev)
            elif isinstance(ev, QueueFailed):
                failures.append({"ref": ev.ref_event_id, "code": ev.exit_code})
            else:  # a later event type this version does not project
                log.debug("summaries: skipping %s at %d", type(ev).__name__, rec.position)
        with self._write.begin() as session:
            if messages:
                self._insert_new(session, messages, events)
            if failures:
                session.execute(_mark_failed, failures)
            self._store_position(session, position)

    @staticmethod
    def _insert_new(session: Session, messages: dict[str, Row],
                    events: list[MessageScanned]) -> None:
        stmt = select(Message.event_id).where(Message.event_id.in_(list(messages)))
        present = set(session.scalars(stmt))
        fresh = [ev for ev in events if ev.event_id not in present]
        if not fresh:
            return
        session.execute(insert(Message), [messages[ev.event_id] for ev in fresh])
        recipients = [row for ev in fresh for row in recipient_rows(ev)]
        if recipients:
            session.execute(insert(Recipient), recipients)
        findings = [row for ev in fresh for row in finding_rows(ev)]
        if findings:
            session.execute(insert(Finding), findings)

    def _store_position(self, session: Session, position: int) -> None:
        values = {"position": position, "updated_at": datetime.now(UTC)}
        done = session.execute(
            update(ConsumerPosition).where(ConsumerPosition.name == self.name).values(**values)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            session.execute(insert(ConsumerPosition).values(name=self.name, **values))

    def set_position(self, position: int) -> None:
        with self._write.begin() as session:
            self._store_position(session, position)

    def close(self) -> None:
        self.engine.dispose()
