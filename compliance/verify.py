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
  archive or quarantine copy has one unless a tombstone says it was deleted,
  every copy hashes to the message's ``raw_sha256`` and carries the message's
  envelope, and no copy exists that no row accounts for;
* **the log** (given a reader): every event the journal still holds is in SQL,
  with the same message hash, unless the summaries consumer has not reached it.

What it cannot catch alone: someone who rewrites a host's whole chain tail
*and* its head row. Keep the heads printed by ``qscan verify`` (``--save-anchor``)
somewhere they cannot reach, and check against them with ``--anchor``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, exists, or_, select

from compliance import canonical
from compliance.copystore import CopyStore, MessageFacts, StoredCopy
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
from compliance.record_check import RecordCheck
from ingest.event import MessageDeleted, MessageScanned, QueueFailed, quarantine_folder, utc
from ingest.log import LogRecord

PAGE = 1000


@dataclass(frozen=True)
class Problem:
    """One finding of tampering (or damage); ``kind`` is stable for scripts."""

    kind: str  # altered-row, inserted-row, deleted-row, head, inconsistent, altered-file,
    #            inserted-file, deleted-file, misplaced-file, missing-row, log-mismatch,
    #            unlogged-row
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
        if not after_gap and encoded and canonical.link(prev, encoded) != entry.chain_hash:
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
    problems = []
    with engine.connect() as conn:
        for host, saved in sorted(anchor.items()):
            seq, digest = int(saved["seq"]), str(saved["hash"])
            if seq == 0:
                continue
            found = None
            for model in _TABLES.values():
                found = conn.scalar(select(model.chain_hash)
                                    .where(model.host == host, model.chain_seq == seq))
                if found is not None:
                    break
            if found is None:
                problems.append(Problem("deleted-row", f"{host}#{seq}", None,
                                        "the anchored entry is gone"))
            elif found != digest:
                problems.append(Problem("altered-row", f"{host}#{seq}", None,
                                        "the chain no longer passes through the anchored hash "
                                        "(history rewritten)"))
    return problems


def load_anchor(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text("utf-8"))
    heads = data.get("heads", data) if isinstance(data, dict) else None
    if not isinstance(heads, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("seq"), int) and isinstance(v.get("hash"), str)
            for v in heads.values()):
        raise ValueError("not an anchor file (expected {\"heads\": {HOST: {\"seq\", \"hash\"}}})")
    return heads


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

    ``archived(sender, recipients)`` says whether the archive settings keep such a
    message; ``pending(event_id)`` whether the event is on the log but not yet in SQL.
    """
    report = Report()
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
                location = expected_location(r.action, r.category, r.queue_status, r.folder,
                                             archived(r.sender, rcpts))
                facts = MessageFacts(r.event_id, utc(r.received_at), r.sender, rcpts,
                                     r.raw_sha256, location)
                _check_message(store, facts, r.tombstone is not None,
                               found.pop(r.event_id, []), report)
            last = rows[-1].event_id
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
def summaries_position(engine: Engine, name: str = "summaries") -> int:
    """The journal position of a journal-fed consumer (0 if it stored none); a Kafka-fed
    one stores offsets instead (compliance.positions, used by ``qscan verify``)."""
    from compliance.positions import coverage

    return coverage(engine, name).journal or 0


def verify_log(engine: Engine, records: Iterable[Sequence[LogRecord]], *, position: int,
               local_host: str | None = None) -> Report:
    """Every event the log still holds up to ``position`` must be in SQL, unchanged.

    Holds and exports are compared with their events field by field whatever the
    position (their commands write the rows at once), and hold and export rows
    made on ``local_host`` that the journal should still hold an event for but
    does not are reported (compliance.record_check).
    """
    report = Report()
    records_check = RecordCheck(local_host=local_host, position=position)

    def problem(kind: str, where: str, event_id: str | None, detail: str) -> None:
        report.problems.append(Problem(kind, where, event_id, detail))

    with engine.connect() as conn:
        for batch in records:
            for r in batch:
                records_check.add(r.event, r.position)
            batch = [r for r in batch if r.position <= position]
            report.log_events += len(batch)
            _check_log_batch(conn, batch, report)
        records_check.check(conn, problem)
    return report


def _check_log_batch(conn: Connection, batch: Sequence[LogRecord], report: Report) -> None:
    scanned = {r.event.event_id: r.event for r in batch if isinstance(r.event, MessageScanned)}
    if scanned:
        rows = {r.event_id: r for r in conn.execute(
            select(Message.event_id, Message.sha256, Message.host)
            .where(Message.event_id.in_(list(scanned))))}
        for event_id, ev in scanned.items():
            row = rows.get(event_id)
            if row is None:
                report.problems.append(Problem("missing-row", "messages", event_id,
                                               "the journal holds this message, SQL does not"))
            elif row.sha256 != ev.sha256:
                report.problems.append(Problem("log-mismatch", "messages", event_id,
                                               "the message hash differs from the journal's"))
    for model, kind in ((QueueFailure, QueueFailed), (Deletion, MessageDeleted)):
        ids = [r.event.event_id for r in batch if isinstance(r.event, kind)]
        if not ids:
            continue
        have = set(conn.scalars(select(model.event_id).where(model.event_id.in_(ids))))
        if kind is MessageDeleted:
            refs = {r.event.ref_event_id: r.event.event_id for r in batch
                    if isinstance(r.event, MessageDeleted) and r.event.event_id not in have}
            # another tombstone for the same copy satisfies it
            have |= {refs[x] for x in conn.scalars(
                select(Deletion.ref_event_id).where(Deletion.ref_event_id.in_(list(refs))))}
        for event_id in ids:
            if event_id not in have:
                report.problems.append(Problem("missing-row", model.__tablename__, event_id,
                                               "the journal holds this event, SQL does not"))
