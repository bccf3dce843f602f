"""SQL rows for the compliance events: tombstones, holds, releases, exports.

The commands that cause these events (``qscan retention apply``, ``qscan hold``,
``qscan export``) append the event to the log *and* write its rows at once, so
an auditor sees them immediately; the summaries consumer later meets the same
event on the log and finds it already recorded (everything is keyed by event
id). Replaying the log into an empty database rebuilds the same rows.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from compliance.chain import ChainWriter
from compliance.models import (
    DETAIL_LEN,
    Deletion,
    Export,
    ExportItem,
    Hold,
    HoldItem,
    Message,
    QuarantineEntry,
)
from ingest.event import ExportCompleted, HoldCreated, HoldReleased, MessageDeleted, utc
from ingest.summary_line import clean

ComplianceEvent = MessageDeleted | HoldCreated | HoldReleased | ExportCompleted


def chain_hosts(ev: ComplianceEvent) -> list[str]:
    """The chains an event appends to (locked up front, in order, by the writer)."""
    return [ev.ref_host] if isinstance(ev, MessageDeleted) else []


def record(session: Session, chain: ChainWriter, ev: ComplianceEvent) -> bool:
    """Write the event's rows unless they exist; returns whether anything was written."""
    if isinstance(ev, MessageDeleted):
        return record_deletion(session, chain, ev)
    if isinstance(ev, HoldCreated):
        return record_hold(session, ev)
    if isinstance(ev, HoldReleased):
        return record_release(session, ev)
    return record_export(session, ev)


def deletion_row(ev: MessageDeleted) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "ref_event_id": ev.ref_event_id,
        "time": utc(ev.time),
        "host": clean(ev.ref_host, 255),
        "actor": clean(ev.actor, 255),
        "reason": clean(ev.reason, DETAIL_LEN),
        "rule": clean(ev.rule, 200),
        "location": clean(ev.location, 64),
        "raw_sha256": ev.raw_sha256,
        "message_hash": ev.message_hash,
    }


def record_deletion(session: Session, chain: ChainWriter, ev: MessageDeleted) -> bool:
    """A chained tombstone, and the marks on the message and its quarantine entry."""
    if session.get(Deletion, ev.event_id) is not None:
        return False
    if session.scalar(select(Deletion.event_id).where(Deletion.ref_event_id == ev.ref_event_id)):
        return False  # the copy was already recorded as deleted by another event
    row = deletion_row(ev)
    row["chain_seq"], row["chain_hash"] = chain.append("deletion", row["host"], row)
    session.execute(insert(Deletion).values(**row))
    when = row["time"]
    session.execute(update(Message).where(Message.event_id == ev.ref_event_id)
                    .values(deleted_at=when))
    session.execute(update(QuarantineEntry).where(QuarantineEntry.event_id == ev.ref_event_id)
                    .values(state="deleted", updated_at=when))
    return True


def record_hold(session: Session, ev: HoldCreated) -> bool:
    if session.get(Hold, ev.event_id) is not None:
        return False
    session.execute(insert(Hold).values(
        hold_id=ev.event_id, matter=ev.matter,
        custodians=json.dumps(ev.custodians, ensure_ascii=False),
        since=utc(ev.since) if ev.since else None, until=utc(ev.until) if ev.until else None,
        query=json.dumps(ev.query, sort_keys=True, ensure_ascii=False), reason=ev.reason,
        created_by=clean(ev.actor, 255), created_at=utc(ev.time),
        discovery=hold_discovery_json(ev),
    ))
    if ev.items:
        session.execute(insert(HoldItem), [
            {"hold_id": ev.event_id, "event_id": item.event_id, "sha256": item.sha256}
            for item in ev.items
        ])
    return True


def hold_discovery_json(ev: HoldCreated) -> str | None:
    """``holds.discovery``: the search of a hold by query, as its event records it."""
    if ev.discovery is None:
        return None
    return json.dumps(ev.discovery.model_dump(), sort_keys=True, ensure_ascii=False)


def record_release(session: Session, ev: HoldReleased) -> bool:
    done = session.execute(
        update(Hold).where(Hold.hold_id == ev.hold_id, Hold.released_at.is_(None)).values(
            released_at=utc(ev.time), released_by=clean(ev.actor, 255),
            release_reason=ev.reason, release_event_id=ev.event_id,
        )
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def record_export(session: Session, ev: ExportCompleted) -> bool:
    if session.get(Export, ev.event_id) is not None:
        return False
    session.execute(insert(Export).values(
        export_id=ev.event_id, matter=ev.matter, hold_id=ev.hold_id, actor=clean(ev.actor, 255),
        started_at=utc(ev.started), finished_at=utc(ev.time),
        query=json.dumps(ev.query, sort_keys=True, ensure_ascii=False),
        tool_version=ev.tool_version, format=ev.format, out_dir=ev.out_dir,
        messages=ev.messages, missing=ev.missing, total_bytes=ev.total_bytes,
        files=json.dumps(ev.files, sort_keys=True, ensure_ascii=False),
        custody_sha256=ev.custody_sha256,
    ))
    if ev.items:
        session.execute(insert(ExportItem), [
            {"export_id": ev.event_id, "event_id": item.event_id, "doc_id": item.doc_id,
             "sha256": item.sha256}
            for item in ev.items
        ])
    return True
