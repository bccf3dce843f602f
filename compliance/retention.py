"""Retention: how long stored copies are kept, and lawful deletion with tombstones.

Rules are tried in order; the first whose conditions all hold decides how many
days a message's stored copy is kept (``None``: forever); a message no rule
matches gets the default. Conditions: ``domain`` (the sender's or any
recipient's, ``*`` patterns), ``address`` (sender or any recipient), ``direction``
(inbound/outbound/local) and ``verdict`` (the category: clean, spam, virus...).

Deleting a copy (``delete_copies``, also the entry point for quarantine expiry)
is, per batch, in one SQL transaction: re-check the legal holds (PostgreSQL:
with the holds table locked against a hold being created meanwhile), append a
``message.deleted`` event to the log, write the chained tombstone and mark the
row; only after the commit are the files unlinked. A crash in between leaves
tombstones whose files still exist: ``qscan verify`` notes them and the next
run finishes them (``finish_pending``). A copy that does not match its row is
never deleted: that is evidence of tampering and is reported instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, not_, or_, select, text
from sqlalchemy.orm import Session

from compliance import holds
from compliance.audit import FilterError, Filters, party_clause
from compliance.chain import ChainWriter
from compliance.copystore import CopyStore, MessageFacts, StoredCopy
from compliance.db import session_factory
from compliance.models import Deletion, Message, QuarantineEntry, Recipient
from compliance.records import record_deletion
from compliance.settings import RetentionError, RetentionPolicy, RetentionRule
from compliance.verify import expected_location
from ingest.event import AnyEvent, MessageDeleted, utc
from ingest.ids import uuid7

log = logging.getLogger(__name__)
LogAppend = Callable[[AnyEvent], None]
BATCH = 200


def clause(rule: RetentionRule) -> ColumnElement[bool]:
    """The SQL condition of one rule."""
    conds: list[ColumnElement[bool]] = []
    try:
        conds += Filters(domain=rule.domain, direction=rule.direction,
                         category=rule.verdict).where()
    except FilterError as exc:  # pragma: no cover - __post_init__ checked the same
        raise RetentionError(f"rule {rule.name!r}: {exc}") from exc
    if rule.address:
        conds.append(party_clause(rule.address))
    return and_(*conds) if conds else and_(Message.event_id.is_not(None))


def tiers(policy: RetentionPolicy) -> Iterator[tuple[str, int | None, ColumnElement[bool]]]:
    """(rule name, days, condition) where each condition excludes earlier rules' mail."""
    earlier: list[ColumnElement[bool]] = []
    for rule in policy.rules:
        cond = and_(clause(rule), *(not_(e) for e in earlier))
        earlier.append(clause(rule))
        yield rule.name, rule.days, cond
    yield "default", policy.default_days, and_(*(not_(e) for e in earlier)) if earlier else \
        and_(Message.event_id.is_not(None))


# A message has a stored copy to expire when the archive consumer kept one.
_HAS_COPY = or_(Message.action == "quarantine",
            and_(Message.action.in_(("deliver", "drop")), Message.queue_status != "failed"))


@dataclass
class Candidate:
    facts: MessageFacts
    host: str
    chain_hash: str | None
    rule: str
    days: int


@dataclass
class Outcome:
    """What a run did (or, dry, would do)."""

    deleted: dict[str, int] = field(default_factory=dict)  # rule -> copies deleted
    held: int = 0
    problems: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    finished: int = 0  # pending deletions completed from an earlier run

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def candidates(engine: Engine, policy: RetentionPolicy,
               archived: Callable[[str, str, list[str]], bool], *,
               now: datetime | None = None) -> Iterator[list[Candidate]]:
    """Expired messages with a copy, not yet deleted, in batches; holds are applied later.

    ``archived(event_id, sender, recipients)``: whether a message should have an archive
    copy - the decision the archive consumer recorded, else today's settings
    (archive.copies.archive_judge) - so a filter changed since never strands old copies."""
    now = now or datetime.now(UTC)
    for rule, days, cond in tiers(policy):
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        last = ""
        while True:
            stmt = (select(Message.event_id, Message.received_at, Message.host, Message.action,
                           Message.category, Message.queue_status, Message.sender,
                           Message.raw_sha256, Message.chain_hash, QuarantineEntry.folder)
                    .outerjoin(QuarantineEntry, QuarantineEntry.event_id == Message.event_id)
                    .where(Message.received_at < cutoff, Message.deleted_at.is_(None), _HAS_COPY,
                           cond, Message.event_id > last)
                    .order_by(Message.event_id).limit(BATCH))
            with engine.connect() as conn:
                rows = conn.execute(stmt).all()
                recipients = _recipients(conn, [r.event_id for r in rows])
            if not rows:
                break
            batch = []
            for r in rows:
                rcpts = recipients.get(r.event_id, [])
                location = expected_location(r.action, r.category, r.queue_status, r.folder,
                                             archived(r.event_id, r.sender, rcpts))
                received = utc(r.received_at)
                batch.append(Candidate(
                    MessageFacts(r.event_id, received, r.sender, rcpts, r.raw_sha256, location),
                    r.host, r.chain_hash, rule, days))
            yield batch
            last = rows[-1].event_id


def _recipients(conn: Any, ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if ids:
        stmt = (select(Recipient.event_id, Recipient.address)
                .where(Recipient.event_id.in_(list(ids))).order_by(Recipient.id))
        for event_id, address in conn.execute(stmt):
            out.setdefault(event_id, []).append(address)
    return out


def _lock_holds(session: Session) -> None:
    # A hold created while we delete must either be seen by our check or wait for us.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE holds IN SHARE MODE"))


def delete_copies(engine: Engine, store: CopyStore, log_append: LogAppend,
                  batch: Sequence[Candidate], *, actor: str, host: str, reason: str,
                  dry_run: bool = False, outcome: Outcome | None = None) -> Outcome:
    """Delete the stored copies of ``batch`` lawfully (see the module docstring)."""
    outcome = outcome or Outcome()
    ready: list[tuple[Candidate, list[StoredCopy]]] = []
    for cand in batch:
        copies = store.locate(cand.facts)
        if not copies:
            if cand.facts.location is not None:
                outcome.problems.append(f"{cand.facts.event_id}: its stored copy is missing "
                                        "(not deleted: run `qscan verify`)")
            continue
        bad = [(c, t) for c in copies if (t := store.check(c, cand.facts))]
        if bad:
            outcome.problems.extend(f"{c.path}: {t} (not deleted: run `qscan verify`)"
                                    for c, t in bad)
            continue
        ready.append((cand, copies))
    if not ready:
        return outcome
    if dry_run:
        with session_factory(engine)() as session:
            held = holds.held_ids(session, (c.facts.event_id for c, _ in ready))
        _count(outcome, [(c, cs) for c, cs in ready if c.facts.event_id not in held], len(held))
        return outcome
    to_unlink: list[StoredCopy] = []
    with session_factory(engine, write=True).begin() as session:
        _lock_holds(session)
        held = holds.held_ids(session, (c.facts.event_id for c, _ in ready))
        ready = [(c, copies) for c, copies in ready if c.facts.event_id not in held]
        _count(outcome, ready, len(held))
        chain = ChainWriter(session, {c.host for c, _ in ready})
        for cand, copies in ready:
            ev = MessageDeleted(
                event_id=str(uuid7()), time=datetime.now(UTC), host=host,
                ref_event_id=cand.facts.event_id, ref_host=cand.host, actor=actor,
                reason=reason.format(rule=cand.rule, days=cand.days), rule=cand.rule,
                location=",".join(sorted({c.location for c in copies})),
                raw_sha256=cand.facts.raw_sha256, message_hash=cand.chain_hash,
            )
            log_append(ev)
            record_deletion(session, chain, ev)
            to_unlink.extend(copies)
        chain.store()
    for copy in to_unlink:
        store.remove(copy)
    return outcome


def _count(outcome: Outcome, ready: Sequence[tuple[Candidate, list[StoredCopy]]],
           held: int) -> None:
    outcome.held += held
    for cand, copies in ready:
        outcome.deleted[cand.rule] = outcome.deleted.get(cand.rule, 0) + 1
        if len(outcome.examples) < 20:
            outcome.examples.append({"event_id": cand.facts.event_id, "rule": cand.rule,
                                     "received_at": cand.facts.received_at.isoformat(),
                                     "files": [str(c.path) for c in copies]})


def finish_pending(engine: Engine, store: CopyStore, *, dry_run: bool = False,
                   outcome: Outcome | None = None) -> int:
    """Unlink copies whose tombstones a crashed run already committed; returns how many.

    Like a first deletion: a copy that does not match its row is kept and reported
    (``outcome.problems``), and one an active hold covers now is kept (counted in
    ``outcome.held``) until the hold is released.
    """
    outcome = outcome if outcome is not None else Outcome()
    done = 0
    last = ""
    while True:
        stmt = (select(Deletion.ref_event_id, Message.received_at, Message.sender,
                       Message.raw_sha256)
                .join(Message, Message.event_id == Deletion.ref_event_id)
                .where(Deletion.ref_event_id > last).order_by(Deletion.ref_event_id).limit(BATCH))
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
            recipients = _recipients(conn, [r.ref_event_id for r in rows])
        if not rows:
            return done
        found: list[tuple[MessageFacts, list[StoredCopy]]] = []
        for r in rows:
            received = utc(r.received_at)
            facts = MessageFacts(r.ref_event_id, received, r.sender,
                                 recipients.get(r.ref_event_id, []), r.raw_sha256, None)
            copies = store.locate(facts)
            if copies:
                found.append((facts, copies))
        if found:
            with session_factory(engine)() as session:
                held = holds.held_ids(session, (f.event_id for f, _ in found))
            for facts, copies in found:
                if facts.event_id in held:
                    outcome.held += 1
                    continue
                for copy in copies:
                    trouble = store.check(copy, facts)
                    if trouble:
                        outcome.problems.append(f"{copy.path}: {trouble} (an interrupted "
                                                "deletion, not finished: run `qscan verify`)")
                        continue
                    done += 1
                    if not dry_run:
                        store.remove(copy)
        last = rows[-1].ref_event_id


def apply(engine: Engine, store: CopyStore, log_append: LogAppend, policy: RetentionPolicy, *,
          archived: Callable[[str, str, list[str]], bool], actor: str, host: str,
          dry_run: bool = False, now: datetime | None = None,
          progress: Callable[[int], None] | None = None) -> Outcome:
    """One retention run over the whole store."""
    outcome = Outcome()
    outcome.finished = finish_pending(engine, store, dry_run=dry_run, outcome=outcome)
    for batch in candidates(engine, policy, archived, now=now):
        delete_copies(engine, store, log_append, batch, actor=actor, host=host,
                      reason="retention: rule {rule} keeps copies {days} days",
                      dry_run=dry_run, outcome=outcome)
        if progress:
            progress(len(batch))
    return outcome


class Tombstones:
    """``lookup(event_ids) -> those with a tombstone``, for the archive consumer: a copy
    deleted lawfully is never written again by a replay or a new consumer.

    The SQL store not answering (or not set up yet) is logged and answered with the
    tombstones the log itself carries: the ``message.deleted`` event that follows each
    message on the log still removes a copy a replay wrote back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._warned = 0.0

    def __call__(self, event_ids: Sequence[str]) -> set[str]:
        from sqlalchemy.exc import SQLAlchemyError

        from compliance.db import make_engine

        if not event_ids:
            return set()
        try:
            if self._engine is None:
                self._engine = make_engine(self.url)
            with self._engine.connect() as conn:
                return set(conn.scalars(select(Deletion.ref_event_id)
                                        .where(Deletion.ref_event_id.in_(list(event_ids)))))
        except SQLAlchemyError as exc:
            now = datetime.now(UTC).timestamp()
            if now - self._warned > 60:
                self._warned = now
                log.warning("tombstones: the SQL store does not answer (%s); relying on the "
                            "message.deleted events on the log", str(exc).splitlines()[0])
            return set()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
