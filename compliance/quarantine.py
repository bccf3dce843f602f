"""The quarantine lifecycle over SQL: list, show, release, delete and expire.

The archive consumer writes quarantined mail into ``viruses/``, ``policy/``,
``spam/`` and ``dlp/`` maildirs; the summaries consumer indexes every such
message in ``quarantine_entries`` from the same event, so nothing here walks a
directory to find one (compliance.quarantine_records says how the file name
follows from the row). compliance/ does not touch maildirs or qmail-queue: the
copy store, the message preparation and the qmail-queue run are handed in by
the composition root (qscan.cli.quarantine).

**Entry states.** ``quarantined`` → ``releasing`` (claimed by a release that is
running qmail-queue) → ``released``; ``quarantined`` or ``released`` →
``deleted`` (a tombstone: ``qscan quarantine delete``/``expire``, or retention).
A released message keeps its quarantined copy until it expires: the evidence
of what was let out stays.

**Exactly one release.** The claim is a conditional ``UPDATE ... SET
state='releasing' WHERE state='quarantined'`` committed *before* qmail-queue
runs; of two concurrent releases (two processes, two hosts sharing PostgreSQL)
only one sees its UPDATE change a row, the other is refused. The claim is put
back when qmail-queue refuses the message or anything fails before it
accepted. After qmail-queue accepted it, the ``message.released`` event goes to
the log and the row to SQL in one transaction. A crash between qmail-queue's
answer and that commit leaves the entry ``releasing`` (the mail may have left):
``release --retry-interrupted`` takes over such a claim once it is older than
qmail-queue's timeout, after the administrator checked qmail's log.

**Four-eyes.** Releases from the folders a :class:`FourEyes` policy names
(``quarantine.four_eyes``: dlp and viruses by default) take two people: the
first operator's ``release`` only records a request (:func:`request_release`,
a ``release.requested`` event); a *different* login's ``approve``
(:func:`approve`) runs the release above, and its ``message.released`` names
the request and both logins. Logins are compared, not the free-text ``--by``.
A release officer (``quarantine.release_officers``) may release such mail in one
step with ``--force``, recorded as forced. Exactly once still holds: the
approval goes through the same claim, so two approvers cannot both release.
A pending request can be closed without a release (:func:`deny`, a
``release.denied`` event): *withdrawn* by its requester, *denied* by anyone
else; the claim re-checks the request under a row lock, so an approval and a
denial racing each other cannot both win.

**Deletion** reuses retention's lawful deletion (compliance.retention): legal
holds are re-checked in the deleting transaction, each copy gets a chained
tombstone and a ``message.deleted`` event, and a copy that does not match its
row is never deleted. Expiry goes by the entry's received time, never the
file's mtime (a restored backup or a ``touch`` must not keep mail forever, nor
a clock jump expire it early).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from compliance import holds, retention
from compliance.audit import Filters, NotFound, Scope, printable
from compliance.copystore import CopyStore, MessageFacts
from compliance.db import session_factory
from compliance.models import (
    DlpFinding,
    Finding,
    Message,
    QuarantineEntry,
    QuarantineRelease,
    Recipient,
    ReleaseRequest,
)
from compliance.patterns import like_pattern, wildcard_match
from compliance.quarantine_records import (
    DELETED,
    DENIED,
    PENDING,
    QUARANTINED,
    RELEASED,
    RELEASING,
    STATES,
    WITHDRAWN,
    record_denied,
    record_released,
    record_requested,
)
from ingest.event import (
    QUARANTINE_FOLDERS,
    VIRUS_FOLDER,
    AnyEvent,
    MessageReleased,
    ReleaseDenied,
    ReleaseRequested,
    utc,
)
from ingest.ids import uuid7

LogAppend = Callable[[AnyEvent], None]
BATCH = 200


class QuarantineError(ValueError):
    """A refusal the administrator can act on (the message says what to do)."""


class QueueRefused(QuarantineError):
    """qmail-queue did not accept the released message; the entry is quarantined again."""

    def __init__(self, code: int, text: str | None) -> None:
        self.code = code
        self.text = text
        detail = f": {text[1:]}" if text else ""
        super().__init__(f"qmail-queue refused the released message (exit {code}{detail}); "
                         "it is still in quarantine, nothing was recorded as released")


# -- ages ----------------------------------------------------------------------
_AGE = re.compile(r"^\s*(\d{1,9})\s*([dhw]?)\s*$", re.IGNORECASE)
MAX_AGE = timedelta(days=36525)  # a century: beyond it, a typo
_AGE_UNITS = {"": "days", "d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'14d', '36h', '2w' or a bare number of days; at least one hour."""
    m = _AGE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an age: use 14d, 36h, 2w or a number of days")
    age = timedelta(**{_AGE_UNITS[m.group(2).lower()]: int(m.group(1))})
    if age < timedelta(hours=1):
        raise ValueError(f"{text!r}: an age of less than an hour would expire mail just caught")
    if age > MAX_AGE:
        raise ValueError(f"{text!r}: more than a century; keep the quarantine with expire_days")
    return age


def format_age(age: timedelta) -> str:
    if age % timedelta(days=1) == timedelta(0):
        return f"{age.days}d"
    return f"{int(age.total_seconds() // 3600)}h"


# -- listing -------------------------------------------------------------------
@dataclass(frozen=True)
class ListFilters:
    """What ``qscan quarantine list`` narrows by; the fields given combine with AND."""

    folder: str | None = None
    state: str | None = None  # None: every state except deleted
    sender: str | None = None
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None  # the verdict's reason, '*' allowed ('bad-attachment', 'spam*')
    rule: str | None = None  # a finding's name (policy rule, signature) or a DLP rule, '*' allowed
    scope: Scope | None = None  # a restricted reader's mail only (the web console's user role)

    def __post_init__(self) -> None:
        if self.folder is not None and self.folder not in QUARANTINE_FOLDERS:
            raise QuarantineError(f"unknown folder {self.folder!r} ({', '.join(QUARANTINE_FOLDERS)})")
        if self.state is not None and self.state not in (*STATES, "all"):
            raise QuarantineError(f"unknown state {self.state!r} ({', '.join(STATES)}, all)")

    def where(self) -> list[ColumnElement[bool]]:
        q = QuarantineEntry
        where: list[ColumnElement[bool]] = Filters(
            sender=self.sender, recipient=self.recipient, since=self.since, until=self.until,
        ).where()
        if self.folder:
            where.append(q.folder == self.folder)
        if self.state is None:
            where.append(q.state != DELETED)
        elif self.state != "all":
            where.append(q.state == self.state)
        if self.reason:
            where.append(wildcard_match(func.lower(q.reason), self.reason.strip().lower()))
        if self.rule:
            rule = self.rule.strip()
            by_finding = select(Finding.event_id).where(
                wildcard_match(func.lower(Finding.name), rule.lower()))
            by_dlp = select(DlpFinding.event_id).where(wildcard_match(DlpFinding.rule, rule))
            where.append(or_(q.event_id.in_(by_finding), q.event_id.in_(by_dlp)))
        if self.scope is not None:
            where.append(self.scope.clause())
        return where


LIST_FIELDS = ("received", "event_id", "folder", "state", "reason", "rules", "sender",
               "recipients", "subject", "size")


def listing(engine: Engine, filters: ListFilters, *, limit: int | None = 100,
            offset: int = 0) -> list[dict[str, Any]]:
    """Quarantined messages, newest first, with the rules that put each one there (each rule
    once, in the order found) and the recipients, both as lists."""
    q, m = QuarantineEntry, Message
    stmt = (select(q.received_at, q.event_id, q.folder, q.state, q.reason, m.sender, m.subject,
                   m.size)
            .join(m, m.event_id == q.event_id)
            .where(*filters.where())
            .order_by(q.received_at.desc(), q.event_id.desc())
            .offset(offset).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        ids = [r.event_id for r in rows]
        rcpts: dict[str, list[str]] = {i: [] for i in ids}
        rules: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for event_id, address in conn.execute(
                    select(Recipient.event_id, Recipient.address)
                    .where(Recipient.event_id.in_(ids)).order_by(Recipient.id)):
                rcpts[event_id].append(address)
            for event_id, scanner, name in conn.execute(
                    select(Finding.event_id, Finding.scanner, Finding.name)
                    .where(Finding.event_id.in_(ids), Finding.verdict != "clean")
                    .order_by(Finding.id)):
                _add_once(rules[event_id], f"{scanner}:{name}" if name else scanner)
            for event_id, rule in conn.execute(
                    select(DlpFinding.event_id, DlpFinding.rule)
                    .where(DlpFinding.event_id.in_(ids)).order_by(DlpFinding.id)):
                _add_once(rules[event_id], f"dlp:{rule}")
    return [{"received": utc(r.received_at), "event_id": r.event_id, "folder": r.folder,
             "state": r.state, "reason": r.reason, "rules": rules[r.event_id],
             "sender": r.sender, "recipients": rcpts[r.event_id],
             "subject": r.subject, "size": r.size} for r in rows]


def _add_once(items: list[str], item: str) -> None:
    if item not in items:  # several findings of one rule (a DLP rule per detector, ...)
        items.append(item)


def count(engine: Engine, filters: ListFilters) -> int:
    stmt = (select(func.count()).select_from(QuarantineEntry)
            .join(Message, Message.event_id == QuarantineEntry.event_id)
            .where(*filters.where()))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


# -- one entry -----------------------------------------------------------------
class Entry(NamedTuple):
    """One quarantine entry with what release, delete and show need from its message."""

    event_id: str
    folder: str
    state: str
    received_at: datetime
    updated_at: datetime
    reason: str
    category: str
    host: str
    chain_hash: str | None
    sender: str
    recipients: list[str]
    raw_sha256: str | None

    @property
    def location(self) -> str:
        return f"quarantine/{self.folder}"

    def facts(self) -> MessageFacts:
        return MessageFacts(self.event_id, self.received_at, self.sender, self.recipients,
                            self.raw_sha256, self.location)


def resolve(engine: Engine, ident: str) -> str:
    """A quarantined message's full event id from the id or its first 8+ characters."""
    ident = ident.strip().lower()
    with engine.connect() as conn:
        if conn.scalar(select(QuarantineEntry.event_id).where(QuarantineEntry.event_id == ident)):
            return ident
        if len(ident) < 8:
            raise NotFound(f"no quarantined message {ident!r} (give the whole event id or "
                           "8+ characters)")
        found = list(conn.scalars(select(QuarantineEntry.event_id).where(
            QuarantineEntry.event_id.like(like_pattern(ident) + "%", escape="\\")).limit(2)))
        if not found:
            known = conn.scalar(select(Message.action).where(
                Message.event_id.like(like_pattern(ident) + "%", escape="\\")).limit(1))
    if not found:
        if known:
            raise NotFound(f"message {ident!r} was not quarantined (action: {known}); "
                           "see `qscan audit show`")
        raise NotFound(f"no quarantined message {ident!r} (see `qscan quarantine list`)")
    if len(found) > 1:
        raise NotFound(f"{ident!r} is the start of several event ids: give more of it")
    return found[0]


def _entry(session: Session, event_id: str) -> Entry | None:
    q, m = QuarantineEntry, Message
    row = session.execute(
        select(q.event_id, q.folder, q.state, q.received_at, q.updated_at, q.reason,
               m.category, m.host, m.chain_hash, m.sender, m.raw_sha256)
        .join(m, m.event_id == q.event_id).where(q.event_id == event_id)).first()
    if row is None:
        return None
    rcpts = list(session.scalars(select(Recipient.address)
                                 .where(Recipient.event_id == event_id).order_by(Recipient.id)))
    return Entry(row.event_id, row.folder, row.state, utc(row.received_at),
                 utc(row.updated_at), row.reason, row.category, row.host, row.chain_hash,
                 row.sender, rcpts, row.raw_sha256)


def get(engine: Engine, event_id: str) -> Entry:
    with session_factory(engine)() as session:
        entry = _entry(session, event_id)
    if entry is None:
        raise NotFound(f"no quarantined message {event_id!r}")
    return entry


def releases(engine: Engine, event_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(QuarantineRelease)
                            .where(QuarantineRelease.ref_event_id == event_id)).mappings().all()
    return [{k: (utc(v) if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]


def requests(engine: Engine, event_id: str) -> list[dict[str, Any]]:
    """A message's four-eyes release request, with how it was closed (released, denied,
    withdrawn), for ``quarantine show``: [] when none was made."""
    with engine.connect() as conn:
        rows = conn.execute(select(ReleaseRequest)
                            .where(ReleaseRequest.ref_event_id == event_id)).mappings().all()
    return [{k: (utc(v) if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]


def _describe_state(session: Session, entry: Entry) -> str:
    """Why an entry cannot be released or deleted, in words."""
    when = printable(entry.updated_at)
    if entry.state == RELEASED:
        rel = session.scalars(select(QuarantineRelease)
                              .where(QuarantineRelease.ref_event_id == entry.event_id)).first()
        by = f" by {rel.actor} ({rel.reason}; release {rel.event_id})" if rel else ""
        return f"message {entry.event_id} was already released on {when} UTC{by}"
    if entry.state == DELETED:
        return (f"message {entry.event_id} was deleted from quarantine/{entry.folder} on "
                f"{when} UTC (expired or deleted; see `qscan audit show {entry.event_id}`): "
                "there is nothing left to release")
    if entry.state == RELEASING:
        return (f"message {entry.event_id} is being released by another process since {when} "
                "UTC; if that release was interrupted (check qmail's log for the message), "
                "use --retry-interrupted once qmail-queue's timeout has passed")
    return f"message {entry.event_id} is {entry.state}"


# -- release -------------------------------------------------------------------
@dataclass(frozen=True)
class Stamp:
    """What the release header says and the event records."""

    release_id: str
    time: datetime
    actor: str
    reason: str
    host: str
    folder: str
    ref_event_id: str


class Prepared(NamedTuple):
    message: bytes  # envelope block removed, release header added
    sender: str
    recipients: list[str]


# (stored copy facts, stamp, --to recipients or None) -> the message to queue
Prepare = Callable[[MessageFacts, Stamp, Sequence[str] | None], Prepared]
# (message, sender, recipients) -> (qmail-queue exit code, D/Z text from fd 6)
Queue = Callable[[bytes, str, Sequence[str]], tuple[int, str | None]]


def claim(engine: Engine, event_id: str, *, force: bool = False, retry_interrupted: bool = False,
          stale_after: timedelta = timedelta(minutes=11), now: datetime | None = None,
          request_id: str | None = None) -> Entry:
    """Mark the entry ``releasing`` and commit; refuse when it cannot be released by us.

    ``request_id``: the four-eyes request being approved; it must still be pending (its
    row is locked, so a concurrent :func:`deny` either happened before or waits)."""
    now = now or datetime.now(UTC)
    with session_factory(engine, write=True).begin() as session:
        if request_id is not None:
            _open_request(session, request_id, event_id)
        entry = _entry(session, event_id)
        if entry is None:
            raise NotFound(f"no quarantined message {event_id!r}")
        if entry.folder == VIRUS_FOLDER and not force:
            raise QuarantineError(
                f"message {event_id} is quarantined as a virus ({entry.reason}): releasing it "
                "would deliver the virus; add --force if you are sure it is a false positive")
        q = QuarantineEntry
        cond = q.state == QUARANTINED
        if entry.state == RELEASING and retry_interrupted:
            if now - entry.updated_at < stale_after:
                raise QuarantineError(
                    f"message {event_id} has been releasing only since "
                    f"{printable(entry.updated_at)} UTC: that release may still be running "
                    f"(--retry-interrupted takes over after {stale_after})")
            # Stale by the database's own record, not by equality with what we read.
            cond = and_(q.state == RELEASING, q.updated_at < now - stale_after)
        elif entry.state != QUARANTINED:
            raise QuarantineError(_describe_state(session, entry))
        done = session.execute(update(q).where(q.event_id == event_id, cond)
                               .values(state=RELEASING, updated_at=now))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            # Another process changed it between our read and our UPDATE (PostgreSQL;
            # SQLite writers are serialised by BEGIN IMMEDIATE and never get here).
            session.rollback()
            with session_factory(engine)() as fresh:
                again = _entry(fresh, event_id)
                raise QuarantineError(_describe_state(fresh, again) if again else
                                      f"message {event_id} is no longer quarantined")
    return entry._replace(state=RELEASING, updated_at=now)


def unclaim(engine: Engine, entry: Entry) -> bool:
    """Put a claim back (qmail-queue refused, or the copy could not be prepared)."""
    q = QuarantineEntry
    with session_factory(engine, write=True).begin() as session:
        done = session.execute(update(q).where(q.event_id == entry.event_id, q.state == RELEASING,
                                               q.updated_at == entry.updated_at)
                               .values(state=QUARANTINED, updated_at=datetime.now(UTC)))
        return bool(done.rowcount)  # type: ignore[attr-defined]


def release(engine: Engine, log_append: LogAppend, event_id: str, *, actor: str, reason: str,
            host: str, prepare: Prepare, queue: Queue, to: Sequence[str] | None = None,
            force: bool = False, retry_interrupted: bool = False,
            stale_after: timedelta = timedelta(minutes=11), operator: str | None = None,
            four_eyes: FourEyes | None = None,
            request: PendingRequest | None = None) -> MessageReleased:
    """Release one quarantined message through qmail-queue (see the module docstring).

    Under ``four_eyes`` a message in one of its folders is released only with ``request``
    (an approval: :func:`approve`) or ``force`` by one of its officers."""
    if not reason.strip():
        raise QuarantineError("say why (--reason): the release is recorded with its reason")
    policy = four_eyes or FourEyes()
    if request is None:
        folder = get(engine, event_id).folder
        if folder in policy.folders:
            policy.check_force(folder, operator, force)
    entry = claim(engine, event_id, force=force or request is not None,
                  retry_interrupted=retry_interrupted, stale_after=stale_after,
                  request_id=request.event_id if request else None)
    try:
        stamp = Stamp(str(uuid7()), datetime.now(UTC), actor, reason, host, entry.folder,
                      entry.event_id)
        prepared = prepare(entry.facts(), stamp, to)
        code, text = queue(prepared.message, prepared.sender, prepared.recipients)
        if code != 0:
            raise QueueRefused(code, text)
    except BaseException:
        unclaim(engine, entry)
        raise
    # From here on the message has left: never put the claim back.
    ev = MessageReleased(
        event_id=stamp.release_id, time=datetime.now(UTC), host=host,
        ref_event_id=entry.event_id, ref_host=entry.host, folder=entry.folder, actor=actor,
        reason=reason, sender=prepared.sender, recipients=list(prepared.recipients),
        original_recipients=to is None,
        forced=force and (entry.folder == VIRUS_FOLDER or entry.folder in policy.folders),
        sha256=hashlib.sha256(prepared.message).hexdigest(), operator=operator,
        request_id=request.event_id if request else None,
        requested_by=request.operator if request else None,
    )
    try:
        with session_factory(engine, write=True).begin() as session:
            log_append(ev)
            record_released(session, ev)
    except Exception as exc:
        raise QuarantineError(
            f"message {entry.event_id} WAS queued (release {ev.event_id}) but recording the "
            f"release failed: {exc}; the entry stays 'releasing' - do not release it again"
        ) from exc
    return ev


# -- four-eyes -----------------------------------------------------------------
@dataclass(frozen=True)
class FourEyes:
    """Which folders need a second operator, and who may release from them in one step."""

    folders: frozenset[str] = frozenset()
    officers: frozenset[str] = frozenset()

    def check_force(self, folder: str, operator: str | None, force: bool) -> None:
        """Refuse a one-step release from a four-eyes ``folder`` unless forced by an officer."""
        if not force:
            raise ApprovalNeeded(folder)
        if operator is None or operator not in self.officers:
            raise QuarantineError(
                f"quarantine/{folder} needs a second operator's approval; --force (one step) is "
                f"only for the release officers in quarantine.release_officers, and "
                f"{operator or 'this login'!r} is not one of them. Without --force the release "
                "is recorded as a request for another operator to approve")


class ApprovalNeeded(QuarantineError):
    """A one-step release was asked of a four-eyes folder: it must be requested instead."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        super().__init__(f"quarantine/{folder} needs a second operator's approval")


class PendingRequest(NamedTuple):
    event_id: str
    ref_event_id: str
    time: datetime
    folder: str
    actor: str
    operator: str
    reason: str
    to: list[str] | None


def _pending(session: Session, event_id: str) -> PendingRequest | None:
    r = ReleaseRequest
    row = session.execute(select(r.event_id, r.ref_event_id, r.time, r.folder, r.actor,
                                 r.operator, r.reason, r.recipients)
                          .where(r.ref_event_id == event_id, r.state == PENDING)).first()
    if row is None:
        return None
    to = None if row.recipients is None else list(json.loads(row.recipients))
    return PendingRequest(row.event_id, row.ref_event_id, utc(row.time), row.folder, row.actor,
                          row.operator, row.reason, to)


def request_release(engine: Engine, log_append: LogAppend, event_id: str, *, actor: str,
                    operator: str, reason: str, host: str, four_eyes: FourEyes,
                    to: Sequence[str] | None = None) -> ReleaseRequested:
    """Record a request to release a message from a four-eyes folder (nothing is released)."""
    if not reason.strip():
        raise QuarantineError("say why (--reason): the request is recorded with its reason")
    with session_factory(engine, write=True).begin() as session:
        entry = _entry(session, event_id)
        if entry is None:
            raise NotFound(f"no quarantined message {event_id!r}")
        if entry.folder not in four_eyes.folders:
            raise QuarantineError(f"quarantine/{entry.folder} needs no approval: release it")
        if entry.state != QUARANTINED:
            raise QuarantineError(_describe_state(session, entry))
        known = session.execute(select(ReleaseRequest.event_id, ReleaseRequest.actor,
                                       ReleaseRequest.state)
                                .where(ReleaseRequest.ref_event_id == event_id)).first()
        if known is not None and known.state in (DENIED, WITHDRAWN):
            raise QuarantineError(
                f"message {event_id}'s release request ({known.event_id}) was {known.state}: "
                "a message has one request; it stays quarantined (a release officer may "
                "still release it with --force)")
        if known is not None:
            raise QuarantineError(
                f"message {event_id} already has a release request ({known.event_id}, "
                f"{known.state}) by {known.actor}: another operator approves it with "
                f"`qscan quarantine approve {event_id} --reason ...`")
        ev = ReleaseRequested(
            event_id=str(uuid7()), time=datetime.now(UTC), host=host,
            ref_event_id=entry.event_id, ref_host=entry.host, folder=entry.folder, actor=actor,
            operator=operator, reason=reason, to=list(to) if to is not None else None)
        log_append(ev)
        record_requested(session, ev)
    return ev


def approve(engine: Engine, log_append: LogAppend, event_id: str, *, actor: str, operator: str,
            reason: str, host: str, prepare: Prepare, queue: Queue, four_eyes: FourEyes,
            retry_interrupted: bool = False,
            stale_after: timedelta = timedelta(minutes=11)) -> MessageReleased:
    """Release a requested message as its second operator (never the one who asked)."""
    with session_factory(engine)() as session:
        request = _pending(session, event_id)
        if request is None:
            entry = _entry(session, event_id)
            state = _describe_state(session, entry) if entry and entry.state != QUARANTINED \
                else f"no release request is pending for message {event_id}"
            raise QuarantineError(f"{state} (see `qscan quarantine list --pending`)")
    if request.operator == operator:
        raise QuarantineError(
            f"four-eyes: {operator} requested this release ({request.event_id}) and cannot "
            "approve it; a different operator must")
    return release(engine, log_append, event_id, actor=actor, reason=reason, host=host,
                   prepare=prepare, queue=queue, to=request.to, operator=operator,
                   four_eyes=four_eyes, request=request, retry_interrupted=retry_interrupted,
                   stale_after=stale_after)


def _open_request(session: Session, request_id: str, event_id: str) -> None:
    """Lock a request's row and refuse unless it is still pending."""
    r = ReleaseRequest
    row = session.execute(select(r.state, r.denied_by, r.denial_reason)
                          .where(r.event_id == request_id).with_for_update()).first()
    if row is None or row.state != PENDING:
        what = "is gone" if row is None else (
            f"was {row.state} by {row.denied_by}: {row.denial_reason}"
            if row.state in (DENIED, WITHDRAWN) else f"is {row.state}")
        raise QuarantineError(f"the release request {request_id} for message {event_id} {what}")


def deny(engine: Engine, log_append: LogAppend, event_id: str, *, actor: str, operator: str,
         reason: str, host: str) -> ReleaseDenied:
    """Close a message's pending release request without releasing it: withdrawn when
    ``operator`` is the requester's login, else denied. The message stays quarantined."""
    if not reason.strip():
        raise QuarantineError("say why (--reason): the denial is recorded with its reason")
    with session_factory(engine, write=True).begin() as session:
        request = _pending(session, event_id)
        if request is None:
            entry = _entry(session, event_id)
            if entry is None:
                raise NotFound(f"no quarantined message {event_id!r}")
            closed = session.execute(select(ReleaseRequest.event_id, ReleaseRequest.state)
                                     .where(ReleaseRequest.ref_event_id == event_id)).first()
            raise QuarantineError(
                f"message {event_id} has no pending release request" +
                (f" (request {closed.event_id} is {closed.state})" if closed else ""))
        _open_request(session, request.event_id, event_id)
        entry = _entry(session, event_id)
        if entry is not None and entry.state == RELEASING:
            raise QuarantineError(f"message {event_id} is being released (the request was "
                                  "approved): too late to deny it")
        ev = ReleaseDenied(
            event_id=str(uuid7()), time=datetime.now(UTC), host=host,
            ref_event_id=event_id, request_id=request.event_id, actor=actor,
            operator=operator, reason=reason, withdrawn=operator == request.operator)
        log_append(ev)
        record_denied(session, ev)
    return ev


PENDING_FIELDS = ("requested", "request_id", "event_id", "folder", "requested_by", "reason",
                  "sender", "subject")


def pending(engine: Engine, *, limit: int | None = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Release requests waiting for approval, oldest first (of messages still quarantined)."""
    r, m, q = ReleaseRequest, Message, QuarantineEntry
    stmt = (select(r.time, r.event_id.label("request_id"), r.ref_event_id, r.folder, r.actor,
                   r.reason, m.sender, m.subject)
            .join(m, m.event_id == r.ref_event_id).join(q, q.event_id == r.ref_event_id)
            # a message deleted or expired meanwhile has nothing left to approve
            .where(r.state == PENDING, q.state.in_((QUARANTINED, RELEASING)))
            .order_by(r.time, r.event_id).offset(offset).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [{"requested": utc(x.time), "request_id": x.request_id, "event_id": x.ref_event_id,
             "folder": x.folder, "requested_by": x.actor, "reason": x.reason,
             "sender": x.sender, "subject": x.subject} for x in rows]


# -- delete and expire ---------------------------------------------------------
def _candidate(entry: Entry, rule: str, days: int) -> retention.Candidate:
    return retention.Candidate(entry.facts(), entry.host, entry.chain_hash, rule, days)


def delete(engine: Engine, store: CopyStore, log_append: LogAppend, event_id: str, *,
           actor: str, host: str, reason: str) -> MessageFacts:
    """Delete one quarantined copy lawfully; refused while a legal hold covers it."""
    if not reason.strip():
        raise QuarantineError("say why (--reason): the deletion is recorded with its reason")
    entry = get(engine, event_id)
    if entry.state in (DELETED, RELEASING):
        with session_factory(engine)() as session:
            text = _describe_state(session, entry)
        raise QuarantineError(text.replace("nothing left to release", "nothing left to delete")
                              if entry.state == DELETED else text)
    covering = holds.covering(engine, entry.event_id)
    if covering:
        matters = ", ".join(f"{h.matter!r} ({h.hold_id})" for h in covering)
        raise QuarantineError(f"message {entry.event_id} is under legal hold: {matters}; it "
                              "cannot be deleted until the hold is released")
    text = "quarantine delete: " + reason.replace("{", "{{").replace("}", "}}")
    outcome = retention.delete_copies(engine, store, log_append,
                                      [_candidate(entry, "quarantine-delete", 0)],
                                      actor=actor, host=host, reason=text)
    if outcome.held:  # a hold created between our check and the deleting transaction
        raise QuarantineError(f"message {entry.event_id} came under a legal hold meanwhile: "
                              "not deleted")
    if outcome.problems:
        raise QuarantineError("; ".join(outcome.problems))
    return entry.facts()


def folder_ages(default: timedelta, overrides: Mapping[str, timedelta] | None = None,
                only: str | None = None) -> dict[str, timedelta]:
    """How old each folder's entries must be to expire."""
    ages = {f: (overrides or {}).get(f, default) for f in QUARANTINE_FOLDERS}
    return {only: ages[only]} if only else ages


def expiry_candidates(engine: Engine, ages: Mapping[str, timedelta], *,
                      now: datetime | None = None) -> Iterator[list[retention.Candidate]]:
    """Entries older than their folder's age by received time, in batches, oldest ids first."""
    now = now or datetime.now(UTC)
    q, m = QuarantineEntry, Message
    for folder, age in ages.items():
        cutoff = now - age
        rule = f"quarantine-expiry/{folder}"
        last = ""
        while True:
            stmt = (select(q.event_id).join(m, m.event_id == q.event_id)
                    .where(q.folder == folder, q.received_at < cutoff,
                           q.state.in_((QUARANTINED, RELEASED)), m.deleted_at.is_(None),
                           q.event_id > last)
                    .order_by(q.event_id).limit(BATCH))
            with session_factory(engine)() as session:
                ids = list(session.scalars(stmt))
                entries = [e for e in (_entry(session, i) for i in ids) if e is not None]
            if not ids:
                break
            yield [_candidate(e, rule, max(1, round(age / timedelta(days=1))))
                   for e in entries]
            last = ids[-1]


@dataclass
class ExpiryReport:
    outcome: retention.Outcome = field(default_factory=retention.Outcome)
    ages: dict[str, str] = field(default_factory=dict)


def expire(engine: Engine, store: CopyStore, log_append: LogAppend,
           ages: Mapping[str, timedelta], *, actor: str, host: str, dry_run: bool = False,
           now: datetime | None = None,
           progress: Callable[[int], None] | None = None) -> ExpiryReport:
    """Delete every quarantined copy older than its folder's age (holds win)."""
    report = ExpiryReport(ages={f: format_age(a) for f, a in ages.items()})
    report.outcome.finished = retention.finish_pending(engine, store, dry_run=dry_run,
                                                       outcome=report.outcome)
    for batch in expiry_candidates(engine, ages, now=now):
        age = report.ages[batch[0].facts.location.split("/", 1)[1]] if batch[0].facts.location \
            else "?"
        retention.delete_copies(engine, store, log_append, batch, actor=actor, host=host,
                                reason="quarantine expiry: {rule} keeps entries " + age,
                                dry_run=dry_run, outcome=report.outcome)
        if progress:
            progress(len(batch))
    return report
