"""Holds, exports and the console's activity against the log: the SQL rows must say what their
events said.

Holds and exports are not on the hash chains; their durable record is the
``hold.created``, ``hold.released`` and ``export.completed`` event on the log.
``qscan verify`` compares every such event the journal still holds with its row,
field by field (a narrowed hold would let retention delete held mail; a
rewritten export row would misstate who produced what), and reports rows that
have no event although the journal still covers their time.

A row "should have" an event in this journal when it was made on this host
(its actor is ``user@HOST``, as ``qscan hold``/``qscan export`` record it) at or
after the oldest event the journal still holds. Rows made on other hosts are
checked by ``qscan verify`` there, against their own journals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from compliance.activity import COLUMNS as ACTIVITY_COLUMNS
from compliance.activity import CONSOLE_EVENTS, ConsoleEvent, activity_row
from compliance.models import ConsoleActivity, Export, ExportItem, Hold, HoldItem
from ingest.event import ExportCompleted, HoldCreated, HoldReleased, utc
from ingest.summary_line import clean

ProblemSink = Callable[[str, str, str | None, str], None]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return text  # unreadable JSON differs from whatever the event says


def _differences(pairs: Iterable[tuple[str, Any, Any]]) -> list[str]:
    return [name for name, logged, stored in pairs if logged != stored]


class RecordCheck:
    """Collects the compliance events of a journal, then checks the rows."""

    def __init__(self, *, local_host: str | None = None, position: int | None = None) -> None:
        self.local_host = local_host
        self.position = position  # the summaries consumer's: beyond it a row may still be due
        self.pending: set[str] = set()
        self.created: dict[str, HoldCreated] = {}
        self.released: dict[str, HoldReleased] = {}
        self.exports: dict[str, ExportCompleted] = {}
        self.console: dict[str, ConsoleEvent] = {}
        self.oldest: datetime | None = None

    def add(self, event: Any, position: int | None = None) -> None:
        if position is not None and self.position is not None and position > self.position:
            self.pending.add(event.event_id)
        when = _utc(getattr(event, "time", None))
        if when is not None and (self.oldest is None or when < self.oldest):
            self.oldest = when
        if isinstance(event, HoldCreated):
            self.created[event.event_id] = event
        elif isinstance(event, HoldReleased):
            self.released[event.event_id] = event
        elif isinstance(event, ExportCompleted):
            self.exports[event.event_id] = event
        elif isinstance(event, CONSOLE_EVENTS):
            self.console[event.event_id] = event

    def check(self, conn: Connection, problem: ProblemSink) -> None:
        self._holds(conn, problem)
        self._exports(conn, problem)
        self._console(conn, problem)

    def _local(self, actor: str | None) -> bool:
        return self.local_host is None or (actor or "").endswith(f"@{self.local_host}")

    def _covered(self, when: datetime | None, actor: str | None) -> bool:
        when = _utc(when)
        return (self.oldest is not None and when is not None and when >= self.oldest
                and self._local(actor))

    def _holds(self, conn: Connection, problem: ProblemSink) -> None:
        rows = {h.hold_id: h for h in conn.execute(select(
            Hold.hold_id, Hold.matter, Hold.custodians, Hold.since, Hold.until, Hold.query,
            Hold.reason, Hold.created_by, Hold.created_at, Hold.released_at, Hold.released_by,
            Hold.release_reason, Hold.release_event_id, Hold.discovery))}
        items: dict[str, list[tuple[str, str]]] = {}
        if self.created:
            for r in conn.execute(select(HoldItem.hold_id, HoldItem.event_id, HoldItem.sha256)
                                  .where(HoldItem.hold_id.in_(list(self.created)))):
                items.setdefault(r.hold_id, []).append((r.event_id, r.sha256))
        for hold_id, ev in sorted(self.created.items()):
            row = rows.get(hold_id)
            if row is None:
                if hold_id in self.pending:
                    continue  # the command's SQL write failed; the consumer has not got there
                problem("missing-row", "holds", hold_id,
                        "the journal holds this hold.created event, SQL has no hold row")
                continue
            diff = _differences([
                ("matter", ev.matter, row.matter),
                ("custodians", ev.custodians, _json(row.custodians)),
                ("since", _utc(ev.since), _utc(row.since)),
                ("until", _utc(ev.until), _utc(row.until)),
                ("query", ev.query, _json(row.query)),
                ("reason", ev.reason, row.reason),
                ("created_by", clean(ev.actor, 255), row.created_by),
                ("created_at", _utc(ev.time), _utc(row.created_at)),
                # a hold by query: the search, and the messages it holds by id
                ("discovery", ev.discovery.model_dump() if ev.discovery else None,
                 _json(row.discovery)),
                ("hold_items", sorted((i.event_id, i.sha256) for i in ev.items),
                 sorted(items.get(hold_id, []))),
            ])
            if diff:
                problem("log-mismatch", "holds", hold_id,
                        f"differs from its hold.created event in: {', '.join(diff)}")
        for release_id, rel in sorted(self.released.items()):
            row = rows.get(rel.hold_id)
            if row is None:
                continue  # reported above when its hold.created is still on the log
            if release_id in self.pending and row.release_event_id is None:
                continue  # not projected yet
            diff = _differences([
                ("release_event_id", rel.event_id, row.release_event_id),
                ("released_at", _utc(rel.time), _utc(row.released_at)),
                ("released_by", clean(rel.actor, 255), row.released_by),
                ("release_reason", rel.reason, row.release_reason),
            ])
            if diff:
                problem("log-mismatch", "holds", rel.hold_id,
                        f"differs from its hold.released event {release_id} in: "
                        f"{', '.join(diff)}")
        released_ids = set(self.released)
        for hold_id, row in sorted(rows.items()):
            if hold_id not in self.created and self._covered(row.created_at, row.created_by):
                problem("unlogged-row", "holds", hold_id,
                        "a hold the journal has no hold.created event for, although it still "
                        "holds events from that time")
            if (row.released_at is None) != (row.release_event_id is None):
                problem("inconsistent", "holds", hold_id,
                        "released_at and release_event_id disagree (a release is always both)")
            elif (row.release_event_id is not None and row.release_event_id not in released_ids
                  and self._covered(row.released_at, row.released_by or row.created_by)):
                problem("unlogged-row", "holds", hold_id,
                        "a release the journal has no hold.released event for, although it "
                        "still holds events from that time")

    def _exports(self, conn: Connection, problem: ProblemSink) -> None:
        rows = {e.export_id: e for e in conn.execute(select(
            Export.export_id, Export.matter, Export.hold_id, Export.actor, Export.started_at,
            Export.finished_at, Export.query, Export.tool_version, Export.format,
            Export.out_dir, Export.messages, Export.missing, Export.total_bytes, Export.files,
            Export.custody_sha256))}
        items: dict[str, list[tuple[str, str, str | None]]] = {}
        if self.exports:
            stmt = (select(ExportItem.export_id, ExportItem.doc_id, ExportItem.event_id,
                           ExportItem.sha256)
                    .where(ExportItem.export_id.in_(list(self.exports))))
            for r in conn.execute(stmt):
                items.setdefault(r.export_id, []).append((r.doc_id, r.event_id, r.sha256))
        for export_id, ev in sorted(self.exports.items()):
            row = rows.get(export_id)
            if row is None:
                if export_id in self.pending:
                    continue
                problem("missing-row", "exports", export_id,
                        "the journal holds this export.completed event, SQL has no export row")
                continue
            diff = _differences([
                ("matter", ev.matter, row.matter),
                ("hold_id", ev.hold_id, row.hold_id),
                ("actor", clean(ev.actor, 255), row.actor),
                ("started_at", _utc(ev.started), _utc(row.started_at)),
                ("finished_at", _utc(ev.time), _utc(row.finished_at)),
                ("query", ev.query, _json(row.query)),
                ("tool_version", ev.tool_version, row.tool_version),
                ("format", ev.format, row.format),
                ("out_dir", ev.out_dir, row.out_dir),
                ("messages", ev.messages, row.messages),
                ("missing", ev.missing, row.missing),
                ("total_bytes", ev.total_bytes, row.total_bytes),
                ("files", ev.files, _json(row.files)),
                ("custody_sha256", ev.custody_sha256, row.custody_sha256),
                ("export_items", sorted((i.doc_id, i.event_id, i.sha256) for i in ev.items),
                 sorted(items.get(export_id, []))),
            ])
            if diff:
                problem("log-mismatch", "exports", export_id,
                        f"differs from its export.completed event in: {', '.join(diff)}")
        for export_id, row in sorted(rows.items()):
            if export_id not in self.exports and self._covered(row.finished_at, row.actor):
                problem("unlogged-row", "exports", export_id,
                        "an export the journal has no export.completed event for, although it "
                        "still holds events from that time")

    def _console(self, conn: Connection, problem: ProblemSink) -> None:
        """The console's activity rows against its events: the projection (compliance.activity)
        column by column; a row this host made that the journal has no event for, although it
        still holds events from that time, is reported (a forged sign-in or download)."""
        rows = {r.event_id: r._asdict() for r in conn.execute(
            select(*(getattr(ConsoleActivity, c) for c in ACTIVITY_COLUMNS)))}
        for event_id, ev in sorted(self.console.items()):
            row = rows.get(event_id)
            if row is None:
                if event_id not in self.pending:
                    problem("missing-row", "console_activity", event_id,
                            f"the journal holds this {ev.type} event, SQL has no activity row")
                continue
            want = activity_row(ev)
            diff = _differences((c, want[c], _utc(row[c]) if c == "time" else row[c])
                                for c in ACTIVITY_COLUMNS)
            if diff:
                problem("log-mismatch", "console_activity", event_id,
                        f"differs from its {ev.type} event in: {', '.join(diff)}")
        for event_id, row in sorted(rows.items()):
            if (event_id not in self.console and self.oldest is not None
                    and _utc(row["time"]) >= self.oldest  # type: ignore[operator]
                    and (self.local_host is None or row["host"] == self.local_host)):
                problem("unlogged-row", "console_activity", event_id,
                        f"a {row['type']} row the journal has no event for, although it still "
                        "holds events from that time")
