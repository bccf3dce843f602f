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

Where the quarantined file is needs no column: the archive consumer names it
from the event alone (``archive.consumer.message_name``: ``<unix time>.<event
id>.qscan`` in ``QUARANTINE_DIR/<folder>/new/`` or, once a mail client moved
it, ``cur/``), and ``quarantine_entries`` holds both the folder and the
received time, so ``archive.copies.copy_name(event_id, received_at)`` computes
it from the row.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from compliance.models import ADDRESS_LEN, DETAIL_LEN, QuarantineEntry, QuarantineRelease
from ingest.event import MessageReleased, utc
from ingest.summary_line import clean

# quarantine_entries.state values (the column is 16 characters).
QUARANTINED = "quarantined"
RELEASING = "releasing"  # claimed by a release in progress (see compliance.quarantine)
RELEASED = "released"
DELETED = "deleted"
STATES = (QUARANTINED, RELEASING, RELEASED, DELETED)




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
    }


def record_released(session: Session, ev: MessageReleased) -> bool:
    """The release row and the entry's new state, unless already recorded."""
    if session.get(QuarantineRelease, ev.event_id) is not None:
        return False
    if session.scalar(select(QuarantineRelease.event_id)
                      .where(QuarantineRelease.ref_event_id == ev.ref_event_id)):
        return False  # released once already (by another event): the first one stands
    row = release_row(ev)
    session.execute(insert(QuarantineRelease).values(**row))
    # A deleted entry stays deleted: the copy is gone whatever order events arrive in.
    session.execute(update(QuarantineEntry)
                    .where(QuarantineEntry.event_id == ev.ref_event_id,
                           QuarantineEntry.state != DELETED)
                    .values(state=RELEASED, updated_at=row["time"]))
    return True
