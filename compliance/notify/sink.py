"""``NotifySink``: the notify consumer's projection of the log into the outbox.

For each batch: decide who is told of each event (audience.plan), render and
compose every notice, then insert the outbox rows and store the consumer's
position in one SQL transaction — a crash either keeps both or neither, and a
replay finds the rows already there. Delivery follows the commit, in the same
process: right after each batch, and from a background thread every
``interval`` seconds so that retries happen while the log is quiet.

``needs_raw`` is False: the raw message is only wanted for its header block
(List-Id, Precedence, Auto-Submitted), and only for the rare events that may
produce a notice, so it is fetched by event id (``JournalHeaders``) instead of
reading every message of the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from compliance.db import check_schema, make_engine, session_factory
from compliance.models import ConsumerPosition
from compliance.notify.audience import Audience, NotifyPolicy, Plan, kind_of, plan, too_old
from compliance.notify.compose import Identity, compose, message_id
from compliance.notify.delivery import Transport
from compliance.notify.marks import NOTIFICATION_HEADER, MailMarks, header_block, read_marks
from compliance.notify.outbox import Clock, Courier, Outbox, PassResult, RetryPolicy, add_rows, utcnow
from compliance.notify.render import Renderer
from ingest.event import MessageScanned
from ingest.journal import Journal
from ingest.log import LogRecord

log = logging.getLogger(__name__)

HeaderSource = Callable[[str], bytes | None]


class JournalHeaders:
    """The header block of an event's raw message, read from the journal by event id."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._journal: Journal | None = None

    def __call__(self, event_id: str) -> bytes | None:
        if self._journal is None:
            self._journal = Journal(self.path, readonly=True)
        entry = self._journal.get(event_id, with_raw=True)
        return header_block(entry.raw) if entry is not None and entry.raw else None

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


@dataclass
class Notifier:
    """Everything that turns an event into outbox rows (no database, no network)."""

    policy: NotifyPolicy
    renderer: Renderer
    identity: Identity
    headers: HeaderSource | None = None
    forged_marks: int = field(default=0, init=False)  # X-qscan-Notification headers not ours
    too_old: int = field(default=0, init=False)  # events older than policy.max_age (replays)

    def marks(self, event: MessageScanned) -> MailMarks | None:
        """None when the headers cannot be read: then no sender is answered.

        Only a mark signed with our key, on mail to the notice's own recipient, counts as
        one of our notices; any other ``X-qscan-Notification`` is logged and ignored."""
        block = header_block(event.raw_message) if event.raw_message else None
        if block is None and self.headers is not None:
            try:
                block = self.headers(event.event_id)
            except Exception:  # a journal hiccup must not stop the consumer
                log.exception("cannot read the headers of %s", event.event_id)
        if not block:
            return None
        recipients = event.envelope.recipients
        marks = read_marks(block, lambda value: self.identity.mark_key.verify(value, recipients))
        if marks.forged_mark:
            self.forged_marks += 1
            log.info("event %s: forged or foreign %s header ignored (treated as ordinary mail)",
                     event.event_id, NOTIFICATION_HEADER)
        return marks

    def plan(self, event: MessageScanned, now: datetime | None = None) -> Plan:
        return plan(event, self.marks(event), self.policy, now or datetime.now(UTC))

    def rows(self, event: MessageScanned, now: datetime) -> list[dict[str, Any]]:
        if too_old(event, self.policy, now):  # before reading any headers: a replay is cheap
            self.too_old += 1
            log.debug("event %s from %s is older than notify.max_age: nobody is told",
                      event.event_id, event.time.isoformat())
            return []
        out = []
        for notice in self.plan(event, now).notices:
            row: dict[str, Any] = {
                "event_id": event.event_id, "recipient": notice.address, "kind": notice.kind.value,
                "audience": notice.audience.value, "language": notice.language,
                "envelope_sender": self.identity.envelope_sender, "state": "pending", "attempts": 0,
                "created_at": now, "next_attempt_at": now, "claimed_at": None, "sent_at": None,
                "last_error": None,
            }
            try:
                rendered = self.renderer.render(event, notice)
                in_reply_to = event.headers.message_id if notice.audience == Audience.SENDER else None
                row["message_id"], row["message"] = compose(
                    rendered, notice, event_id=event.event_id, identity=self.identity, when=now,
                    in_reply_to=in_reply_to)
            except Exception as exc:  # a broken custom template: record it, keep consuming
                log.exception("cannot render %s/%s for %s", notice.kind, notice.audience, event.event_id)
                row.update(message_id=message_id(event.event_id, notice.address, notice.kind.value,
                                                 self.identity.host),
                           message=None, state="failed", last_error=f"render: {exc}"[:1000])
            out.append(row)
        return out


class NotifySink:
    """Sink for ``run_consumer``: outbox rows and position in one transaction, then delivery."""

    name = "notify"
    needs_raw = False
    # Fed from Kafka (no journal on this host), keep the raw message the topic carries:
    # the header block decides who may be told (lists, bulk, auto-replies).
    raw_from_topic = True

    def __init__(self, url: str, notifier: Notifier, transport: Callable[[], Transport], *,
                 retry: RetryPolicy | None = None, deliver: bool = True, interval: float | None = None,
                 clock: Clock = utcnow, name: str = "notify") -> None:
        self.name = name  # 'notify', or 'notify@kafka.TOPIC.PARTITION' per Kafka partition
        self.engine = make_engine(url)
        check_schema(self.engine)
        self.notifier = notifier
        self.clock = clock
        self.deliver_after_batch = deliver
        self.outbox = Outbox(self.engine, retry, clock)
        self.courier = Courier(self.outbox, transport)
        self._write = session_factory(self.engine, write=True)
        self._read = session_factory(self.engine)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(target=self._retry_loop, args=(interval,),
                                            name="notify-delivery", daemon=True)
            self._thread.start()

    # -- Sink protocol ---------------------------------------------------------------------
    def position(self) -> int:
        with self._read() as s:
            pos = s.scalar(select(ConsumerPosition.position).where(ConsumerPosition.name == self.name))
        return int(pos or 0)

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        now = self.clock()
        rows: list[dict[str, Any]] = []
        old = self.notifier.too_old
        for rec in records:
            ev = rec.event
            if isinstance(ev, MessageScanned) and kind_of(ev) is not None:
                rows.extend(self.notifier.rows(ev, now))
        if self.notifier.too_old > old:
            log.info("%d event(s) older than notify.max_age (%g s) up to position %d: nobody told",
                     self.notifier.too_old - old, self.notifier.policy.max_age, position)
        with self._write.begin() as session:
            added = add_rows(session, rows)
            self._store_position(session, position)
        if added:
            log.info("%d notification(s) queued up to position %d", added, position)
        if self.deliver_after_batch and added:
            self.deliver()

    def set_position(self, position: int) -> None:
        with self._write.begin() as session:
            self._store_position(session, position)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        headers = self.notifier.headers
        if isinstance(headers, JournalHeaders):
            headers.close()
        self.engine.dispose()

    # -- delivery --------------------------------------------------------------------------
    def deliver(self, *, ignore_schedule: bool = False) -> PassResult:
        return self.courier.deliver(ignore_schedule=ignore_schedule)

    def _retry_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.deliver()
            except Exception:
                log.exception("notification delivery pass failed")

    def _store_position(self, session: Session, position: int) -> None:
        values = {"position": position, "updated_at": datetime.now(UTC)}
        done = session.execute(
            update(ConsumerPosition).where(ConsumerPosition.name == self.name).values(**values))
        if not done.rowcount:  # type: ignore[attr-defined]
            session.execute(insert(ConsumerPosition).values(name=self.name, **values))
