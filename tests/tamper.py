"""An adversary with database and disk access, for the tamper tests (tests/test_tamper.py).

Each tampering is a function ``(site, rng) -> Tampered`` that changes a store the way an
attacker could (plain SQL and file writes; where it helps the attacker, the chain links and
the head recomputed with qscan's own canonical encoding) and says which records it touched,
so the test can demand that ``qscan verify`` names them.

``TAMPERINGS`` is the registry the randomized test walks; ``JOURNAL_TAMPERINGS`` holds the
tamperings of the journal itself (its SQLite file edited with plain SQL, the way someone
with the file would: raw bytes, a body field with and without its own link re-hashed, an
event deleted or inserted, the tail cut, the whole chain recomputed after an anchor). A
journal finding names its event as ``journal HOST#SEQ`` and by event id.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, select, update

from compliance import canonical
from compliance.models import (
    ChainHead,
    Deletion,
    DlpFinding,
    Export,
    ExportItem,
    Finding,
    Hold,
    Message,
    Part,
    QuarantineEntry,
    QuarantineRelease,
    QueueFailure,
    Recipient,
    ReleaseRequest,
)
from ingest.ids import uuid7
from ingest.journal_link import link
from tests.compliance_site import Site


@dataclass(frozen=True)
class Tampered:
    """What was changed: the records a finding must name (event id, or host and seq)."""

    what: str
    event_ids: tuple[str, ...] = ()
    seqs: tuple[tuple[str, int], ...] = ()  # (host, chain seq) of entries that are gone


Tampering = Callable[[Site, random.Random], Tampered]

_ENTRY_MODELS: dict[str, Any] = {"message": Message, "queue_failed": QueueFailure,
                                 "deletion": Deletion}
_CHILD_MODELS: dict[str, Any] = {"recipients": Recipient, "parts": Part, "findings": Finding,
                                 "dlp_findings": DlpFinding}


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _changed(value: Any, code: str) -> Any:
    """A different value of the same type, that fits the column."""
    if code == "t":
        if not value:
            return "x"
        return value[:-1] + ("x" if value[-1] != "x" else "y")
    if code == "i":
        return (value or 0) + 1
    if code == "f":
        return (value or 0.0) + 0.5
    if code == "b":
        return not value
    if code == "d":
        return value + timedelta(seconds=1)
    raise ValueError(code)


def _entries(conn: Connection) -> list[tuple[str, str, str, int]]:
    """(kind, event id, host, seq) of every chain entry."""
    out = []
    for kind, model in _ENTRY_MODELS.items():
        for event_id, host, seq in conn.execute(
                select(model.event_id, model.host, model.chain_seq)
                .where(model.chain_seq.is_not(None))):
            out.append((kind, event_id, host, int(seq)))
    return sorted(out, key=lambda e: (e[2], e[3]))


# Columns an attacker may change, by table: (column, type code). The chained columns, the
# columns checked against chained facts, and the quarantine entry's evidence.
def _alterable(rehash: bool) -> list[tuple[Any, str, str]]:
    cols: list[tuple[Any, str, str]] = []
    for name, code in canonical.MESSAGE_V3:
        if name not in ("event_id", "host"):
            cols.append((Message, name, code))
    for model, spec in ((QueueFailure, canonical.QUEUE_FAILURE), (Deletion, canonical.DELETION)):
        cols += [(model, name, code) for name, code in spec if name not in ("event_id", "host")
                 # re-hashing points every tombstone at its message's hash again
                 and not (rehash and name == "message_hash")]
    for table, model in _CHILD_MODELS.items():
        cols += [(model, name, code) for name, code in canonical.CHILDREN[table]]
    if not rehash:  # these are not hashed: re-hashing the chain does nothing for them
        cols += [(Message, "queue_status", "t"), (Message, "deleted_at", "d"),
                 (Message, "queue_exit_code", "i"), (Message, "chain_version", "i"),
                 (Recipient, "received_at", "d"), (QuarantineEntry, "folder", "t"),
                 (QuarantineEntry, "reason", "t"), (QuarantineEntry, "received_at", "d")]
        # holds and exports: their record is their event on the log
        cols += [(Hold, name, code) for name, code in (
            ("matter", "t"), ("custodians", "t"), ("since", "d"), ("until", "d"),
            ("query", "t"), ("reason", "t"), ("created_by", "t"), ("created_at", "d"),
            ("released_at", "d"), ("released_by", "t"), ("release_reason", "t"))]
        cols += [(Export, name, code) for name, code in (
            ("matter", "t"), ("actor", "t"), ("started_at", "d"), ("finished_at", "d"),
            ("query", "t"), ("format", "t"), ("out_dir", "t"), ("messages", "i"),
            ("missing", "i"), ("total_bytes", "i"), ("files", "t"), ("custody_sha256", "t"))]
        cols += [(ExportItem, "doc_id", "t"), (ExportItem, "sha256", "t")]
        # quarantine releases and four-eyes requests (a denied one): their events
        cols += [(QuarantineRelease, name, "t") for name in (
            "folder", "actor", "reason", "sha256", "requested_by")]
        cols += [(ReleaseRequest, name, code) for name, code in (
            ("folder", "t"), ("actor", "t"), ("operator", "t"), ("reason", "t"),
            ("state", "t"), ("denied_by", "t"), ("denied_operator", "t"),
            ("denial_reason", "t"), ("denied_at", "d"))]
    return cols


def _keys(table: Table) -> tuple[Any, Any]:
    """The row key and the column that names the record in a finding."""
    if "export_id" in table.c and "id" in table.c:  # an export item: its export is named
        return table.c.id, table.c.export_id
    if "id" in table.c:
        return table.c.id, table.c.event_id
    for name in ("event_id", "export_id", "hold_id"):  # an export also names its hold
        if name in table.c:
            return table.c[name], table.c[name]
    raise ValueError(table.name)


def _alter_one(site: Site, rng: random.Random, *, rehash: bool,
               columns: list[tuple[Any, str, str]] | None = None) -> Tampered:
    cols = columns or _alterable(rehash)
    with site.engine.begin() as conn:
        while True:
            model, name, code = rng.choice(cols)
            table = _t(model)
            key, ident = _keys(table)
            rows: list[Any] = list(conn.execute(select(key, ident, table.c[name])))
            if name in ("deleted_at", "released_at"):
                rows = [r for r in rows if r[2] is not None] or rows
            if not rows:
                continue
            row_key, event_id, value = rng.choice(rows)
            if value is None and code == "d":
                value = datetime(2026, 1, 1)
            new = _changed(value, code)
            if name == "folder":
                new = rng.choice([f for f in ("viruses", "spam", "dlp", "policy") if f != value])
            conn.execute(update(table).where(key == row_key).values({name: new}))
            break
    if rehash:
        rehash_chains(site)
    # a child row or quarantine entry is named by its message's event id
    return Tampered(f"{table.name}.{name} of {event_id}", (event_id,))


def alter_column(site: Site, rng: random.Random) -> Tampered:
    """One column of one row changed (message, child, failure, tombstone, quarantine entry)."""
    return _alter_one(site, rng, rehash=False)


def alter_and_rehash(site: Site, rng: random.Random) -> Tampered:
    """One chained value changed, then every link and the head recomputed (and tombstones
    pointed at the new message hashes), as an attacker with qscan's code would."""
    return _alter_one(site, rng, rehash=True)


def rehash_subject_category_score(site: Site, rng: random.Random) -> Tampered:
    """The issue's examples: a changed subject, category or spam score, whole chain re-hashed."""
    name = rng.choice(["subject", "category", "spam_score"])
    code = dict(canonical.MESSAGE_V3)[name]
    return _alter_one(site, rng, rehash=True, columns=[(Message, name, code)])


def delete_row(site: Site, rng: random.Random) -> Tampered:
    with site.engine.begin() as conn:
        kind, event_id, host, seq = rng.choice(_entries(conn))
        model = _ENTRY_MODELS[kind]
        if kind == "message":
            for child in (*_CHILD_MODELS.values(), QuarantineEntry):
                conn.execute(_t(child).delete().where(_t(child).c.event_id == event_id))
        conn.execute(_t(model).delete().where(_t(model).c.event_id == event_id))
    return Tampered(f"deleted {kind} {event_id}", (event_id,), ((host, seq),))


def delete_and_rehash(site: Site, rng: random.Random) -> Tampered:
    """A chain entry deleted, the later ones renumbered and every link and head recomputed."""
    done = delete_row(site, rng)
    rehash_chains(site)
    return Tampered(done.what + " and re-hashed", done.event_ids)


def insert_and_rehash(site: Site, rng: random.Random) -> Tampered:
    """A forged message put in the middle of a chain, the chain renumbered and re-hashed.

    Never before the chain's first entry: a row placed before the first entry whose event
    the journal holds is beyond the journal's reach (docs/compliance.md, the limits)."""
    done = forge_append(site, rng)
    forged = done.event_ids[0]
    with site.engine.begin() as conn:
        host, last = conn.execute(select(Message.host, Message.chain_seq)
                                  .where(Message.event_id == forged)).one()
        at = rng.randint(2, (last or 3) - 1)
        for model in _ENTRY_MODELS.values():  # make room at `at` (two steps: unique index)
            table = _t(model)
            moving = (table.c.host == host) & (table.c.chain_seq >= at) & (
                table.c.event_id != forged)
            conn.execute(update(table).where(moving).values(chain_seq=table.c.chain_seq + 10**9))
            conn.execute(update(table).where(table.c.chain_seq >= 10**9)
                         .values(chain_seq=table.c.chain_seq - 10**9 + 1))
        conn.execute(update(_t(Message)).where(Message.event_id == forged).values(chain_seq=at))
    rehash_chains(site)
    return Tampered(f"forged {forged} at {host}#{at} and re-hashed", (forged,))


def reorder_rows(site: Site, rng: random.Random) -> Tampered:
    """Two entries of a chain swap places (their chain_seq)."""
    with site.engine.begin() as conn:
        a, b = rng.sample(_entries(conn), 2)
        if a[2] != b[2]:
            b = next(e for e in _entries(conn) if e[2] == a[2] and e != a)
        ta, tb = _t(_ENTRY_MODELS[a[0]]), _t(_ENTRY_MODELS[b[0]])
        conn.execute(update(ta).where(ta.c.event_id == a[1]).values(chain_seq=-1))
        conn.execute(update(tb).where(tb.c.event_id == b[1]).values(chain_seq=a[3]))
        conn.execute(update(ta).where(ta.c.event_id == a[1]).values(chain_seq=b[3]))
    return Tampered(f"swapped {a[1]} and {b[1]}", (a[1], b[1]))


def _copies(site: Site) -> list[Any]:
    return [c for c in site.store.scan() if c.event_id]


def edit_file(site: Site, rng: random.Random) -> Tampered:
    copy = rng.choice(_copies(site))
    data = bytearray(copy.path.read_bytes())
    at = rng.randrange(0, data.index(b"*** qscan Envelope Details Begin"))
    data[at] = data[at] ^ 0x20 if data[at] not in (0x0A, 0x0D) else 0x41
    copy.path.write_bytes(bytes(data))
    return Tampered(f"edited {copy.path.name}", (copy.event_id,))


def delete_file(site: Site, rng: random.Random) -> Tampered:
    copy = rng.choice(_copies(site))
    copy.path.unlink()
    return Tampered(f"deleted {copy.path.name}", (copy.event_id,))


def forge_archive_decision(site: Site, rng: random.Random) -> Tampered:
    """An archived copy deleted and its recorded archive decision rewritten to 'not archived'
    (every line for it, so no earlier decision remains)."""
    record = site.cfg.archive_maildir / ".qscan-archive-decisions"
    copy = rng.choice([c for c in _copies(site) if c.location == "archive"])
    copy.path.unlink()
    lines = record.read_text().splitlines(keepends=True)
    record.write_text("".join(
        line.replace(f"D {copy.event_id} 1 ", f"D {copy.event_id} 0 ") for line in lines))
    return Tampered(f"deleted {copy.path.name} and recorded it as not archived",
                    (copy.event_id,))


def truncate_tail(site: Site, rng: random.Random) -> Tampered:
    """The newest 1-3 entries of a chain deleted and its head set back to match."""
    with site.engine.begin() as conn:
        entries = _entries(conn)
        host = rng.choice(sorted({e[2] for e in entries}))
        mine = [e for e in entries if e[2] == host]
        k = rng.randint(1, min(3, len(mine) - 1))
        gone, keep = mine[-k:], mine[-k - 1]
        for kind, event_id, _, _ in gone:
            model = _ENTRY_MODELS[kind]
            if kind == "message":
                for child in (*_CHILD_MODELS.values(), QuarantineEntry):
                    conn.execute(_t(child).delete().where(_t(child).c.event_id == event_id))
            conn.execute(_t(model).delete().where(_t(model).c.event_id == event_id))
        prev = conn.scalar(select(_ENTRY_MODELS[keep[0]].chain_hash)
                           .where(_ENTRY_MODELS[keep[0]].event_id == keep[1]))
        conn.execute(update(_t(ChainHead)).where(ChainHead.host == host)
                     .values(seq=keep[3], hash=prev))
    return Tampered(f"cut {host} after #{keep[3]}", tuple(e[1] for e in gone),
                    tuple((host, e[3]) for e in gone))


def forge_append(site: Site, rng: random.Random) -> Tampered:
    """A message that never was, appended at a chain's head with a valid link and the head
    moved: action reject, so no stored copy is expected."""
    with site.engine.begin() as conn:
        model_row = dict(rng.choice(conn.execute(select(_t(Message))).mappings().all()))
        host = model_row["host"]
        seq, prev = conn.execute(select(ChainHead.seq, ChainHead.hash)
                                 .where(ChainHead.host == host)).one()
        forged = str(uuid7())
        row = {**model_row, "event_id": forged, "action": "reject", "category": "policy",
               "queue_status": "n/a", "queue_exit_code": None, "deleted_at": None,
               "subject": "forged", "chain_seq": seq + 1, "chain_version": canonical.MESSAGE_VERSION,
               "received_at": model_row["received_at"] + timedelta(seconds=1)}
        kids = {"recipients": [{"address": "x@example.org", "domain": "example.org"}],
                "parts": [], "findings": [], "dlp_findings": []}
        row["chain_hash"] = canonical.link(prev, canonical.encode("message", host, seq + 1, row,
                                                                  kids))
        conn.execute(_t(Message).insert().values(**row))
        conn.execute(_t(Recipient).insert().values(event_id=forged, address="x@example.org",
                                                   domain="example.org",
                                                   received_at=row["received_at"]))
        conn.execute(update(_t(ChainHead)).where(ChainHead.host == host)
                     .values(seq=seq + 1, hash=row["chain_hash"]))
    return Tampered(f"forged {forged} at {host}#{seq + 1}", (forged,))


def forge_tombstone(site: Site, rng: random.Random) -> Tampered:
    """A stored copy deleted and made to look lawful: a tombstone chained at the head with a
    valid link (naming the message's hash), the head moved, the row marked deleted."""
    with site.engine.begin() as conn:
        tombstoned = set(conn.scalars(select(Deletion.ref_event_id)))
        copy = rng.choice([c for c in _copies(site) if c.event_id not in tombstoned])
        msg = conn.execute(select(Message.host, Message.chain_hash, Message.raw_sha256)
                           .where(Message.event_id == copy.event_id)).one()
        seq, prev = conn.execute(select(ChainHead.seq, ChainHead.hash)
                                 .where(ChainHead.host == msg.host)).one()
        forged = str(uuid7())
        now = datetime.now().astimezone()
        row = {"event_id": forged, "ref_event_id": copy.event_id, "time": now, "host": msg.host,
               "actor": f"root@{site.cfg.hostname}", "reason": "retention", "rule": "",
               "location": copy.location, "raw_sha256": msg.raw_sha256,
               "message_hash": msg.chain_hash, "chain_seq": seq + 1}
        row["chain_hash"] = canonical.link(prev, canonical.encode("deletion", msg.host, seq + 1,
                                                                  row))
        conn.execute(_t(Deletion).insert().values(**row))
        conn.execute(update(_t(Message)).where(Message.event_id == copy.event_id)
                     .values(deleted_at=now))
        conn.execute(update(_t(ChainHead)).where(ChainHead.host == msg.host)
                     .values(seq=seq + 1, hash=row["chain_hash"]))
    copy.path.unlink()
    return Tampered(f"forged tombstone {forged} for {copy.event_id}", (forged,))


def rehash_chains(site: Site) -> None:
    """Recompute every link of every chain from the rows as they are now, and the heads;
    tombstones are pointed at their messages' new hashes (what a careful attacker does)."""
    import heapq

    from compliance.verify import _TABLES, _hosts, _stream

    with site.engine.begin() as conn:
        for host in _hosts(conn):
            entries = list(heapq.merge(*(_stream(conn, kind, host) for kind in _TABLES),
                                       key=lambda e: e.seq))
            prev, new_hashes = canonical.GENESIS, dict[str, str]()
            for i, entry in enumerate(entries, 1):
                row = dict(entry.row)
                if entry.kind == "deletion" and row["ref_event_id"] in new_hashes:
                    row["message_hash"] = new_hashes[row["ref_event_id"]]
                prev = canonical.link(prev, canonical.encode(entry.kind, host, i, row,
                                                             entry.children))
                table = _t(_ENTRY_MODELS[entry.kind])
                values: dict[str, Any] = {"chain_seq": i, "chain_hash": prev}
                if entry.kind == "deletion":
                    values["message_hash"] = row["message_hash"]
                conn.execute(update(table).where(table.c.event_id == entry.event_id)
                             .values(**values))
                if entry.kind == "message":
                    new_hashes[entry.event_id] = prev
            conn.execute(update(_t(ChainHead)).where(ChainHead.host == host)
                         .values(seq=len(entries), hash=prev))


TAMPERINGS: dict[str, Tampering] = {
    "alter-column": alter_column,
    "delete-row": delete_row,
    "reorder-rows": reorder_rows,
    "edit-file": edit_file,
    "delete-file": delete_file,
    "forge-archive-decision": forge_archive_decision,
    "truncate-tail": truncate_tail,
    "forge-append": forge_append,
    "forge-tombstone": forge_tombstone,
    "alter-and-rehash": alter_and_rehash,
    "delete-and-rehash": delete_and_rehash,
    "insert-and-rehash": insert_and_rehash,
    "rehash-subject-category-score": rehash_subject_category_score,
}

# -- the journal ----------------------------------------------------------------------
_EVENT_COLS = "seq, event_id, type, appended, body, raw, prev, chain"


@contextmanager
def _journal_db(site: Site) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(site.cfg.journal_path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def _events(db: sqlite3.Connection, where: str = "1", *params: Any) -> list[Any]:
    return db.execute(f"SELECT {_EVENT_COLS} FROM events WHERE {where} ORDER BY seq",
                      params).fetchall()


def _anchored_seq(db: sqlite3.Connection, host: str) -> int:
    """The newest journal seq an anchor (a ``chain.anchored`` event) recorded for ``host``."""
    seqs = [json.loads(body)["anchor"]["journal"][host]["seq"] for (body,) in db.execute(
        "SELECT body FROM events WHERE type = 'chain.anchored'")]
    if not seqs:
        raise AssertionError("the tamper store holds no anchor")
    return max(seqs)


def _rechain(db: sqlite3.Connection, from_seq: int) -> None:
    """Recompute every link from ``from_seq`` to the head (each event's ``prev`` and
    ``chain``), as an attacker with qscan's code would after an edit."""
    rows = _events(db, "seq >= ?", from_seq)
    prev = rows[0][6]
    for seq, event_id, typ, appended, body, raw, _, _ in rows:
        digest = link(prev, seq, appended, event_id, typ, body, raw)
        db.execute("UPDATE events SET prev = ?, chain = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest


def _edit_body(body: bytes, rng: random.Random) -> bytes:
    """A body field changed (``action`` where there is one, else another string field)."""
    obj = json.loads(body)
    if "action" in obj:
        obj["action"] = rng.choice([a for a in ("deliver", "drop", "reject", "quarantine")
                                    if a != obj["action"]])
    else:
        name = rng.choice(sorted(k for k, v in obj.items()
                                 if isinstance(v, str) and k not in ("type", "event_id")))
        obj[name] = obj[name] + "x"
    return json.dumps(obj, ensure_ascii=False).encode()


def journal_edit_raw(site: Site, rng: random.Random) -> Tampered:
    """One byte of an event's stored raw message changed."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        seq, event_id, *_, raw, _, _ = rng.choice(_events(db, "raw IS NOT NULL"))
        data = bytearray(raw)
        at = rng.randrange(len(data))
        data[at] ^= 0x01
        db.execute("UPDATE events SET raw = ? WHERE seq = ?", (bytes(data), seq))
    return Tampered(f"journal {host}#{seq}: raw byte {at} flipped", (event_id,), ((host, seq),))


def _edit_field(site: Site, rng: random.Random, *, relink: bool) -> Tampered:
    host = site.cfg.hostname
    with _journal_db(site) as db:
        head = db.execute("SELECT max(seq) FROM events").fetchone()[0]
        # re-hashed at the head, the edit would be a new event's: that needs an anchor after it
        seq, event_id, typ, appended, body, raw, prev, _ = rng.choice(
            _events(db, "seq < ?", head) if relink else _events(db))
        forged = _edit_body(body, rng)
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (forged, seq))
        if relink:
            db.execute("UPDATE events SET chain = ? WHERE seq = ?",
                       (link(prev, seq, appended, event_id, typ, forged, raw), seq))
    how = " and its link re-hashed" if relink else ""
    return Tampered(f"journal {host}#{seq} ({typ}): a body field edited{how}", (event_id,),
                    ((host, seq),))


def journal_edit_field(site: Site, rng: random.Random) -> Tampered:
    """A body field of an event (``action``, ...) edited; its link left as it was."""
    return _edit_field(site, rng, relink=False)


def journal_edit_field_relinked(site: Site, rng: random.Random) -> Tampered:
    """A body field edited and that event's own link recomputed (the next one's not)."""
    return _edit_field(site, rng, relink=True)


def journal_unreadable_body(site: Site, rng: random.Random) -> Tampered:
    """An event's body replaced by one that does not decode (``{}``, garbage bytes, a field
    of the wrong type), its link left or re-hashed: verify must name it, not crash."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        head = db.execute("SELECT max(seq) FROM events").fetchone()[0]
        seq, event_id, typ, appended, body, raw, prev, _ = rng.choice(_events(db, "seq < ?", head))
        forged = rng.choice([b"{}", bytes(rng.randrange(256) for _ in range(24)),
                             body.replace(b'"event_id":', b'"event_id":7,"x":', 1)])
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (forged, seq))
        if rng.random() < 0.5:
            db.execute("UPDATE events SET chain = ? WHERE seq = ?",
                       (link(prev, seq, appended, event_id, typ, forged, raw), seq))
    return Tampered(f"journal {host}#{seq} ({typ}): body replaced by {forged[:24]!r}",
                    (event_id,), ((host, seq),))


def journal_delete_event(site: Site, rng: random.Random) -> Tampered:
    """One event deleted (any but the newest: that is the tail's kind)."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        head = db.execute("SELECT max(seq) FROM events").fetchone()[0]
        seq, event_id, typ, *_ = rng.choice(_events(db, "seq < ?", head))
        db.execute("DELETE FROM events WHERE seq = ?", (seq,))
    return Tampered(f"journal {host}#{seq} ({typ}) deleted", (event_id,), ((host, seq),))


def journal_insert_event(site: Site, rng: random.Random) -> Tampered:
    """A forged event put into the journal: either without a link after the head, or in
    the middle of the chain with a valid link to the event before it (the later events
    moved up one seq, the journal's counter moved with them)."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        rows = _events(db)
        model = rng.choice([r for r in rows if r[2] == "message.scanned"])
        obj = json.loads(model[4])
        forged_id = str(uuid7())
        obj.update(event_id=forged_id, subject="forged", action="reject")
        body = json.dumps(obj, ensure_ascii=False).encode()
        if rng.random() < 0.3:  # unlinked, after the head
            seq = rows[-1][0] + 1
            db.execute("INSERT INTO events(seq, event_id, type, appended, body) "
                       "VALUES (?, ?, 'message.scanned', ?, ?)",
                       (seq, forged_id, rows[-1][3], body))
            how = "without a link after the head"
        else:
            seq = rng.randint(rows[0][0] + 1, rows[-1][0])
            before = next(r for r in rows if r[0] == seq - 1)
            db.execute("UPDATE events SET seq = seq + 1000000000 WHERE seq >= ?", (seq,))
            db.execute("UPDATE events SET seq = seq - 1000000000 + 1 WHERE seq >= 1000000000")
            db.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'events'")
            appended = before[3]
            db.execute("INSERT INTO events(seq, event_id, type, appended, body, prev, chain) "
                       "VALUES (?, ?, 'message.scanned', ?, ?, ?, ?)",
                       (seq, forged_id, appended, body, before[7],
                        link(before[7], seq, appended, forged_id, "message.scanned", body, None)))
            how = "linked into the middle of the chain"
    return Tampered(f"journal {host}#{seq}: forged event {forged_id} {how}", (forged_id,),
                    ((host, seq),))


def journal_truncate_tail(site: Site, rng: random.Random) -> Tampered:
    """The newest 1-3 events deleted; or (half the time) the newest events back to and
    including the last anchored head, with the journal's counter set back to match, so
    only the anchors remember them (they can name only what they recorded)."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        rows = _events(db)
        if rng.random() < 0.5:
            gone = rows[-rng.randint(1, 3):]
            named = gone
            how = "cut"
        else:
            anchored = _anchored_seq(db, host)
            gone = [r for r in rows if r[0] >= anchored - rng.randint(0, 2)]
            named = [r for r in gone if r[0] == anchored]
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'",
                       (gone[0][0] - 1,))
            how = "cut back before the last anchored head, the counter reset"
        db.execute("DELETE FROM events WHERE seq >= ?", (gone[0][0],))
    return Tampered(f"journal {host}: #{gone[0][0]}-#{gone[-1][0]} {how}",
                    tuple(r[1] for r in named), tuple((host, r[0]) for r in named))


def journal_rechain_after_anchor(site: Site, rng: random.Random) -> Tampered:
    """An event the anchors cover edited (a body field, or a raw byte), then every link from
    it to the head recomputed: the chain walk alone passes; the anchors must name the event."""
    host = site.cfg.hostname
    with _journal_db(site) as db:
        anchored = _anchored_seq(db, host)
        seq, event_id, typ, *_ = rng.choice(_events(db, "seq <= ?", anchored))
        body, raw = db.execute("SELECT body, raw FROM events WHERE seq = ?", (seq,)).fetchone()
        if raw is not None and rng.random() < 0.5:
            data = bytearray(raw)
            data[rng.randrange(len(data))] ^= 0x01
            db.execute("UPDATE events SET raw = ? WHERE seq = ?", (bytes(data), seq))
            what = "raw byte"
        else:
            db.execute("UPDATE events SET body = ? WHERE seq = ?", (_edit_body(body, rng), seq))
            what = "body field"
        _rechain(db, seq)
    return Tampered(f"journal {host}#{seq} ({typ}): a {what} edited, the chain recomputed "
                    f"to the head", (event_id,), ((host, seq),))


JOURNAL_TAMPERINGS: dict[str, Tampering] = {
    "journal-edit-raw": journal_edit_raw,
    "journal-edit-field": journal_edit_field,
    "journal-edit-field-relinked": journal_edit_field_relinked,
    "journal-unreadable-body": journal_unreadable_body,
    "journal-delete-event": journal_delete_event,
    "journal-insert-event": journal_insert_event,
    "journal-truncate-tail": journal_truncate_tail,
    "journal-rechain-after-anchor": journal_rechain_after_anchor,
}

_RANGE = re.compile(r"([^\s#]+)#(\d+)(?:-#(\d+))?")


def _names(problem: dict[str, Any], event_id: str, place: tuple[str, int] | None) -> bool:
    where = problem.get("where") or ""
    if problem.get("event_id") == event_id or event_id in where:
        return True
    if place is None:
        return False
    for m in _RANGE.finditer(where):
        lo, hi = int(m.group(2)), int(m.group(3) or m.group(2))
        if m.group(1) == place[0] and lo <= place[1] <= hi:
            return True
    return False


def unnamed(problems: list[dict[str, Any]], tampered: Tampered) -> list[str]:
    """The tampered records no finding names (by event id, or by host and chain position)."""
    places: list[tuple[str, int] | None] = list(tampered.seqs)
    places += [None] * (len(tampered.event_ids) - len(places))
    return [event_id for event_id, place in zip(tampered.event_ids, places, strict=True)
            if not any(_names(p, event_id, place) for p in problems)]
