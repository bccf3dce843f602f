"""The summaries consumer: projects events from the log into the SQL store.

Idempotence is by event id: a message already in ``messages`` is left exactly
as it is (its child rows too, ids included), so a replay or a duplicate
delivery from the log changes no byte. ``message.queue_failed`` only ever sets
the same two columns to the same values, so it replays safely as well. Rows
and the consumer's position commit in one transaction: after a crash the
consumer resumes exactly where its rows end.

Every message row, queue failure and tombstone is chained into its host's
hash chain (compliance.chain) in the same transaction, so the proof is never
behind the rows. The compliance events (deletions, holds, exports) are
projected by compliance.records, which their commands also call directly.

Rows go in with executemany-style bulk inserts (no ORM object per row; on
SQLite straight through the driver, compliance.bulk): a batch of events is a
handful of statements. The stored copy's hash (``raw_sha256``) comes from the
event, where the daemon put it; only events older than that field are hashed
here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from compliance import canonical
from compliance.activity import CONSOLE_EVENTS, ConsoleEvent, record_activity
from compliance.bulk import insert_rows
from compliance.chain import ChainWriter
from compliance.db import check_schema, make_engine, session_factory
from compliance.models import (
    ADDRESS_LEN,
    CRYPTO_LEN,
    DETAIL_LEN,
    DOMAIN_LEN,
    EXTENSION_LEN,
    FILENAME_LEN,
    SUBJECT_LEN,
    TYPE_LEN,
    ConsumerPosition,
    DlpFinding,
    Finding,
    Message,
    Part,
    QuarantineEntry,
    QueueFailure,
    Recipient,
)
from compliance.quarantine_records import record_denied, record_released, record_requested
from compliance.records import ComplianceEvent, chain_hosts, record
from ingest.event import (
    Action,
    ExportCompleted,
    HoldCreated,
    HoldReleased,
    MessageDeleted,
    MessageReleased,
    MessageScanned,
    QueueFailed,
    ReleaseDenied,
    ReleaseRequested,
    utc,
)
from ingest.log import LogRecord
from ingest.summary_line import attachment_list, clean, format_summary

log = logging.getLogger(__name__)

Row = dict[str, Any]
HEADER_LEN = 4000  # To/Cc of a large mailing: enough to read, bounded for the index-less column


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()[:DOMAIN_LEN] if "@" in address else ""


def _finite(value: float | None) -> float | None:
    # NaN has no canonical form, and SQLite would store it as NULL anyway.
    return value if value is None or math.isfinite(value) else None


def message_row(position: int, ev: MessageScanned) -> Row:
    sender = clean(ev.envelope.sender, ADDRESS_LEN)
    client = ev.client
    headers = ev.headers
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
        "spam_score": _finite(ev.spam_score),
        "processing_ms": _finite(ev.timings.total_ms) or 0.0,
        "queue_status": "queued" if ev.action == Action.DELIVER else "n/a",
        "queue_exit_code": None,
        "summary": format_summary(ev),
        "direction": client.direction,
        "header_from": clean(headers.from_, SUBJECT_LEN),
        "header_to": clean(headers.to, HEADER_LEN),
        "header_cc": clean(headers.cc, HEADER_LEN),
        "header_date": clean(headers.date, 200),
        "raw_sha256": raw_sha256(ev),
        # NULL for events from before qscan recorded it (the row says so; version 3 hashes it)
        "crypto": None if ev.crypto is None else clean(",".join(ev.crypto), CRYPTO_LEN),
        "chain_version": canonical.MESSAGE_VERSION,
    }


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def carries_raw_sha256(ev: MessageScanned) -> bool:
    """Whether the event says what its stored copy hashes to (the daemon hashed it)."""
    return bool(ev.raw_sha256 and _SHA256_HEX.fullmatch(ev.raw_sha256))


def raw_sha256(ev: MessageScanned) -> str | None:
    """What the stored copy must hash to: the daemon's hash, or (events from before the
    daemon hashed it, or whose hash is not one) the hash of the bytes the event carries.
    An oversized message travels without its bytes (size > 0, raw empty): None."""
    if ev.raw_sha256 and carries_raw_sha256(ev):
        return ev.raw_sha256
    if ev.raw_message or not ev.size:
        return hashlib.sha256(ev.raw_message).hexdigest()
    return None


def recipient_rows(ev: MessageScanned) -> list[Row]:
    rows = []
    for rcpt in ev.envelope.recipients:
        address = clean(rcpt, ADDRESS_LEN)
        rows.append({"event_id": ev.event_id, "address": address, "domain": domain_of(address),
                     "received_at": utc(ev.time)})
    return rows


def extension_of(filename: str | None) -> str | None:
    """'Report.PDF' -> 'pdf'; None without a usable extension."""
    if not filename or "." not in filename:
        return None
    ext = filename.rpartition(".")[2].strip().lower()
    return ext if ext and len(ext) <= EXTENSION_LEN else None


def part_rows(ev: MessageScanned) -> list[Row]:
    rows = []
    for p in ev.parts:
        filename = clean(p.filename, FILENAME_LEN) or None
        rows.append({
            "event_id": ev.event_id,
            "path": clean(p.path, 100),
            "content_type": clean(p.content_type, TYPE_LEN).lower(),
            "detected_type": clean(p.detected_type, TYPE_LEN).lower() or None,
            "filename": filename,
            "extension": extension_of(filename),
            "size": p.size,
            "sha256": clean(p.sha256, 64),
        })
    return rows


def _text(finding: Mapping[str, Any], *keys: str, limit: int) -> str:
    for key in keys:
        value = finding.get(key)
        if value not in (None, ""):
            return clean(str(value), limit)
    return ""


def dlp_rows(ev: MessageScanned) -> list[Row]:
    """DLP findings, whatever optional keys the DLP scanner fills (see docs/compliance.md)."""
    rows = []
    for f in ev.dlp_findings:
        try:
            count = int(f.get("count") or 1)
        except (TypeError, ValueError):
            count = 1
        rows.append({
            "event_id": ev.event_id,
            "rule": _text(f, "rule", "name", limit=200),
            "detector": _text(f, "detector", "type", limit=200),
            "confidence": _text(f, "confidence", limit=16),
            "count": max(0, min(count, 2**31 - 1)),
            "action": _text(f, "action", limit=32),
            "location": _text(f, "location", "part", limit=DETAIL_LEN),
            "evidence": _text(f, "evidence", "masked", limit=DETAIL_LEN),
        })
    return rows


def quarantine_row(ev: MessageScanned) -> Row | None:
    if ev.action != Action.QUARANTINE:
        return None
    when = utc(ev.time)
    return {"event_id": ev.event_id, "folder": ev.quarantine_folder or "policy",
            "received_at": when, "reason": clean(ev.reason, 100), "state": "quarantined",
            "updated_at": when}


def failure_row(ev: QueueFailed) -> Row:
    return {"event_id": ev.event_id, "ref_event_id": ev.ref_event_id, "time": utc(ev.time),
            "host": clean(ev.host, 255), "exit_code": ev.exit_code}


def finding_rows(ev: MessageScanned) -> list[Row]:
    return [
        {
            "event_id": ev.event_id,
            "scanner": clean(f.scanner, 64),
            "verdict": f.verdict.value,
            "name": clean(f.name, 200),
            "score": _finite(f.score) or 0.0,
            "detail": clean(f.detail, DETAIL_LEN),
            "duration_ms": _finite(f.duration_ms) or 0.0,
        }
        for f in ev.findings
    ]


def child_rows(ev: MessageScanned) -> dict[str, list[Row]]:
    """A message's child rows by table, in the order they are inserted and chained."""
    return {"recipients": recipient_rows(ev), "parts": part_rows(ev),
            "findings": finding_rows(ev), "dlp_findings": dlp_rows(ev)}


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


# Core (not ORM) UPDATE: executemany over all of a batch's failures in one call.
_messages = _table(Message)
_mark_failed = (
    update(_messages)
    .where(_messages.c.event_id == bindparam("ref"))
    .values(queue_status="failed", queue_exit_code=bindparam("code"))
)


class SummarySink:
    """The ``summaries`` projection (a ``ingest.log.Sink``)."""

    name = "summaries"
    # The raw message is only hashed (raw_sha256: what the stored copy must hash to), and
    # only for events from before the daemon put the hash in the event; it is never written
    # to SQL. It must still be read: without it such an event would look oversized (NULL).
    needs_raw = True

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
        """One transaction per batch: new messages, then queue failures, then the rest.

        A failure is written after its message even when both sit in one batch.
        """
        messages: dict[str, Row] = {}
        events: list[MessageScanned] = []
        failures: dict[str, QueueFailed] = {}
        others: list[ComplianceEvent] = []
        releases: list[MessageReleased | ReleaseRequested | ReleaseDenied] = []  # after messages
        console: list[ConsoleEvent] = []  # the web console's activity (compliance.activity)
        for rec in records:
            ev = rec.event
            if isinstance(ev, MessageScanned):
                if ev.event_id not in messages:  # a duplicate within the batch
                    messages[ev.event_id] = message_row(rec.position, ev)
                    events.append(ev)
            elif isinstance(ev, QueueFailed):
                failures.setdefault(ev.event_id, ev)
            elif isinstance(ev, (MessageDeleted, HoldCreated, HoldReleased, ExportCompleted)):
                others.append(ev)
            elif isinstance(ev, (MessageReleased, ReleaseRequested, ReleaseDenied)):
                releases.append(ev)
            elif isinstance(ev, CONSOLE_EVENTS):
                console.append(ev)
            else:  # a later event type this version does not project
                log.debug("summaries: skipping %s at %d", type(ev).__name__, rec.position)
        hosts = {row["host"] for row in messages.values()}
        hosts |= {clean(f.host, 255) for f in failures.values()}
        hosts |= {h for ev in others for h in chain_hosts(ev)}
        with self._write.begin() as session:
            chain = ChainWriter(session, hosts)
            if messages:
                self._insert_new(session, chain, messages, events)
            if failures:
                self._insert_failures(session, chain, list(failures.values()))
            for other in others:
                record(session, chain, other)
            for released in releases:  # requests before their approvals (log order)
                if isinstance(released, ReleaseRequested):
                    record_requested(session, released)
                elif isinstance(released, ReleaseDenied):
                    record_denied(session, released)
                else:
                    record_released(session, released)
            record_activity(session, console)
            chain.store()
            self._store_position(session, position)

    @staticmethod
    def _insert_new(session: Session, chain: ChainWriter, messages: dict[str, Row],
                    events: list[MessageScanned]) -> None:
        # After the chain heads are locked: a concurrent writer of the same host has
        # committed its rows by now, so "already present" is the whole truth.
        stmt = select(Message.event_id).where(Message.event_id.in_(list(messages)))
        present = set(session.scalars(stmt))
        fresh = [ev for ev in events if ev.event_id not in present]
        if not fresh:
            return
        children: dict[str, list[Row]] = {"recipients": [], "parts": [], "findings": [],
                                          "dlp_findings": []}
        quarantine: list[Row] = []
        for ev in fresh:
            row = messages[ev.event_id]
            mine = child_rows(ev)
            row["chain_seq"], row["chain_hash"] = chain.append("message", row["host"], row, mine)
            for table, rows in mine.items():
                children[table].extend(rows)
            q = quarantine_row(ev)
            if q is not None:
                quarantine.append(q)
        # Core executemany, not the ORM's bulk insert: the rows are plain dicts with one
        # key set per table, and the ORM's per-row bookkeeping cost more than the SQL.
        conn = session.connection()
        insert_rows(conn, _table(Message), [messages[ev.event_id] for ev in fresh])
        for table, model in (("recipients", Recipient), ("parts", Part), ("findings", Finding),
                             ("dlp_findings", DlpFinding)):
            insert_rows(conn, _table(model), children[table])
        insert_rows(conn, _table(QuarantineEntry), quarantine)

    @staticmethod
    def _insert_failures(session: Session, chain: ChainWriter, failures: list[QueueFailed]
                         ) -> None:
        ids = [f.event_id for f in failures]
        present = set(session.scalars(select(QueueFailure.event_id)
                                      .where(QueueFailure.event_id.in_(ids))))
        fresh = [failure_row(f) for f in failures if f.event_id not in present]
        for row in fresh:
            row["chain_seq"], row["chain_hash"] = chain.append("queue_failed", row["host"], row)
        if fresh:
            session.execute(insert(QueueFailure), fresh)
        # Setting the same two columns to the same values: harmless on a replay.
        session.execute(_mark_failed, [{"ref": f.ref_event_id, "code": f.exit_code}
                                       for f in failures])

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
