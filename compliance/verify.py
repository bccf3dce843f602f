"""``qscan verify``: walk the hash chains, cross-check the rows, the stored copies and the log.

What each check catches:

* **chain walk** (per host, entries in ``seq`` order): a row whose content no
  longer matches its link (altered), a ``seq`` that is skipped (deleted), one
  used twice or a row outside the chain (inserted), a chain that ends before or
  after its recorded head (tail cut off or extended);
* **consistency**: the mutable convenience columns agree with chained facts
  (``queue_status = 'failed'`` exactly when a queue failure is chained,
  ``deleted_at`` exactly when a tombstone is, each tombstone names the hash of
  the row it records);
* **stored copies** (given a ``CopyStore``): every message that should have an
  archive or quarantine copy has one unless a tombstone says it was deleted
  ("should" for the archive: the decision the archive consumer recorded when it
  handled the message, never today's settings), every copy hashes to the
  message's ``raw_sha256`` and carries the message's envelope, and no copy exists
  that no row accounts for;
* **the log** (given a reader), both ways: every event the journal still holds
  is in SQL and its rows are, column by column, what the consumer's projection
  makes of it (so a row altered and re-hashed along the whole chain is named),
  unless the summaries consumer has not reached it; and every chain entry after
  the first one the journal holds has its event there (``unlogged-row``).

What it cannot catch alone: someone who rewrites a host's chain *and* its head
where the journal no longer reaches (or rewrites the journal too). Keep the
heads printed by ``qscan verify`` (``--save-anchor``) somewhere they cannot
reach, and check against them with ``--anchor``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, or_, select

from compliance import anchor as anchors
from compliance import canonical, journal_chain, summaries
from compliance.copystore import CopyError, CopyStore, MessageFacts, StoredCopy
from compliance.models import (
    ChainHead,
    Deletion,
    DlpFinding,
    Finding,
    Message,
    Part,
    QuarantineEntry,
    QueueFailure,
    Recipient,
)
from compliance.quarantine_records import ReleaseEvent, check_release_events
from compliance.record_check import RecordCheck
from compliance.records import deletion_row
from ingest.event import (
    MessageDeleted,
    MessageScanned,
    QueueFailed,
    quarantine_folder,
    utc,
)
from ingest.journal import Journal
from ingest.log import LogRecord, decode_entry

PAGE = 1000


@dataclass(frozen=True)
class Problem:
    """One finding of tampering (or damage); ``kind`` is stable for scripts."""

    kind: str  # altered-row, inserted-row, deleted-row, head, inconsistent, altered-file,
    #            inserted-file, deleted-file, misplaced-file, missing-row, log-mismatch,
    #            unlogged-row; altered-event, deleted-event, inserted-event (the journal
    #            chain, compliance.journal_chain); unreadable-event (a journal event
    #            that does not decode); anchor (compliance.anchor)
    where: str
    event_id: str | None
    detail: str

    def line(self) -> str:
        ident = f" {self.event_id}" if self.event_id else ""
        return f"{self.kind}: {self.where}{ident}: {self.detail}"


@dataclass
class Report:
    entries: int = 0
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: int = 0
    log_events: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def merge(self, other: Report) -> None:
        self.entries += other.entries
        self.heads.update(other.heads)
        self.files += other.files
        self.log_events += other.log_events
        self.problems.extend(other.problems)
        self.notes.extend(other.notes)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "files": self.files,
                "log_events": self.log_events, "heads": self.heads,
                "problems": [p.__dict__ for p in self.problems], "notes": self.notes}


# -- the chain walk ---------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    seq: int
    kind: str
    table: str
    event_id: str
    chain_hash: str | None
    row: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] | None


_TABLES: dict[str, Any] = {"message": Message, "queue_failed": QueueFailure, "deletion": Deletion}
_CHILD_MODELS: dict[str, Any] = {"recipients": Recipient, "parts": Part, "findings": Finding,
                                 "dlp_findings": DlpFinding}


def _columns(model: Any, spec: canonical.Spec) -> list[Any]:
    return [getattr(model, name) for name, _ in spec]


def _children(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {i: {t: [] for t in _CHILD_MODELS} for i in ids}
    for table, model in _CHILD_MODELS.items():
        stmt = (select(model.event_id, *_columns(model, canonical.CHILDREN[table]))
                .where(model.event_id.in_(ids)).order_by(model.id))
        for row in conn.execute(stmt).mappings():
            out[row["event_id"]][table].append(dict(row))
    return out


def _stream(conn: Connection, kind: str, host: str) -> Iterator[_Entry]:
    model = _TABLES[kind]
    spec = canonical.KINDS[kind]
    cols = {c.key for c in _columns(model, spec)}
    extra = [c for c in (model.event_id, model.chain_seq, model.chain_hash) if c.key not in cols]
    last = 0
    while True:
        stmt = (select(*_columns(model, spec), *extra)
                .where(model.host == host, model.chain_seq > last)
                .order_by(model.chain_seq).limit(PAGE))
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        if not rows:
            return
        kids = _children(conn, [r["event_id"] for r in rows]) if kind == "message" else {}
        for r in rows:
            yield _Entry(int(r["chain_seq"]), kind, model.__tablename__, r["event_id"],
                         r["chain_hash"], r, kids.get(r["event_id"]))
        last = int(rows[-1]["chain_seq"])


def _hosts(conn: Connection) -> list[str]:
    hosts: set[str] = set(conn.scalars(select(ChainHead.host)))
    for model in _TABLES.values():
        hosts.update(conn.scalars(select(model.host).where(model.chain_seq.is_not(None))
                                  .group_by(model.host)))
    return sorted(hosts)


def _walk_host(conn: Connection, host: str, report: Report) -> None:
    merged = heapq.merge(*(_stream(conn, kind, host) for kind in _TABLES), key=lambda e: e.seq)
    expected, prev = 1, canonical.GENESIS
    after_gap = False
    for entry in merged:
        report.entries += 1
        where = f"{entry.table} {host}#{entry.seq}"
        if entry.seq < expected:
            report.problems.append(Problem(
                "inserted-row", where, entry.event_id,
                "a second entry with the same chain position"))
            continue
        if entry.seq > expected:
            missing = (f"#{expected}" if entry.seq == expected + 1
                       else f"#{expected}-#{entry.seq - 1}")
            report.problems.append(Problem(
                "deleted-row", f"{host}{missing}", None,
                "chain entries are missing (rows deleted)"))
            after_gap = True
        try:
            encoded = canonical.encode(entry.kind, host, entry.seq, entry.row, entry.children)
        except canonical.EncodingError as exc:
            report.problems.append(Problem("altered-row", where, entry.event_id,
                                           f"value without a canonical form: {exc}"))
            encoded = b""
        if (not after_gap and encoded and canonical.link(prev, encoded) != entry.chain_hash
                and not _sealed_with_signed_zero(entry, host, prev)):
            report.problems.append(Problem(
                "altered-row", where, entry.event_id,
                "content does not match its chain hash (this row was altered, or the one "
                "before it was altered and re-hashed)"))
        prev, expected, after_gap = entry.chain_hash or "", entry.seq + 1, False
    head = conn.execute(select(ChainHead.seq, ChainHead.hash).where(ChainHead.host == host)).first()
    last_seq = expected - 1
    if head is None:
        report.problems.append(Problem("head", host, None, "the chain has no recorded head"))
    elif head.seq > last_seq:
        report.problems.append(Problem(
            "deleted-row", f"{host}#{last_seq + 1}-#{head.seq}", None,
            f"the chain ends at #{last_seq} but its head says #{head.seq} (tail deleted)"))
    elif head.seq < last_seq:
        report.problems.append(Problem(
            "inserted-row", f"{host}#{head.seq + 1}-#{last_seq}", None,
            f"entries after the recorded head #{head.seq}"))
    elif head.hash != prev:
        report.problems.append(Problem("head", host, None,
                                       "the last entry's hash differs from the recorded head"))
    report.heads[host] = {"seq": last_seq, "hash": prev}


def _sealed_with_signed_zero(entry: _Entry, host: str, prev: str) -> bool:
    """A message row sealed before version 3 whose spam score was ``-0.0`` when hashed.

    SQLite gives a stored ``-0.0`` back as ``0.0``, so such a row cannot match the hash
    of what was written. Only ``spam_score`` can carry the sign (the summaries consumer
    writes every other float of a row as ``x or 0.0``); the row is the same evidence
    either way, so it verifies when the signed zero gives its hash."""
    row = entry.row
    if entry.kind != "message" or row.get("chain_version") is not None:
        return False
    if row.get("spam_score") != 0.0:
        return False
    try:
        encoded = canonical.encode(entry.kind, host, entry.seq, {**row, "spam_score": -0.0},
                                   entry.children)
    except canonical.EncodingError:
        return False
    return canonical.link(prev, encoded) == entry.chain_hash


def _unchained(conn: Connection, report: Report) -> None:
    for kind, model in _TABLES.items():
        stmt = select(model.event_id).where(model.chain_seq.is_(None)).limit(100)
        for event_id in conn.scalars(stmt):
            report.problems.append(Problem("inserted-row", model.__tablename__, event_id,
                                           f"a {kind} row outside the hash chain"))


def _tombstone_bindings(conn: Connection, page: int) -> Iterator[Any]:
    """Every tombstone with its message's row, in pages (keyset on the tombstone id)."""
    last = ""
    while True:
        stmt = (select(Deletion.event_id, Deletion.ref_event_id, Deletion.message_hash,
                       Message.chain_hash, Message.deleted_at)
                .join(Message, Message.event_id == Deletion.ref_event_id)
                .where(Deletion.event_id > last).order_by(Deletion.event_id).limit(page))
        rows = conn.execute(stmt).all()
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1].event_id


def _consistency(conn: Connection, report: Report, page: int = PAGE) -> None:
    failed_without = select(Message.event_id).where(
        Message.queue_status == "failed",
        ~exists().where(QueueFailure.ref_event_id == Message.event_id)).limit(100)
    for event_id in conn.scalars(failed_without):
        report.problems.append(Problem("inconsistent", "messages", event_id,
                                       "queue_status is 'failed' but no queue failure is chained"))
    failure_but_not = (select(Message.event_id)
                       .join(QueueFailure, QueueFailure.ref_event_id == Message.event_id)
                       .where(Message.queue_status != "failed").limit(100))
    for event_id in conn.scalars(failure_but_not):
        report.problems.append(Problem("inconsistent", "messages", event_id,
                                       "a queue failure is chained but queue_status says "
                                       "otherwise"))
    # the exit code is the chained failure's (NULL while none is chained)
    wrong_code = select(Message.event_id).where(or_(
        (Message.queue_status != "failed") & Message.queue_exit_code.is_not(None),
        (Message.queue_status == "failed") & ~exists().where(
            QueueFailure.ref_event_id == Message.event_id,
            QueueFailure.exit_code == Message.queue_exit_code))).limit(100)
    for event_id in conn.scalars(wrong_code):
        report.problems.append(Problem("inconsistent", "messages", event_id,
                                       "queue_exit_code differs from the chained queue failure's"))
    deleted_without = select(Message.event_id).where(
        Message.deleted_at.is_not(None),
        ~exists().where(Deletion.ref_event_id == Message.event_id)).limit(100)
    for event_id in conn.scalars(deleted_without):
        report.problems.append(Problem("inconsistent", "messages", event_id,
                                       "marked deleted without a tombstone"))
    # recipients.received_at only serves searches, but a wrong one would hide a recipient
    # from every date-bounded search: it must be its message's
    moved = (select(Recipient.event_id).join(Message, Message.event_id == Recipient.event_id)
             .where(or_(Recipient.received_at.is_(None),
                        Recipient.received_at != Message.received_at))
             .distinct().limit(100))
    for event_id in conn.scalars(moved):
        report.problems.append(Problem("inconsistent", "recipients", event_id,
                                       "a recipient's received_at differs from its message's"))
    for row in _tombstone_bindings(conn, page):
        if row.deleted_at is None:
            report.problems.append(Problem("inconsistent", "messages", row.ref_event_id,
                                           f"a tombstone ({row.event_id}) exists but the row is "
                                           "not marked deleted"))
        if row.message_hash is not None and row.message_hash != row.chain_hash:
            report.problems.append(Problem("inconsistent", "deletions", row.event_id,
                                           "the tombstone names a different message hash than "
                                           "the message row has"))


def verify_chain(engine: Engine, *, hosts: Iterable[str] | None = None,
                 page: int = PAGE) -> Report:
    """Walk every host's chain and check the rows against what is chained."""
    report = Report()
    with engine.connect() as conn:
        for host in sorted(hosts) if hosts is not None else _hosts(conn):
            _walk_host(conn, host, report)
        _unchained(conn, report)
        _consistency(conn, report, page)
    return report


# -- anchors ----------------------------------------------------------------------
def check_anchor(engine: Engine, anchor: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """The chains must still pass through the saved (seq, hash) of every host."""
    found = anchors.check([anchors.parse_record({"heads": dict(anchor)}, "anchor")],
                          engine=engine)
    return [Problem(f.kind, f.where, f.event_id, f.detail) for f in found.findings]


def verify_anchors(found: anchors.AnchorCheck) -> Report:
    """The findings of compliance.anchor.check as a report."""
    return Report(problems=[Problem(f.kind, f.where, f.event_id, f.detail)
                            for f in found.findings], notes=list(found.notes))


def load_anchor(path: Path) -> dict[str, dict[str, Any]]:
    """The SQL heads of a ``--save-anchor`` file (compliance.anchor reads every form)."""
    try:
        return {h: dict(v) for a in anchors.read_file(path) for h, v in a.doc["sql"].items()}
    except anchors.AnchorError as exc:
        raise ValueError(str(exc)) from exc


# -- stored copies ----------------------------------------------------------------
def expected_location(action: str, category: str, queue_status: str, folder: str | None,
                      archived: bool) -> str | None:
    """Where the archive consumer puts a message's copy (archive/consumer.py's rules)."""
    if action == "quarantine":
        return f"quarantine/{folder or quarantine_folder(category)}"
    if action in ("deliver", "drop") and queue_status != "failed" and archived:
        return "archive"
    return None


def verify_copies(engine: Engine, store: CopyStore, *,
                  archived: Callable[[str, list[str]], bool],
                  pending: Callable[[str], bool] = lambda event_id: False) -> Report:
    """Check every stored copy against SQL and every expected copy against the disk.

    Whether an accepted message should have an archive copy is what the archive
    consumer decided when it handled it, as it recorded the decision (with the
    settings it used; a decision its own settings do not explain is reported).
    ``archived(sender, recipients)`` - today's archive settings - only judges
    messages handled before decisions were recorded. ``pending(event_id)`` says
    whether the event is on the log but not yet in SQL.
    """
    report = Report()
    try:
        decisions = store.archive_decisions()
    except CopyError as exc:
        report.problems.append(Problem("altered-file", "archive decisions", None, str(exc)))
        decisions = {}
    unrecorded = 0
    found: dict[str, list[StoredCopy]] = {}
    for copy in store.scan():
        found.setdefault(copy.event_id, []).append(copy)
        report.files += 1
    with engine.connect() as conn:
        last = ""
        while True:
            stmt = (select(Message.event_id, Message.received_at, Message.action,
                           Message.category, Message.queue_status, Message.sender,
                           Message.raw_sha256, Deletion.event_id.label("tombstone"),
                           QuarantineEntry.folder)
                    .outerjoin(QuarantineEntry, QuarantineEntry.event_id == Message.event_id)
                    # the chained tombstone, not the deleted_at mark, says a copy went lawfully
                    .outerjoin(Deletion, Deletion.ref_event_id == Message.event_id)
                    .where(Message.event_id > last).order_by(Message.event_id).limit(PAGE))
            rows = conn.execute(stmt).all()
            if not rows:
                break
            recipients: dict[str, list[str]] = {r.event_id: [] for r in rows}
            rstmt = (select(Recipient.event_id, Recipient.address)
                     .where(Recipient.event_id.in_(list(recipients))).order_by(Recipient.id))
            for event_id, address in conn.execute(rstmt):
                recipients[event_id].append(address)
            for r in rows:
                rcpts = recipients[r.event_id]
                decision = decisions.get(r.event_id)
                if decision is None:
                    keep = archived(r.sender, rcpts)
                    unrecorded += r.action in ("deliver", "drop")
                else:
                    keep = decision.archived
                    trouble = store.decision_trouble(decision, r.sender, rcpts)
                    if trouble:
                        report.problems.append(Problem("inconsistent", "archive decisions",
                                                       r.event_id, trouble))
                location = expected_location(r.action, r.category, r.queue_status, r.folder,
                                             keep)
                facts = MessageFacts(r.event_id, utc(r.received_at), r.sender, rcpts,
                                     r.raw_sha256, location)
                _check_message(store, facts, r.tombstone is not None,
                               found.pop(r.event_id, []), report)
            last = rows[-1].event_id
    if unrecorded:
        report.notes.append(f"{unrecorded} accepted message(s) handled before the archive "
                            "recorded its decisions: judged by today's [archive] settings")
    for event_id, copies in sorted(found.items()):
        for copy in copies:
            if pending(event_id):
                report.notes.append(f"{copy.path}: its event is not in SQL yet (consumer lag)")
            else:
                report.problems.append(Problem("inserted-file", str(copy.path), event_id,
                                               "a stored copy no SQL row accounts for"))
    return report


def _check_message(store: CopyStore, facts: MessageFacts, deleted: bool,
                   copies: list[StoredCopy], report: Report) -> None:
    for copy in copies:
        trouble = store.check(copy, facts)
        if trouble:
            report.problems.append(Problem("altered-file", str(copy.path), facts.event_id, trouble))
        elif deleted:
            report.notes.append(f"{copy.path}: deleted in SQL (tombstone) but still on disk: "
                                "re-run `qscan retention apply` to finish the deletion")
        elif facts.location is None:
            report.problems.append(Problem("inserted-file", str(copy.path), facts.event_id,
                                           "a copy of a message that was never stored"))
        elif copy.location != facts.location:
            report.problems.append(Problem("misplaced-file", str(copy.path), facts.event_id,
                                           f"expected in {facts.location}"))
    if facts.location and not deleted and not any(c.location == facts.location for c in copies):
        report.problems.append(Problem("deleted-file", facts.location, facts.event_id,
                                       "the stored copy is missing and no tombstone records "
                                       "its deletion"))


# -- the log ----------------------------------------------------------------------
def verify_release_events(engine: Engine, events: Iterable[ReleaseEvent],
                          *, local_host: str | None, since: datetime | None) -> Report:
    """Quarantine releases and four-eyes requests against their events, both ways."""
    report = Report()

    def problem(kind: str, where: str, event_id: str | None, detail: str) -> None:
        report.problems.append(Problem(kind, where, event_id, detail))

    with engine.connect() as conn:
        check_release_events(conn, events, problem, local_host=local_host, since=since)
    return report


def verify_journal_chain(walk: journal_chain.ChainWalk) -> Report:
    """The findings of one host's journal chain walk (compliance.journal_chain) as a report."""
    return Report(problems=[Problem(f.kind, f.where, f.event_id, f.detail) for f in walk.findings],
                  notes=list(walk.notes))


def summaries_position(engine: Engine, name: str = "summaries") -> int:
    """The journal position of a journal-fed consumer (0 if it stored none); a Kafka-fed
    one stores offsets instead (compliance.positions, used by ``qscan verify``)."""
    from compliance.positions import coverage

    return coverage(engine, name).journal or 0


RawOf = Callable[[str], bytes | None]


def journal_records(journal: Journal, host: str, report: Report, *, size: int = 1000
                    ) -> Iterator[list[LogRecord]]:
    """The journal's events, decoded, in batches for :func:`verify_log`.

    An event whose body does not decode as its type (forged ``{}``, garbage bytes, fields
    of the wrong type) is an ``unreadable-event`` finding in ``report``, named by host, seq
    and event id, and left out of the comparison; verify goes on with the others. (Its
    SQL rows, if any, then have no event: the SQL-to-journal check reports them.)"""
    after = 0
    while True:
        entries = journal.read(after, size, with_raw=False)
        if not entries:
            return
        batch = []
        for entry in entries:
            try:
                batch.append(decode_entry(entry))
            except (ValueError, TypeError, AttributeError) as exc:  # pydantic's are ValueErrors
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                report.problems.append(Problem(
                    "unreadable-event", f"journal {host}#{entry.seq}", entry.event_id,
                    f"its body does not decode as a {entry.type!r} event ({reason}): "
                    "altered or forged"))
        yield batch
        after = entries[-1].seq


def verify_log(engine: Engine, records: Iterable[Sequence[LogRecord]], *, position: int,
               local_host: str | None = None, raw: RawOf | None = None) -> Report:
    """SQL against the log, both ways.

    Journal to SQL: every event the log still holds up to ``position`` must be in
    SQL, and its rows must be what the summaries consumer makes of it, column by
    column (compliance.summaries and compliance.records define the projection once;
    a row altered *and* re-hashed along the whole chain shows here, named).

    SQL to journal: from the first chain entry of a host whose event the log still
    holds, every later entry of that host's chain must have its event on the log
    (a forged row appended with a valid link and head is ``unlogged-row``).
    The position is found from messages and queue failures (written on the chain's
    own host); tombstones are expected on this log when they were made on a host whose
    events it carries (their actor is ``user@HOST``); others are on that host's journal
    (a note says how many, and which hosts).

    ``raw(event_id)`` gives the raw message the log holds for an event: only events
    from before the daemon put the stored copy's hash in the event need it (their
    ``raw_sha256`` is the hash of those bytes); without it their ``raw_sha256`` is
    not compared.

    Holds and exports are compared with their events field by field whatever the
    position (their commands write the rows at once), and hold and export rows
    made on ``local_host`` that the journal should still hold an event for but
    does not are reported (compliance.record_check).
    """
    report = Report()
    records_check = RecordCheck(local_host=local_host, position=position)
    logged: dict[str, str] = {}  # event id -> chain entry kind ('' for the others)
    first: dict[str, int] = {}  # host -> lowest chain seq whose event the log holds
    makers: set[str] = set() if local_host is None else {local_host}  # hosts the log covers

    def problem(kind: str, where: str, event_id: str | None, detail: str) -> None:
        report.problems.append(Problem(kind, where, event_id, detail))

    with engine.connect() as conn:
        for batch in records:
            for r in batch:
                records_check.add(r.event, r.position)
                logged[r.event.event_id] = _ENTRY_KIND.get(type(r.event), "")
                makers.add(str(getattr(r.event, "host", "")))
            _first_entries(conn, batch, first)
            batch = [r for r in batch if r.position <= position]
            report.log_events += len(batch)
            _check_log_batch(conn, batch, report, raw)
        _unlogged_entries(conn, first, logged, None if local_host is None else makers, report)
        records_check.check(conn, problem)
    return report


_ENTRY_KIND: dict[type, str] = {MessageScanned: "message", QueueFailed: "queue_failed",
                                MessageDeleted: "deletion"}


def _first_entries(conn: Connection, batch: Sequence[LogRecord], first: dict[str, int]) -> None:
    for kind, model in (("message", Message), ("queue_failed", QueueFailure)):
        ids = [r.event.event_id for r in batch if _ENTRY_KIND.get(type(r.event)) == kind]
        if not ids:
            continue
        stmt = (select(model.host, func.min(model.chain_seq))
                .where(model.event_id.in_(ids), model.chain_seq.is_not(None))
                .group_by(model.host))
        for host, seq in conn.execute(stmt):
            if seq is not None and (host not in first or seq < first[host]):
                first[host] = int(seq)


def _unlogged_entries(conn: Connection, first: Mapping[str, int], logged: Mapping[str, str],
                      makers: set[str] | None, report: Report) -> None:
    """Chain entries after the first one the log holds, whose event the log does not hold.

    ``makers``: the hosts whose tombstones this log carries (None: all)."""
    elsewhere: dict[str, int] = {}
    for host, start in sorted(first.items()):
        for kind, model in _TABLES.items():
            cols = [model.event_id, model.chain_seq]
            if kind == "deletion":
                cols.append(model.actor)
            last = start
            while True:
                stmt = (select(*cols).where(model.host == host, model.chain_seq > last)
                        .order_by(model.chain_seq).limit(PAGE))
                rows = conn.execute(stmt).all()
                for row in rows:
                    if logged.get(row.event_id) == kind:
                        continue
                    maker = str(row.actor or "").rpartition("@")[2] if kind == "deletion" else ""
                    if kind == "deletion" and makers is not None and maker not in makers:
                        elsewhere[maker] = elsewhere.get(maker, 0) + 1  # on that host's journal
                        continue
                    report.problems.append(Problem(
                        "unlogged-row", f"{model.__tablename__} {host}#{row.chain_seq}",
                        row.event_id,
                        f"a chain entry after {host}#{start} (the first the journal still "
                        "holds) with no event on the journal (a forged row)"))
                if len(rows) < PAGE:
                    break
                last = int(rows[-1].chain_seq)
    for maker, n in sorted(elsewhere.items()):
        report.notes.append(f"{n} tombstone(s) made on {maker or 'an unnamed host'} are checked "
                            "against that host's journal (run qscan verify there)")


def _differences(pairs: Iterable[tuple[str, str, Any, Any]]) -> list[str]:
    """The names of the fields whose canonical forms differ (so -0.0 is 0.0, UTC is UTC)."""
    out = []
    for name, code, logged, stored in pairs:
        if type(logged) is type(stored) and logged == stored:
            continue  # same type and value: same canonical form (-0.0 == 0.0 included)
        try:
            same = canonical.normalize(logged, code) == canonical.normalize(stored, code)
        except canonical.EncodingError:
            same = False
        if not same:
            out.append(name)
    return out


def message_differences(ev: MessageScanned, row: Mapping[str, Any],
                        children: Mapping[str, Sequence[Mapping[str, Any]]],
                        quarantine: Mapping[str, Any] | None, raw: RawOf | None = None
                        ) -> list[str]:
    """The columns (and child tables) of a message's rows that are not what its event makes.

    Every chained column is compared, with the projection the summaries consumer
    uses (compliance.summaries), plus the quarantine entry's folder, time and reason.
    ``raw_sha256`` of an event from before the daemon hashed the message is the hash
    of the raw bytes the log holds (``raw``); when they are not to be had it is not
    compared (the stored copy is still checked against the row)."""
    compare_raw = summaries.carries_raw_sha256(ev)
    if not compare_raw and raw is not None and not ev.raw_message:
        data = raw(ev.event_id)
        if data is not None:
            ev = ev.model_copy(update={"raw_message": data})
            compare_raw = True
    want = summaries.message_row(0, ev)
    fields = [(name, code) for name, code in canonical.MESSAGE_V3
              if name != "raw_sha256" or compare_raw or bool(ev.raw_message)]
    diff = _differences((name, code, want[name], row[name]) for name, code in fields)
    want_children = summaries.child_rows(ev)
    for table, spec in canonical.CHILDREN.items():
        mine, theirs = want_children[table], children.get(table, [])
        if len(mine) != len(theirs) or any(
                _differences((n, c, a[n], b[n]) for n, c in spec)
                for a, b in zip(mine, theirs, strict=False)):
            diff.append(table)
    want_q = summaries.quarantine_row(ev)
    if want_q is None or quarantine is None:
        q_differs = (want_q is None) != (quarantine is None)
    else:
        q_differs = bool(_differences((n, c, want_q[n], quarantine[n]) for n, c in _QUARANTINE))
    if q_differs:
        diff.append("quarantine_entries")
    return diff


_QUARANTINE: canonical.Spec = (("folder", "t"), ("received_at", "d"), ("reason", "t"))


def _check_log_batch(conn: Connection, batch: Sequence[LogRecord], report: Report,
                     raw: RawOf | None = None) -> None:
    scanned = {r.event.event_id: r.event for r in batch if isinstance(r.event, MessageScanned)}
    if scanned:
        _check_messages(conn, scanned, report, raw)
    failures = {r.event.event_id: r.event for r in batch if isinstance(r.event, QueueFailed)}
    if failures:
        spec = canonical.QUEUE_FAILURE
        rows = {r["event_id"]: dict(r) for r in conn.execute(
            select(*_columns(QueueFailure, spec), QueueFailure.chain_seq)
            .where(QueueFailure.event_id.in_(list(failures)))).mappings()}
        for event_id, fev in failures.items():
            _compare_entry(report, "queue_failures", event_id, rows.get(event_id),
                           summaries.failure_row(fev), spec)
    deleted = {r.event.event_id: r.event for r in batch if isinstance(r.event, MessageDeleted)}
    if deleted:
        spec = canonical.DELETION
        rows = {r["event_id"]: dict(r) for r in conn.execute(
            select(*_columns(Deletion, spec), Deletion.chain_seq)
            .where(Deletion.event_id.in_(list(deleted)))).mappings()}
        # another tombstone for the same copy satisfies an event whose own row is absent
        refs = {ev.ref_event_id for i, ev in deleted.items() if i not in rows}
        covered = set(conn.scalars(select(Deletion.ref_event_id)
                                   .where(Deletion.ref_event_id.in_(list(refs))))) if refs else set()
        for event_id, dev in deleted.items():
            if event_id not in rows and dev.ref_event_id in covered:
                continue
            _compare_entry(report, "deletions", event_id, rows.get(event_id),
                           deletion_row(dev), spec)


def _compare_entry(report: Report, table: str, event_id: str, row: Mapping[str, Any] | None,
                   want: Mapping[str, Any], spec: canonical.Spec) -> None:
    if row is None:
        report.problems.append(Problem("missing-row", table, event_id,
                                       "the journal holds this event, SQL does not"))
        return
    diff = _differences((name, code, want[name], row[name]) for name, code in spec)
    if diff:
        report.problems.append(Problem(
            "log-mismatch", f"{table} {row['host']}#{row['chain_seq']}", event_id,
            f"differs from its journal event in: {', '.join(diff)}"))


def _check_messages(conn: Connection, scanned: Mapping[str, MessageScanned],
                    report: Report, raw: RawOf | None) -> None:
    ids = list(scanned)
    spec = canonical.MESSAGE_V3
    rows = {r["event_id"]: dict(r) for r in conn.execute(
        select(*_columns(Message, spec), Message.chain_seq)
        .where(Message.event_id.in_(ids))).mappings()}
    kids = _children(conn, list(rows))
    quarantine = {r["event_id"]: dict(r) for r in conn.execute(
        select(QuarantineEntry.event_id, *(getattr(QuarantineEntry, n) for n, _ in _QUARANTINE))
        .where(QuarantineEntry.event_id.in_(list(rows)))).mappings()}
    for event_id, ev in scanned.items():
        row = rows.get(event_id)
        if row is None:
            report.problems.append(Problem("missing-row", "messages", event_id,
                                           "the journal holds this message, SQL does not"))
            continue
        diff = message_differences(ev, row, kids[event_id], quarantine.get(event_id), raw)
        if diff:
            report.problems.append(Problem(
                "log-mismatch", f"messages {row['host']}#{row['chain_seq']}", event_id,
                f"differs from its journal event in: {', '.join(diff)}"))
