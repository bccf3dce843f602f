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
``released``. A pending request can instead be closed without a release
(``qscan quarantine deny``: a ``release.denied`` event; the row's ``state``
becomes ``denied``, or ``withdrawn`` when its requester closed it, with who,
which login, when and why). A message has one request: once denied or
withdrawn it stays quarantined (a release officer's ``--force`` still can).
:func:`check_release_events` is what ``qscan verify`` holds the events and
rows to (both directions, and never one login on both sides).

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

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.orm import Session

from compliance.models import (
    ADDRESS_LEN,
    DETAIL_LEN,
    QuarantineEntry,
    QuarantineRelease,
    ReleaseRequest,
)
from ingest.event import MessageReleased, ReleaseDenied, ReleaseRequested, utc
from ingest.summary_line import clean

# quarantine_entries.state values (the column is 16 characters).
QUARANTINED = "quarantined"
RELEASING = "releasing"  # claimed by a release in progress (see compliance.quarantine)
RELEASED = "released"
DELETED = "deleted"
STATES = (QUARANTINED, RELEASING, RELEASED, DELETED)
# quarantine_release_requests.state values (RELEASED as above)
PENDING = "pending"
DENIED = "denied"  # closed by another login (qscan quarantine deny)
WITHDRAWN = "withdrawn"  # closed by its requester



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


def denial_row(ev: ReleaseDenied) -> dict[str, Any]:
    """What a ``release.denied`` event sets on its request's row."""
    return {
        "state": WITHDRAWN if ev.withdrawn else DENIED,
        "denial_event_id": ev.event_id,
        "denied_at": utc(ev.time),
        "denied_by": clean(ev.actor, 255),
        "denied_operator": clean(ev.operator, 255),
        "denial_reason": clean(ev.reason, DETAIL_LEN),
    }


def record_denied(session: Session, ev: ReleaseDenied) -> bool:
    """Close the request the event names, unless it is closed already (the first close -
    a release or a denial - stands, whatever order a replay meets them in)."""
    done = session.execute(update(ReleaseRequest)
                           .where(ReleaseRequest.event_id == ev.request_id,
                                  ReleaseRequest.state == PENDING)
                           .values(**denial_row(ev)))
    return bool(done.rowcount)  # type: ignore[attr-defined]


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
    # (A request denied before a forced release stays denied: that is what happened to it.)
    session.execute(update(ReleaseRequest)
                    .where(ReleaseRequest.ref_event_id == ev.ref_event_id,
                           ReleaseRequest.state == PENDING)
                    .values(state=RELEASED, release_event_id=ev.event_id))
    # A deleted entry stays deleted: the copy is gone whatever order events arrive in.
    session.execute(update(QuarantineEntry)
                    .where(QuarantineEntry.event_id == ev.ref_event_id,
                           QuarantineEntry.state != DELETED)
                    .values(state=RELEASED, updated_at=row["time"]))
    return True


# -- verify ---------------------------------------------------------------------------
Report = Callable[[str, str, str | None, str], None]  # (kind, where, event id, detail)


ReleaseEvent = MessageReleased | ReleaseRequested | ReleaseDenied


def check_release_events(conn: Connection, events: Iterable[ReleaseEvent],
                         problem: Report, *, local_host: str | None = None,
                         since: datetime | None = None) -> None:
    """Release events against their rows, and the rows against the events.

    Each event's row must exist with the event's facts (who, which message, which
    request); an approval must name a request whose requester is not its approver;
    a denial must have closed the request it names, with its facts, as ``withdrawn``
    exactly when its login is the requester's; a row made on ``local_host`` at or
    after ``since`` (the oldest time the journal still covers) must have its event
    on the journal (else ``unlogged-row``) - a request closed as denied or withdrawn
    included (its ``release.denied``), and a request whose state was changed in SQL
    is ``inconsistent`` with its events.
    """
    seen: set[str] = set()
    for ev in events:
        seen.add(ev.event_id)
        if isinstance(ev, ReleaseDenied):
            _check_denial(conn, ev, problem)
            continue
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
    _check_states(conn, problem)
    if local_host is None or since is None:
        return
    for model, table in ((ReleaseRequest, "quarantine_release_requests"),
                         (QuarantineRelease, "quarantine_releases")):
        for event_id in conn.scalars(select(model.event_id).where(
                model.host == local_host, model.time >= since)):
            if event_id not in seen:
                problem("unlogged-row", table, event_id,
                        "a row with no event on the journal, which covers its time")
    r = ReleaseRequest
    for request_id, denial_id in conn.execute(select(r.event_id, r.denial_event_id).where(
            r.denial_event_id.is_not(None), r.denied_at >= since,
            or_(r.denied_by.like(f"%@{local_host}"), r.denied_by.like(f"%@{local_host})")))):
        if denial_id not in seen:
            problem("unlogged-row", "quarantine_release_requests", request_id,
                    f"closed by denial {denial_id}, which the journal does not hold though "
                    "it covers its time")


def _check_denial(conn: Connection, ev: ReleaseDenied, problem: Report) -> None:
    r = ReleaseRequest
    row = conn.execute(select(r.ref_event_id, r.operator, r.state, r.denial_event_id,
                              r.denied_by, r.denied_operator, r.denial_reason, r.denied_at)
                       .where(r.event_id == ev.request_id)).first()
    if row is None:
        problem("missing-row", "quarantine_release_requests", ev.request_id,
                f"denial {ev.event_id} closed a request SQL does not hold")
        return
    if row.ref_event_id != ev.ref_event_id:
        problem("log-mismatch", "quarantine_release_requests", ev.request_id,
                f"denial {ev.event_id} names another message than the request")
    if ev.withdrawn != (row.operator == ev.operator):
        problem("inconsistent", "quarantine_release_requests", ev.request_id,
                f"denial {ev.event_id} says {'withdrawn' if ev.withdrawn else 'denied'}, but "
                f"its login ({ev.operator}) is {'not ' if ev.withdrawn else ''}the requester's")
    if row.denial_event_id is None and row.state == RELEASED:
        return  # released first (a forced release): the denial came too late, and says so
    want = denial_row(ev)
    fields = ("state", "denial_event_id", "denied_by", "denied_operator", "denial_reason",
              "denied_at")
    denied_at = utc(row.denied_at) if row.denied_at is not None else None
    differ = [f for f, have in zip(fields, (row.state, row.denial_event_id, row.denied_by,
                                            row.denied_operator, row.denial_reason, denied_at),
                                   strict=True) if have != want[f]]
    if differ:
        problem("log-mismatch", "quarantine_release_requests", ev.request_id,
                f"{', '.join(differ)} differ from its denial {ev.event_id}")


def _check_states(conn: Connection, problem: Report) -> None:
    """A request's state must be what its events made it: a closed request names the event
    that closed it, and an open one has none (a request reopened in SQL could be approved
    after its denial; one closed in SQL without an event hides a pending release)."""
    r = ReleaseRequest
    for row in conn.execute(select(r.event_id, r.state, r.release_event_id,
                                   r.denial_event_id, r.denied_at, r.denied_by,
                                   r.denied_operator, r.denial_reason)):
        closed_by = {RELEASED: row.release_event_id, DENIED: row.denial_event_id,
                     WITHDRAWN: row.denial_event_id}.get(row.state)
        denial = (row.denied_at, row.denied_by, row.denied_operator, row.denial_reason)
        if row.state == PENDING:
            bad = row.release_event_id is not None or row.denial_event_id is not None
        else:
            bad = closed_by is None or (row.state in (DENIED, WITHDRAWN)
                                        and row.release_event_id is not None)
        # a denial's facts without the denial (an open request made to look refused)
        bad = bad or (row.denial_event_id is None and any(x is not None for x in denial))
        if bad:
            problem("inconsistent", "quarantine_release_requests", row.event_id,
                    f"state {row.state!r} does not match the events that closed it "
                    f"(release {row.release_event_id}, denial {row.denial_event_id})")


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
