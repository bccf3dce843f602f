"""Legal holds: a named matter whose messages must survive retention and quarantine expiry.

A hold selects messages by custodians (addresses: mail they sent or received,
``*`` patterns allowed), an optional date range, and optional audit-search
filters (``compliance.audit.Filters``). Holds are matched at deletion time, not
copied onto rows, so a hold also covers mail that arrives after it was created
(a custodian's new mail is held too) and releasing it needs no row updates.

A hold can also be made from a discovery search (``qscan hold create --query``,
docs/discovery.md): it then holds exactly the messages the search found when the hold
was made, every copy, recorded by event id and hash (``hold_items``) beside the search
itself (``holds.discovery``); new mail that would match is not covered (re-run the search,
``qscan hold show --rerun``, to see it). Retention matches such a hold by event id.

Creating and releasing a hold is an event on the log first (the durable
record), then a row in SQL (compliance.records).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, and_, false, func, or_, select
from sqlalchemy.orm import Session

from compliance.audit import FilterError, Filters, party_clause
from compliance.db import session_factory
from compliance.models import MATTER_LEN, Deletion, Hold, HoldItem, Message
from compliance.patterns import like_pattern
from compliance.records import record_hold, record_release
from ingest.event import (
    AnyEvent,
    DiscoveryQuery,
    HoldCreated,
    HoldReleased,
    SelectedItem,
    utc,
)
from ingest.ids import uuid7

if TYPE_CHECKING:
    from compliance.discovery.index import DiscoveryIndex
    from compliance.discovery.selection import Change

LogAppend = Callable[[AnyEvent], None]


class HoldError(ValueError):
    """A hold that cannot be created or released (duplicate matter, unknown matter...)."""


@dataclass(frozen=True)
class HoldSpec:
    """What a hold covers."""

    matter: str
    custodians: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    query: Filters = field(default_factory=Filters)
    # a hold by query: the search that chose its messages (held by id: ``hold_items``)
    discovery: DiscoveryQuery | None = None
    hold_id: str | None = None  # of a stored hold (its items are matched by it)

    def __post_init__(self) -> None:
        if not self.matter.strip() or len(self.matter) > MATTER_LEN:
            raise HoldError(f"a matter name is 1 to {MATTER_LEN} characters")
        if any(ord(c) < 32 for c in self.matter):
            raise HoldError("a matter name cannot contain control characters")
        if not self.custodians and not self.query.as_json() and self.discovery is None:
            raise HoldError("a hold needs custodians (--custodian), filters, or a discovery "
                            "query (--query)")
        if self.since and self.until and self.since >= self.until:
            raise HoldError("--since must be before --until")
        if self.query.since or self.query.until:
            raise HoldError("give the hold's date range as its own since/until")

    def clause(self) -> ColumnElement[bool]:
        """SQL condition on ``messages``: the message is covered by this hold."""
        conds: list[ColumnElement[bool]] = list(self.query.where())
        if self.discovery is not None:
            conds.append(Message.event_id.in_(
                select(HoldItem.event_id).where(HoldItem.hold_id == (self.hold_id or ""))))
        if self.custodians:
            conds.append(or_(*(party_clause(c) for c in self.custodians)))
        if self.since:
            conds.append(Message.received_at >= utc(self.since))
        if self.until:
            conds.append(Message.received_at < utc(self.until))
        return and_(*conds)

    def describe(self) -> dict[str, Any]:
        return {"matter": self.matter, "custodians": list(self.custodians),
                "since": utc(self.since).isoformat() if self.since else None,
                "until": utc(self.until).isoformat() if self.until else None,
                "query": self.query.as_json(),
                "discovery": self.discovery.model_dump() if self.discovery else None}


def spec_of(row: Hold) -> HoldSpec:
    try:
        found = (DiscoveryQuery.model_validate_json(row.discovery)
                 if row.discovery is not None else None)
        return HoldSpec(matter=row.matter, custodians=tuple(json.loads(row.custodians)),
                        since=row.since, until=row.until,
                        query=Filters.from_json(json.loads(row.query)), discovery=found,
                        hold_id=row.hold_id)
    except (FilterError, ValueError) as exc:  # pragma: no cover - only a hand-edited row
        raise HoldError(f"hold {row.hold_id} ({row.matter}) is unreadable: {exc}") from exc


def active(session: Session) -> list[Hold]:
    return list(session.scalars(select(Hold).where(Hold.released_at.is_(None))
                                .order_by(Hold.created_at)))


def held_clause(holds: Iterable[Hold]) -> ColumnElement[bool]:
    """Covered by any of ``holds`` (``false()`` when there are none)."""
    clauses = [spec_of(h).clause() for h in holds]
    return or_(*clauses) if clauses else false()


def held_ids(session: Session, event_ids: Iterable[str]) -> set[str]:
    """Which of these messages an active hold covers."""
    ids = list(event_ids)
    holds = active(session)
    if not ids or not holds:
        return set()
    stmt = select(Message.event_id).where(Message.event_id.in_(ids), held_clause(holds))
    return set(session.scalars(stmt))


def covering(engine: Engine, event_id: str, *, include_released: bool = False) -> list[Hold]:
    """The holds (active, or all) that cover one message."""
    with session_factory(engine)() as session:
        stmt = select(Hold).order_by(Hold.created_at)
        if not include_released:
            stmt = stmt.where(Hold.released_at.is_(None))
        out = []
        for hold in session.scalars(stmt):
            hit = session.scalar(select(Message.event_id).where(
                Message.event_id == event_id, spec_of(hold).clause()))
            if hit:
                out.append(hold)
        return out


def find(session: Session, matter_or_id: str, *, active_only: bool = False) -> Hold:
    """A hold by id, by matter (the active one, else the latest), or by the first 8+ characters
    of its id (a prefix that starts several ids is refused, naming them)."""
    hold = session.get(Hold, matter_or_id)
    ident = matter_or_id.strip().lower()
    if hold is None and len(ident) >= 8 and not session.scalar(
            select(Hold.hold_id).where(Hold.matter == matter_or_id).limit(1)):
        found = list(session.scalars(select(Hold).where(Hold.hold_id.like(
            like_pattern(ident) + "%", escape="\\")).order_by(Hold.hold_id).limit(3)))
        if len(found) > 1:
            raise HoldError(f"{matter_or_id!r} is the start of several hold ids "
                            f"({', '.join(h.hold_id for h in found[:2])}, ...): give more of it")
        hold = found[0] if found else None
    if hold is None:
        stmt = select(Hold).where(Hold.matter == matter_or_id)
        if active_only:
            stmt = stmt.where(Hold.released_at.is_(None))
        hold = session.scalars(stmt.order_by(Hold.released_at.is_(None).desc(),
                                             Hold.created_at.desc())).first()
    if hold is None or (active_only and hold.released_at is not None):
        what = "no active hold" if active_only else "no hold"
        raise HoldError(f"{what} for matter {matter_or_id!r} (see `qscan hold list`)")
    return hold


def create(engine: Engine, log: LogAppend, spec: HoldSpec, *, reason: str, actor: str,
           host: str, items: Iterable[SelectedItem] = ()) -> HoldCreated:
    """Put a hold in place: on the log first, then in SQL. A hold by query
    (``spec.discovery``) holds ``items``, the messages its search found."""
    items = list(items)
    if items and spec.discovery is None:
        raise HoldError("messages are held by id only for a hold by query")
    if not reason.strip():
        raise HoldError("say why (--reason): holds are evidence too")
    with session_factory(engine, write=True).begin() as session:
        existing = session.scalar(select(Hold.hold_id).where(
            Hold.matter == spec.matter, Hold.released_at.is_(None)))
        if existing:
            raise HoldError(f"matter {spec.matter!r} already has an active hold ({existing})")
        ev = HoldCreated(event_id=str(uuid7()), time=datetime.now(UTC), host=host,
                         matter=spec.matter, custodians=list(spec.custodians),
                         since=spec.since, until=spec.until, query=spec.query.as_json(),
                         reason=reason, actor=actor, discovery=spec.discovery, items=items)
        log(ev)
        record_hold(session, ev)
    return ev


def release(engine: Engine, log: LogAppend, matter_or_id: str, *, reason: str, actor: str,
            host: str) -> HoldReleased:
    if not reason.strip():
        raise HoldError("say why (--reason) the hold ends")
    with session_factory(engine, write=True).begin() as session:
        hold = find(session, matter_or_id, active_only=True)
        ev = HoldReleased(event_id=str(uuid7()), time=datetime.now(UTC), host=host,
                          hold_id=hold.hold_id, matter=hold.matter, reason=reason, actor=actor)
        log(ev)
        record_release(session, ev)
    return ev


def held_items(session: Session, hold_id: str) -> list[SelectedItem]:
    """A hold by query's messages, as recorded (in the order the search found them)."""
    return [SelectedItem(event_id=e, sha256=h) for e, h in session.execute(
        select(HoldItem.event_id, HoldItem.sha256).where(HoldItem.hold_id == hold_id)
        .order_by(HoldItem.id))]


@dataclass(frozen=True)
class Rerun:
    """A hold by query's search run again (``qscan hold show --rerun``)."""

    hold_id: str
    matter: str
    change: Change
    deleted: dict[str, datetime]  # removed messages with a tombstone: when they were deleted


def rerun(engine: Engine, index: DiscoveryIndex, matter_or_id: str) -> Rerun:
    """Run a hold's recorded discovery search again over ``index`` and
    compare: messages it finds now and did not then, and held messages it no longer finds
    (those deleted since - only possible after a release - say when)."""
    from compliance.discovery.selection import rerun as run_again

    with session_factory(engine)() as session:
        hold = find(session, matter_or_id)
        spec = spec_of(hold)
        if spec.discovery is None:
            raise HoldError(f"hold {hold.hold_id} ({hold.matter}) was not made from a discovery "
                            "query: there is no search to run again")
        items = held_items(session, hold.hold_id)
    change = run_again(index, spec.discovery, items)
    deleted: dict[str, datetime] = {}
    gone = [i.event_id for i in change.removed]
    with session_factory(engine)() as session:
        for start in range(0, len(gone), 500):
            for ref, when in session.execute(select(Deletion.ref_event_id, Deletion.time)
                                             .where(Deletion.ref_event_id.in_(gone[start:start + 500]))):
                deleted[ref] = utc(when)
    return Rerun(hold.hold_id, hold.matter, change, deleted)


def query_text(query: dict[str, Any]) -> str:
    """A hold's filters as the options that select them (``--subject contract --action
    quarantine``); "" for none (custodians and dates alone)."""
    return " ".join(f"--{k.replace('_', '-')} {json.dumps(v) if ' ' in str(v) else v}"
                    for k, v in query.items() if v not in (None, ""))


def listing(engine: Engine, *, include_released: bool = False) -> list[dict[str, Any]]:
    """Holds with how many stored messages each covers right now."""
    out = []
    with session_factory(engine)() as session:
        stmt = select(Hold).order_by(Hold.created_at)
        if not include_released:
            stmt = stmt.where(Hold.released_at.is_(None))
        for hold in session.scalars(stmt):
            spec = spec_of(hold)
            covered = session.scalar(select(func.count()).select_from(Message).where(spec.clause()))
            out.append({
                "hold_id": hold.hold_id, "matter": hold.matter, **spec.describe(),
                "reason": hold.reason, "created_by": hold.created_by,
                "created_at": utc(hold.created_at).isoformat(),
                "released_at": utc(hold.released_at).isoformat() if hold.released_at else None,
                "released_by": hold.released_by, "release_reason": hold.release_reason,
                "messages": int(covered or 0),
            })
    return out


def show(engine: Engine, matter_or_id: str) -> dict[str, Any]:
    """One hold as ``listing`` gives it, with the messages a hold by query holds (``items``)."""
    with session_factory(engine)() as session:
        hold_id = find(session, matter_or_id).hold_id
        items = held_items(session, hold_id)
    info = next(h for h in listing(engine, include_released=True) if h["hold_id"] == hold_id)
    return {**info, "items": [i.model_dump() for i in items]}
