"""Legal-discovery exports: exactly the messages a matter needs, with hashes and custody.

``qscan export --matter NAME [filters] --out DIR`` selects the messages the
matter's hold covers (custodians, dates, query), narrowed by any further
filters; with ``--query`` (a discovery search, compliance/discovery/selection.py)
the messages the search found, narrowed to the matter's hold when the matter has
one (a matter without a hold is allowed then), and produces in DIR:

* ``messages/PREFIX0000001.eml`` ... (or one ``messages.mbox``, mboxrd): each
  message as qmail-queue received it from qscan, read from its archive or
  quarantine copy (or from the journal while it still holds the event) and
  proven against the SQL row's ``raw_sha256`` before it is written;
* ``manifest.csv``, ``manifest.json``, ``edrm.xml``, ``loadfile.dat``
  (compliance.loadfiles);
* ``custody.json``: who ran it, when, the exact selection (for an export by
  query: the query as typed and in canonical form, its filters, and the result
  set as event ids with the messages' hashes), the tool version, counts, the
  SHA-256 of every other file, and the chain heads at that moment.

The same custody record is stored in SQL (``exports``, ``export_items``) and on
the log (``export.completed``). Everything is written into a hidden sibling
directory and renamed to DIR only when complete: a failed or interrupted export
leaves nothing that looks like a production. ``verify_export`` re-checks a
production against its custody record (and SQL, when reachable).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, func, select, true, tuple_

from compliance import holds, loadfiles
from compliance.audit import Filters
from compliance.copystore import CopyError, CopyStore, MessageFacts
from compliance.db import session_factory
from compliance.models import ChainHead, Deletion, Export, Message, Recipient
from compliance.records import record_export
from compliance.verify import expected_location
from ingest.event import (
    AnyEvent,
    DiscoveryQuery,
    ExportCompleted,
    ExportedItem,
    SelectedItem,
    utc,
)
from ingest.ids import uuid7
from ingest.private import fsync_dir

CUSTODY = "custody.json"
PAGE = 500
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
LogAppend = Callable[[AnyEvent], None]
RawFromLog = Callable[[str], bytes | None]
Archived = Callable[[str, str, list[str]], bool]  # (event id, sender, recipients)
# Why a selected message was not produced (the manifest's ``source``):
DELETED = "deleted"  # deleted lawfully: the manifest names the tombstone
NOT_STORED = "not stored"  # no copy kept by design (rejected, queue failed, archive filter)
MISSING = "missing"  # a copy should exist and does not (run `qscan verify`)


class ExportError(Exception):
    """An export that cannot be made (unknown matter, existing directory...)."""


@dataclass(frozen=True)
class ExportRequest:
    matter: str
    out: Path
    actor: str
    host: str
    tool_version: str
    filters: Filters = field(default_factory=Filters)
    fmt: Literal["eml", "mbox"] = "eml"
    prefix: str = "QSCAN"
    # an export by query: the discovery search and every message (copy) it found
    discovery: DiscoveryQuery | None = None
    selected: Sequence[SelectedItem] = ()

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ExportError("--prefix: 1 to 20 letters, digits, '-' or '_'")
        if self.fmt not in ("eml", "mbox"):
            raise ExportError(f"unknown format {self.fmt!r}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _pages(ids: Sequence[str] | None) -> Iterator[ColumnElement[bool] | None]:
    """The selection in pages: keyset pages of the condition (None), or for an export by
    query the chosen event ids PAGE at a time (a bound list per page: no statement ever
    carries more parameters than a database takes)."""
    if ids is None:
        while True:
            yield None
    else:
        for start in range(0, len(ids), PAGE):
            yield Message.event_id.in_(list(ids[start:start + PAGE]))


def _selected(engine: Engine, where: ColumnElement[bool],
              ids: Sequence[str] | None = None) -> Iterator[list[Any]]:
    last: tuple[datetime, str] | None = None
    m = Message
    for page in _pages(ids):
        stmt = (select(m.event_id, m.received_at, m.host, m.sender, m.header_from, m.header_to,
                       m.header_cc, m.header_date, m.subject, m.message_id, m.action,
                       m.category, m.raw_sha256, m.sha256, m.queue_status,
                       Deletion.event_id.label("tombstone"))
                .outerjoin(Deletion, Deletion.ref_event_id == m.event_id)
                .where(where))
        if page is not None:
            stmt = stmt.where(page)
        elif last is not None:
            stmt = stmt.where(tuple_(m.received_at, m.event_id) > tuple_(*last))
        stmt = stmt.order_by(m.received_at, m.event_id)
        if page is None:
            stmt = stmt.limit(PAGE)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
            rcpts: dict[str, list[str]] = {r.event_id: [] for r in rows}
            if rows:
                for event_id, address in conn.execute(
                        select(Recipient.event_id, Recipient.address)
                        .where(Recipient.event_id.in_(list(rcpts))).order_by(Recipient.id)):
                    rcpts[event_id].append(address)
        if page is None and not rows:
            return
        if rows:
            yield [(r, rcpts[r.event_id]) for r in rows]
            last = (rows[-1].received_at, rows[-1].event_id)


def fetch_message(store: CopyStore, raw_from_log: RawFromLog | None, facts: MessageFacts,
                  kept: bool) -> tuple[bytes | None, str]:
    """The message and where it came from (archive, quarantine/FOLDER, journal); (None, why)
    when there is none. A copy that fails its check is skipped; the journal's bytes count only
    when their SHA-256 is the one recorded. Exports and the console's raw download use it.

    Only for messages without a tombstone: a lawfully deleted message is never
    produced, not even from the journal.
    """
    source = MISSING if kept else NOT_STORED
    for copy in store.locate(facts):
        try:
            return store.read_message(copy, facts), copy.location
        except CopyError:
            source = "unverifiable"
    if raw_from_log is not None and facts.raw_sha256:
        raw = raw_from_log(facts.event_id)
        if raw and hashlib.sha256(raw).hexdigest() == facts.raw_sha256:
            return raw, "journal"
    return None, source


def run(engine: Engine, store: CopyStore, log_append: LogAppend, req: ExportRequest, *,
        raw_from_log: RawFromLog | None = None, archived: Archived | None = None,
        progress: Callable[[int, int], None] | None = None) -> ExportCompleted:
    """Produce the export; returns its custody event (already on the log and in SQL).

    ``archived(event_id, sender, recipients)`` says whether the message should have an
    archive copy - its recorded archive decision, else today's settings
    (archive.copies.archive_judge; default: all) - which tells "not stored" from
    "missing".

    Order: the directory is complete and renamed into place, then the event goes on
    the log (the durable record), then the SQL row. A failed log append removes the
    renamed directory; a failed SQL write after the append leaves the production and
    its event, and the summaries consumer records the row when it reaches the event.
    """
    started = datetime.now(UTC)
    out = req.out.absolute()
    if out.exists():
        raise ExportError(f"{out} already exists: an export never writes into an existing "
                          "directory")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory")
    with session_factory(engine)() as session:
        try:
            hold: Any = holds.find(session, req.matter)
        except holds.HoldError as exc:
            if req.discovery is None:
                raise ExportError(str(exc)) from exc
            hold = None  # an export by query needs no hold: the search chose the messages
        spec = holds.spec_of(hold) if hold is not None else None
        hold_id = hold.hold_id if hold is not None else None
        heads = {h.host: {"seq": h.seq, "hash": h.hash}
                 for h in session.scalars(select(ChainHead).order_by(ChainHead.host))}
    where = and_(spec.clause() if spec is not None else true(), *req.filters.where())
    ids = [i.event_id for i in req.selected] if req.discovery is not None else None
    with engine.connect() as conn:
        if ids is None:
            total = int(conn.scalar(select(func.count()).select_from(Message).where(where)) or 0)
        else:
            total = sum(int(conn.scalar(select(func.count()).select_from(Message)
                                        .where(where, Message.event_id.in_(ids[i:i + PAGE])))
                            or 0) for i in range(0, len(ids), PAGE))
    query: dict[str, Any] = {"hold": spec.describe() if spec is not None else None,
                             "filters": req.filters.as_json()}
    if req.discovery is not None:
        query["discovery"] = {**req.discovery.model_dump(),
                              "results": [i.model_dump() for i in req.selected]}
    export_id = str(uuid7())
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    os.mkdir(tmp, 0o700)
    try:
        rows, items = _produce(engine, store, raw_from_log, archived or (lambda e, s, r: True),
                               req, where, tmp, total, progress, ids)
        produced = [r for r in rows if r["sha256"]]
        total_bytes = sum(int(r["size"]) for r in produced)
        meta = {"export_id": export_id, "matter": req.matter, "hold_id": hold_id,
                "format": req.fmt, "generated": started.isoformat(), "query": query}
        _write(tmp / "manifest.csv", loadfiles.manifest_csv(rows))
        _write(tmp / "manifest.json", loadfiles.manifest_json(meta, rows))
        _write(tmp / "edrm.xml", loadfiles.edrm_xml(
            f"{req.matter} {export_id}", rows,
            description=f"qscan export of matter {req.matter}"))
        _write(tmp / "loadfile.dat", loadfiles.concordance_dat(rows))
        files = {p.relative_to(tmp).as_posix(): sha256_file(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        finished = datetime.now(UTC)
        custody = {
            "export_id": export_id, "matter": req.matter, "hold_id": hold_id,
            "actor": req.actor, "host": req.host, "started": started.isoformat(),
            "finished": finished.isoformat(), "tool": "qscan", "tool_version": req.tool_version,
            "format": req.fmt, "query": query,
            "counts": {"selected": len(rows), "messages": len(produced),
                       "missing": len(rows) - len(produced),
                       "deleted": sum(1 for r in rows if r["source"] == DELETED),
                       "not_stored": sum(1 for r in rows if r["source"] == NOT_STORED),
                       "bytes": total_bytes,
                       **({"search_results": len(ids)} if ids is not None else {})},
            "chain_heads": heads, "files": files,
        }
        data = (json.dumps(custody, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        _write(tmp / CUSTODY, data)
        for d in [*(p for p in tmp.rglob("*") if p.is_dir()), tmp]:
            fsync_dir(d)
        ev = ExportCompleted(
            event_id=export_id, time=finished, host=req.host, matter=req.matter,
            hold_id=hold_id, actor=req.actor, started=started, query=query,
            tool_version=req.tool_version, format=req.fmt, out_dir=str(out),
            messages=len(produced), missing=len(rows) - len(produced),
            total_bytes=total_bytes, files=files,
            custody_sha256=hashlib.sha256(data).hexdigest(), items=items)
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        log_append(ev)
    except BaseException:
        # not on the log: it did not happen, so nothing may look like a production
        shutil.rmtree(out, ignore_errors=True)
        fsync_dir(out.parent)
        raise
    with session_factory(engine, write=True).begin() as session:
        record_export(session, ev)
    return ev


def _produce(engine: Engine, store: CopyStore, raw_from_log: RawFromLog | None,
             archived: Archived, req: ExportRequest, where: ColumnElement[bool], tmp: Path, total: int,
             progress: Callable[[int, int], None] | None, ids: Sequence[str] | None = None
             ) -> tuple[list[dict[str, Any]], list[ExportedItem]]:
    rows: list[dict[str, Any]] = []
    items: list[ExportedItem] = []
    mbox = None
    if req.fmt == "eml":
        os.mkdir(tmp / "messages", 0o700)
    else:
        fd = os.open(tmp / "messages.mbox", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        mbox = os.fdopen(fd, "wb")
    offset = 0
    try:
        for batch in _selected(engine, where, ids):
            for r, rcpts in batch:
                doc_id = f"{req.prefix}{len(rows) + 1:07d}"
                received = utc(r.received_at)
                facts = MessageFacts(r.event_id, received, r.sender, rcpts, r.raw_sha256, None)
                if r.tombstone is not None:
                    raw, source = None, DELETED
                else:
                    kept = expected_location(r.action, r.category, r.queue_status, None,
                                             archived(r.event_id, r.sender, rcpts)) is not None
                    raw, source = fetch_message(store, raw_from_log, facts, kept)
                row: dict[str, Any] = {
                    "doc_id": doc_id, "event_id": r.event_id, "file": "", "offset": None,
                    "length": None, "sha256": None, "size": None, "source": source,
                    "received_at": received, "host": r.host, "envelope_from": r.sender,
                    "envelope_to": ";".join(rcpts), "header_from": r.header_from,
                    "header_to": r.header_to, "header_cc": r.header_cc,
                    "header_date": r.header_date, "subject": r.subject,
                    "message_id": r.message_id, "action": r.action, "verdict": r.category,
                    "message_sha256": r.raw_sha256, "original_sha256": r.sha256,
                    "tombstone": r.tombstone,
                }
                if raw is not None:
                    if mbox is None:
                        name = f"messages/{doc_id}.eml"
                        _write(tmp / name, raw)
                        row.update(file=name, sha256=hashlib.sha256(raw).hexdigest(),
                                   size=len(raw))
                    else:
                        entry = loadfiles.mbox_entry(raw, r.sender, received)
                        mbox.write(entry)
                        row.update(file="messages.mbox", offset=offset, length=len(entry),
                                   sha256=hashlib.sha256(entry).hexdigest(), size=len(raw))
                        offset += len(entry)
                rows.append(row)
                items.append(ExportedItem(doc_id=doc_id, event_id=r.event_id,
                                          sha256=row["sha256"]))
                if progress:
                    progress(len(rows), total)
        if mbox is not None:
            mbox.flush()
            os.fsync(mbox.fileno())
    finally:
        if mbox is not None:
            mbox.close()
    return rows, items


# -- verification -----------------------------------------------------------------
def verify_export(directory: Path, engine: Engine | None = None) -> list[str]:
    """Every problem found with a production (empty: it is exactly what was produced)."""
    problems: list[str] = []
    custody_path = directory / CUSTODY
    try:
        data = custody_path.read_bytes()
        custody = json.loads(data)
        listed: dict[str, str] = dict(custody["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{custody_path}: no readable custody record ({exc})"]
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*")
               if p.is_file() or p.is_symlink()}
    present.discard(CUSTODY)
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: listed in the custody record but missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not part of the production (added afterwards)")
    for name in sorted(set(listed) & present):
        path = directory / name
        if path.is_symlink():
            problems.append(f"{name}: replaced by a symbolic link")
        elif sha256_file(path) != listed[name]:
            problems.append(f"{name}: SHA-256 differs from the custody record (altered)")
    problems += _check_manifest(directory, custody, listed)
    if engine is not None:
        problems += _check_sql(engine, custody, hashlib.sha256(data).hexdigest())
    return problems


def _check_manifest(directory: Path, custody: dict[str, Any], listed: dict[str, str]
                    ) -> list[str]:
    problems = []
    try:
        docs = json.loads((directory / "manifest.json").read_bytes())["documents"]
    except (OSError, ValueError, KeyError) as exc:
        return [f"manifest.json: unreadable ({exc})"]
    counts = custody.get("counts", {})
    if len(docs) != counts.get("selected"):
        problems.append("manifest.json: the number of documents differs from the custody record")
    mbox = directory / "messages.mbox"
    for doc in docs:
        if not doc.get("sha256"):
            continue
        name = doc.get("file", "")
        if doc.get("offset") is not None and name == "messages.mbox" and mbox.is_file():
            with open(mbox, "rb") as f:
                f.seek(int(doc["offset"]))
                entry = f.read(int(doc["length"]))
            if hashlib.sha256(entry).hexdigest() != doc["sha256"]:
                problems.append(f"messages.mbox: {doc['doc_id']} differs from the manifest")
        elif name in listed and listed[name] != doc["sha256"]:
            problems.append(f"{name}: the manifest and the custody record disagree")
    return problems


def _check_sql(engine: Engine, custody: dict[str, Any], custody_sha: str) -> list[str]:
    with engine.connect() as conn:
        row = conn.execute(select(Export.custody_sha256, Export.files)
                           .where(Export.export_id == custody.get("export_id"))).first()
    if row is None:
        return [f"export {custody.get('export_id')} is not recorded in SQL"]
    problems = []
    if row.custody_sha256 != custody_sha:
        problems.append(f"{CUSTODY}: differs from the record stored in SQL at export time")
    if json.loads(row.files) != custody.get("files"):
        problems.append(f"{CUSTODY}: its file list differs from the one stored in SQL")
    return problems


# -- listing ----------------------------------------------------------------------
EXPORT_FIELDS = ("export_id", "matter", "hold_id", "actor", "started_at", "finished_at", "format",
                 "out_dir", "messages", "missing", "total_bytes", "custody_sha256")


def listing(engine: Engine, *, matter: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Exports made, newest first (the custody rows in SQL; the web console's exports page)."""
    cols = [getattr(Export, f) for f in EXPORT_FIELDS]
    stmt = select(*cols).order_by(Export.finished_at.desc()).limit(limit)
    if matter is not None:
        stmt = stmt.where(Export.matter == matter)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [{k: (utc(v) if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]


def get(engine: Engine, export_id: str) -> dict[str, Any] | None:
    """One export's custody row (with its query), or None."""
    cols = [getattr(Export, f) for f in EXPORT_FIELDS]
    with engine.connect() as conn:
        row = conn.execute(select(*cols, Export.query).where(Export.export_id == export_id)
                           ).mappings().first()
    if row is None:
        return None
    return {k: (utc(v) if isinstance(v, datetime) else v) for k, v in row.items()}


def recorded_search(directory: Path) -> tuple[dict[str, Any], DiscoveryQuery, list[SelectedItem]]:
    """An export by query's custody record, its discovery search and the result set it took
    (``ExportError`` when the directory holds no export, or an export not chosen by a query).
    Run it again with ``compliance.discovery.selection.rerun`` to see what changed since."""
    path = directory / CUSTODY
    try:
        custody = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: no readable custody record ({exc})") from exc
    found = (custody.get("query") or {}).get("discovery") if isinstance(custody, dict) else None
    if not found:
        raise ExportError(f"{directory}: this export was not chosen by a discovery query "
                          "(qscan export --query): there is no search to run again")
    try:
        results = [SelectedItem.model_validate(i) for i in found.get("results", [])]
        then = DiscoveryQuery.model_validate({k: v for k, v in found.items() if k != "results"})
    except ValueError as exc:
        raise ExportError(f"{path}: the recorded search is unreadable ({exc})") from exc
    return custody, then, results
