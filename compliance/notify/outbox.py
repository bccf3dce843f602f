"""The outbox: notification rows and their lifecycle, and the pass that delivers them.

States::

    pending ──claim──► sending ──commit point──► indoubt ──250 / exit 0──► sent
       ▲                  │                         │
       └── temporary ─────┴──── failure known ──────┘      permanent, or too old ──► failed

A row is claimed with a conditional UPDATE (only one process or thread wins
it). A claim whose owner died before the commit point is *stale* after a lease
and is taken again: nothing was handed over yet. A row left ``indoubt`` by a
crash may have been delivered, so it is never resent by itself (``qscan notify
retry`` does that on purpose): a crash never sends twice. Rows are keyed by
(event id, recipient, kind), so a replay of the log adds nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from compliance.db import session_factory
from compliance.models import DETAIL_LEN, Notification
from compliance.notify.delivery import DeliveryError, Transport
from compliance.notify.settings import NotifySettings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class RetryPolicy:
    """When a notice is tried again: [notify]'s retry_base, retry_max and give_up_after."""

    settings: NotifySettings = field(default_factory=NotifySettings)
    lease: float = 600.0  # a 'sending' claim older than this belongs to a dead process

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.settings.retry_max,
                                     self.settings.retry_base * 2 ** max(0, attempts - 1)))


@dataclass
class PassResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    errors: list[str] = field(default_factory=list)


def add_rows(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert the rows whose (event, recipient, kind) is not there yet; returns how many."""
    if not rows:
        return 0
    events = sorted({r["event_id"] for r in rows})
    present = {(e, r, k) for e, r, k in session.execute(
        select(Notification.event_id, Notification.recipient, Notification.kind).where(
            Notification.event_id.in_(events)))}
    fresh, seen = [], set(present)
    for r in rows:
        key = (r["event_id"], r["recipient"], r["kind"])
        if key not in seen:
            seen.add(key)
            fresh.append(r)
    if fresh:
        session.execute(insert(Notification), fresh)
    return len(fresh)


class Outbox:
    """Row-level operations; every one is its own short transaction."""

    def __init__(self, engine: Engine, retry: RetryPolicy | None = None, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._write = session_factory(engine, write=True)
        self._read = session_factory(engine)

    def due(self, limit: int = 100, *, ignore_schedule: bool = False) -> list[int]:
        now = self.clock()
        pending = Notification.state == "pending"
        if not ignore_schedule:
            pending = and_(pending, Notification.next_attempt_at <= now)
        stale = and_(Notification.state == "sending",
                     Notification.claimed_at < now - timedelta(seconds=self.retry.lease))
        with self._read() as s:
            return list(s.scalars(select(Notification.id).where(or_(pending, stale))
                                  .order_by(Notification.next_attempt_at, Notification.id).limit(limit)))

    def claim(self, row_id: int) -> Notification | None:
        """Take a due row for sending; None when another worker got it first."""
        now = self.clock()
        with self._write.begin() as s:
            done = s.execute(
                update(Notification)
                .where(Notification.id == row_id, or_(
                    Notification.state == "pending",
                    and_(Notification.state == "sending",
                         Notification.claimed_at < now - timedelta(seconds=self.retry.lease))))
                .values(state="sending", claimed_at=now, attempts=Notification.attempts + 1)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return None
            row = s.get(Notification, row_id)
            assert row is not None
            s.expunge(row)
            return row

    def _set(self, row_id: int, **values: Any) -> None:
        with self._write.begin() as s:
            s.execute(update(Notification).where(Notification.id == row_id).values(**values))

    def mark_in_doubt(self, row_id: int) -> None:
        self._set(row_id, state="indoubt")

    def mark_sent(self, row_id: int) -> None:
        self._set(row_id, state="sent", sent_at=self.clock(), last_error=None)

    def mark_failed(self, row: Notification, error: str, *, permanent: bool = False,
                    in_doubt: bool = False) -> str:
        """Record a failed attempt; returns the row's new state."""
        now = self.clock()
        error = error[:DETAIL_LEN]
        if in_doubt:
            state = "indoubt"
        elif permanent or now - aware(row.created_at) > timedelta(seconds=self.retry.settings.give_up_after):
            state = "failed"
        else:
            state = "pending"
        self._set(row.id, state=state, last_error=error,
                  next_attempt_at=now + self.retry.delay(row.attempts))
        return state

    def requeue(self, *, ids: Sequence[int] = (), event_id: str | None = None,
                states: Sequence[str] = ("indoubt", "failed")) -> int:
        """Make rows due now again (an operator's decision: an in-doubt one may then arrive twice)."""
        cond: list[ColumnElement[bool]] = [Notification.state.in_(list(states))]
        if ids:
            cond.append(Notification.id.in_(list(ids)))
        if event_id:
            cond.append(Notification.event_id == event_id)
        with self._write.begin() as s:
            done = s.execute(update(Notification).where(*cond).values(
                state="pending", next_attempt_at=self.clock(), claimed_at=None))
            return int(done.rowcount)  # type: ignore[attr-defined]

    def counts(self) -> dict[str, int]:
        with self._read() as s:
            return {state: int(n) for state, n in s.execute(
                select(Notification.state, func.count()).group_by(Notification.state))}

    def rows(self, *, state: str | None = None, event_id: str | None = None,
             limit: int = 50) -> list[Notification]:
        query = select(Notification).order_by(Notification.id.desc()).limit(limit)
        if state:
            query = query.where(Notification.state == state)
        if event_id:
            query = query.where(Notification.event_id == event_id)
        with self._read() as s:
            found = list(s.scalars(query))
            for row in found:
                s.expunge(row)
            return found


class Courier:
    """Delivery passes over the outbox; one at a time per process (a lock), any number of processes."""

    def __init__(self, outbox: Outbox, transport: Callable[[], Transport]) -> None:
        self.outbox = outbox
        self.transport = transport
        self._lock = threading.Lock()
        # Told (kind, audience, outcome) after every attempt: outcome is "sent", or the state a
        # failure left the row in ("pending" = retried later, "indoubt", "failed"). Never an
        # address. Set by the metrics endpoint (qscan/ops/metrics.py).
        self.on_outcome: Callable[[str, str, str], None] | None = None

    def _tell(self, row: Notification, outcome: str) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(row.kind, row.audience, outcome)
            except Exception:  # counting must never stop a delivery pass
                log.debug("notification outcome observer failed", exc_info=True)

    def deliver(self, *, limit: int = 200, ignore_schedule: bool = False) -> PassResult:
        result = PassResult()
        with self._lock:
            ids = self.outbox.due(limit, ignore_schedule=ignore_schedule)
            if not ids:
                return result
            transport = self.transport()
            try:
                for row_id in ids:
                    if self._one(transport, row_id, result):
                        break
            finally:
                transport.close()
        return result

    def _one(self, transport: Transport, row_id: int, result: PassResult) -> bool:
        """Send one row; True when the relay is down and the pass should end."""
        row = self.outbox.claim(row_id)
        if row is None:
            return False
        if row.message is None:
            self.outbox.mark_failed(row, row.last_error or "not rendered", permanent=True)
            result.failed += 1
            self._tell(row, "failed")
            return False
        try:
            transport.send(row.envelope_sender, row.recipient, row.message,
                           lambda: self.outbox.mark_in_doubt(row_id))
        except DeliveryError as exc:
            state = self.outbox.mark_failed(row, str(exc), permanent=exc.permanent, in_doubt=exc.in_doubt)
            result.errors.append(f"{row.recipient}: {exc}")
            if state == "pending":
                result.deferred += 1
            elif state == "indoubt":
                result.in_doubt += 1
            else:
                result.failed += 1
            log.warning("notification %s to %s (%s): %s; now %s", row.id, row.recipient, row.kind, exc, state)
            self._tell(row, state)
            return exc.relay_down
        self.outbox.mark_sent(row_id)
        result.sent += 1
        self._tell(row, "sent")
        log.info("notification %s sent to %s (%s/%s, %s)", row.id, row.recipient, row.kind,
                 row.audience, row.language)
        return False
