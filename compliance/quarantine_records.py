"""Quarantine releases in SQL: the ``quarantine_releases`` table and its projection.

A release is a ``message.released`` event on the log (ingest.event); this
module writes its row and moves the quarantine entry to ``released``. The
``qscan quarantine release`` command calls it right after appending the
event, and the summaries consumer calls it again when it meets the event on
the log (keyed by event id, so the second call changes nothing); a replay into
an empty database rebuilds the same rows.

``ref_event_id`` is unique: one quarantined message is released at most once.
The row is not chained into the hash chain (compliance.chain) - it is a later
act on the message, like a hold, and the event on the log is its durable record.

**Four-eyes.** A release from a four-eyes folder starts as a
``release.requested`` event and a ``quarantine_release_requests`` row
(``pending``); the approving release's ``message.released`` names the request
(``request_id``) and its requester (``requested_by``) and turns the request
``released``. :func:`check_release_events` is what ``qscan verify`` holds the
events and rows to (both directions, and never one login on both sides).

Where the quarantined file is needs no column: the archive consumer names it
from the event alone (``archive.consumer.message_name``: ``<unix time>.<event
id>.qscan`` in ``QUARANTINE_DIR/<folder>/new/`` or, once a mail client moved
it, ``cur/``), and ``quarantine_entries`` holds both the folder and the
received time, so ``archive.copies.copy_name(event_id, received_at)`` computes
it from the row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from compliance.models import (
    ADDRESS_LEN,
    DETAIL_LEN,
    QuarantineEntry,
    QuarantineRelease,
    ReleaseRequest,
)
from ingest.event import MessageReleased, ReleaseRequested, utc
from ingest.summary_line import clean

# quarantine_entries.state values (the column is 16 characters).
QUARANTINED = "quarantined"
RELEASING = "releasing"  # claimed by a release in progress (see compliance.quarantine)
RELEASED = "released"
DELETED = "deleted"
STATES = (QUARANTINED, RELEASING, RELEASED, DELETED)
# quarantine_release_requests.state values
PENDING = "pending"



def release_row(ev: MessageReleased) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "ref_event_id": ev.ref_event_id,
        "time": utc(ev.time),
        "host": clean(ev.host, 255),
        "folder": clean(ev.folder, 32),
        "actor": clean(ev.actor, 255),
        "reason": clean(ev.reason, DETAIL_LEN),
        "sender": clean(ev.sender, ADDRESS_LEN),
        "recipients": json.dumps(ev.recipients, ensure_ascii=False),
        "original_recipients": ev.original_recipients,
        "forced": ev.forced,
        "sha256": clean(ev.sha256, 64),
        "request_id": ev.request_id,
        "requested_by": clean(ev.requested_by, 255) if ev.requested_by is not None else None,
    }


def request_row(ev: ReleaseRequested) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "ref_event_id": ev.ref_event_id,
        "time": utc(ev.time),
        "host": clean(ev.host, 255),
        "folder": clean(ev.folder, 32),
        "actor": clean(ev.actor, 255),
        "operator": clean(ev.operator, 255),
        "reason": clean(ev.reason, DETAIL_LEN),
        "recipients": None if ev.to is None else json.dumps(ev.to, ensure_ascii=False),
        "state": PENDING,
        "release_event_id": None,
    }


def record_requested(session: Session, ev: ReleaseRequested) -> bool:
    """The request row, unless this message already has one (the first request stands)."""
    if session.scalar(select(ReleaseRequest.event_id)
                      .where(ReleaseRequest.ref_event_id == ev.ref_event_id)):
        return False
    session.execute(insert(ReleaseRequest).values(**request_row(ev)))
    return True


def record_released(session: Session, ev: MessageReleased) -> bool:
    """The release row and the entry's new state, unless already recorded."""
    if session.get(QuarantineRelease, ev.event_id) is not None:
        return False
    if session.scalar(select(QuarantineRelease.event_id)
                      .where(QuarantineRelease.ref_event_id == ev.ref_event_id)):
        return False  # released once already (by another event): the first one stands
    row = release_row(ev)
    session.execute(insert(QuarantineRelease).values(**row))
    # Whatever released it (an approval or a forced release), no request is left pending.
    session.execute(update(ReleaseRequest)
                    .where(ReleaseRequest.ref_event_id == ev.ref_event_id)
                    .values(state=RELEASED, release_event_id=ev.event_id))
    # A deleted entry stays deleted: the copy is gone whatever order events arrive in.
    session.execute(update(QuarantineEntry)
                    .where(QuarantineEntry.event_id == ev.ref_event_id,
                           QuarantineEntry.state != DELETED)
                    .values(state=RELEASED, updated_at=row["time"]))
    return True


# -- verify ---------------------------------------------------------------------------
Report = Callable[[str, str, str | None, str], None]  # (kind, where, event id, detail)


def check_release_events(conn: Connection, events: Iterable[MessageReleased | ReleaseRequested],
                         problem: Report, *, local_host: str | None = None,
                         since: datetime | None = None) -> None:
    """Release events against their rows, and the rows against the events.

    Each event's row must exist with the event's facts (who, which message, which
    request); an approval must name a request whose requester is not its approver;
    a row made on ``local_host`` at or after ``since`` (the oldest time the journal
    still covers) must have its event on the journal (else ``unlogged-row``).
    """
    seen: set[str] = set()
    for ev in events:
        seen.add(ev.event_id)
        if isinstance(ev, ReleaseRequested):
            _compare(conn, ReleaseRequest, "quarantine_release_requests", request_row(ev),
                     ("ref_event_id", "folder", "actor", "operator", "reason", "recipients"),
                     problem)
            continue
        _compare(conn, QuarantineRelease, "quarantine_releases", release_row(ev),
                 ("ref_event_id", "folder", "actor", "reason", "sha256", "forced",
                  "request_id", "requested_by"), problem)
        if ev.request_id is not None:
            req = conn.execute(select(ReleaseRequest.operator, ReleaseRequest.ref_event_id)
                               .where(ReleaseRequest.event_id == ev.request_id)).first()
            if req is None:
                problem("missing-row", "quarantine_release_requests", ev.request_id,
                        f"release {ev.event_id} approved a request SQL does not hold")
            elif req.ref_event_id != ev.ref_event_id:
                problem("log-mismatch", "quarantine_releases", ev.event_id,
                        "it approved a request for another message")
            if ev.requested_by is not None and ev.operator is not None \
                    and ev.requested_by == ev.operator:
                problem("four-eyes", "quarantine_releases", ev.event_id,
                        f"requested and approved by the same login ({ev.operator})")
            elif req is not None and ev.operator is not None and req.operator == ev.operator:
                problem("four-eyes", "quarantine_releases", ev.event_id,
                        f"the request's operator ({req.operator}) approved it")
    if local_host is None or since is None:
        return
    for model, table in ((ReleaseRequest, "quarantine_release_requests"),
                         (QuarantineRelease, "quarantine_releases")):
        for event_id in conn.scalars(select(model.event_id).where(
                model.host == local_host, model.time >= since)):
            if event_id not in seen:
                problem("unlogged-row", table, event_id,
                        "a row with no event on the journal, which covers its time")


def _compare(conn: Connection, model: Any, table: str, want: dict[str, Any],
             fields: tuple[str, ...], problem: Report) -> None:
    row = conn.execute(select(*(getattr(model, f) for f in fields))
                       .where(model.event_id == want["event_id"])).first()
    if row is None:
        problem("missing-row", table, want["event_id"], "the journal holds this event, SQL does not")
        return
    differ = [f for f, have in zip(fields, row, strict=True)
              if (bool(have) if isinstance(want[f], bool) else have) != want[f]]
    if differ:
        problem("log-mismatch", table, want["event_id"],
                f"{', '.join(differ)} differ from the journal's event")
