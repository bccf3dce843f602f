"""The discovery index: write (replace, delete) and the stored position, on either database.

SQLite (the embedded default): an FTS5 table in its own file (``[discovery] path``), with
the docs, participants and the consumer's position beside it. The index is a projection
that a replay rebuilds; keeping it out of the store keeps the store (chained records,
the schema Alembic checks) free of FTS5's shadow tables, and the index can be deleted
and rebuilt, or vacuumed, without touching the evidence.

PostgreSQL: the tables of migration 0012 (and 0014) in the SQL store, one ``tsvector`` per field
with a GIN index, the position in ``consumer_positions`` like the other consumers. The
vectors are built from the same tokens the query language cuts words into
(``query.tokens``), so a word matches the same text as on SQLite.

Writing a message replaces whatever was indexed under its event id (a replay or a
duplicate delivery changes nothing); a tombstone deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update

from compliance.db import check_schema, make_engine
from compliance.discovery import schema
from compliance.discovery.compile import COLUMNS, FTS5_COLUMNS, PG_VECTORS
from compliance.discovery.document import IndexedMessage
from compliance.discovery.query import FIELDS, tokens
from compliance.models import ConsumerPosition

PG_FIELD_CHARS = 250_000  # a tsvector holds at most 1 MB: longer field text is cut (noted)

_FTS_INSERT = text("INSERT INTO discovery_text (rowid, " + ", ".join(FTS5_COLUMNS) + ") VALUES "
                   "(:doc_id, " + ", ".join(f":{c}" for c in FTS5_COLUMNS) + ")")
_PG_INSERT = text(
    "INSERT INTO discovery_text (doc_id, received_at, " + ", ".join(FTS5_COLUMNS) + ", "
    + ", ".join(PG_VECTORS[f] for f in FIELDS) + ") VALUES (:doc_id, :received_at, "
    + ", ".join(f":{c}" for c in FTS5_COLUMNS) + ", "
    + ", ".join(f"to_tsvector(CAST(:cfg AS regconfig), :n_{COLUMNS[f]})" for f in FIELDS) + ")")


def _clean(value: str) -> str:
    return value.replace("\x00", " ")  # PostgreSQL text takes no NUL


class DiscoveryIndex:
    """The index on ``engine``: ``kind`` "sqlite" (FTS5 file) or "postgresql" (the store)."""

    def __init__(self, engine: Engine, *, pg_config: str = "simple") -> None:
        self.engine = engine
        self.kind = engine.dialect.name
        self.pg_config = pg_config
        if self.kind == "sqlite":
            with engine.begin() as conn:
                schema.metadata.create_all(
                    conn, tables=[schema.docs, schema.participants, schema.positions])
                conn.exec_driver_sql(schema.FTS5_DDL)
        elif self.kind == "postgresql":
            check_schema(engine)
        else:
            raise ValueError(f"discovery search needs SQLite or PostgreSQL, not {self.kind}")

    @classmethod
    def open(cls, sql_url: str, path: Path, pg_config: str = "simple") -> DiscoveryIndex:
        """PostgreSQL when the store is PostgreSQL, else the FTS5 file at ``path``."""
        url = sql_url if sql_url.startswith("postgresql") else f"sqlite:///{path}"
        engine = make_engine(url)
        try:
            return cls(engine, pg_config=pg_config)
        except Exception:
            engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------------------
    def delete(self, conn: Connection, event_ids: Iterable[str]) -> int:
        ids = list(conn.scalars(select(schema.docs.c.id)
                                .where(schema.docs.c.event_id.in_(list(event_ids)))))
        if not ids:
            return 0
        if self.kind == "sqlite":
            conn.execute(text("DELETE FROM discovery_text WHERE rowid = :id"),
                         [{"id": i} for i in ids])
        else:
            conn.execute(delete(schema.pg_text).where(schema.pg_text.c.doc_id.in_(ids)))
        conn.execute(delete(schema.participants).where(schema.participants.c.doc_id.in_(ids)))
        conn.execute(delete(schema.docs).where(schema.docs.c.id.in_(ids)))
        return len(ids)

    def replace(self, conn: Connection, messages: Sequence[tuple[int, IndexedMessage]]) -> None:
        """Index ``(position, message)`` pairs, each replacing what its event id had."""
        latest = {m.event_id: (p, m) for p, m in messages}  # a duplicate within the batch
        self.delete(conn, latest)
        texts: list[dict[str, Any]] = []
        people: list[dict[str, Any]] = []
        for position, m in latest.values():
            notes = m.incomplete
            row = {"event_id": m.event_id, "sha256": m.sha256, "received_at": m.received_at,
                   "host": m.host[:255], "sender": _clean(m.sender)[:320],
                   "subject": _clean(m.subject)[:998], "position": position}
            values: dict[str, Any] = {COLUMNS[f]: _clean(m.text[f]) for f in FIELDS}
            if self.kind == "postgresql":
                cut = [f for f in FIELDS if len(values[COLUMNS[f]]) > PG_FIELD_CHARS]
                for f in cut:
                    values[COLUMNS[f]] = values[COLUMNS[f]][:PG_FIELD_CHARS]
                if cut:
                    extra = f"postgresql: {', '.join(cut)} indexed up to {PG_FIELD_CHARS} characters"
                    notes = f"{notes}; {extra}" if notes else extra
                values.update({f"n_{COLUMNS[f]}": " ".join(tokens(values[COLUMNS[f]]))
                               for f in FIELDS})
                values["cfg"] = self.pg_config
                values["received_at"] = m.received_at
            row["incomplete"] = notes
            doc_id = conn.scalar(insert(schema.docs).values(row).returning(schema.docs.c.id))
            values["doc_id"] = doc_id
            texts.append(values)
            people.append({"doc_id": doc_id, "address": _clean(m.sender)[:320].lower(),
                           "role": "from"})
            people.extend({"doc_id": doc_id, "address": _clean(r)[:320].lower(), "role": "to"}
                          for r in m.recipients)
        if texts:
            conn.execute(_FTS_INSERT if self.kind == "sqlite" else _PG_INSERT, texts)
        if people:
            conn.execute(insert(schema.participants), people)

    def messages(self) -> int:
        """How many messages the index holds."""
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(schema.docs)) or 0

    # -- position -----------------------------------------------------------------------------
    def _positions(self) -> Any:
        return schema.positions if self.kind == "sqlite" else ConsumerPosition.__table__

    def position(self, name: str) -> int:
        table = self._positions()
        with self.engine.connect() as conn:
            return conn.scalar(select(table.c.position).where(table.c.name == name)) or 0

    def store_position(self, conn: Connection, name: str, position: int) -> None:
        table = self._positions()
        values: dict[str, Any] = {"position": position}
        if self.kind == "postgresql":
            values["updated_at"] = datetime.now(UTC)
        done = conn.execute(update(table).where(table.c.name == name).values(**values))
        if not done.rowcount:
            conn.execute(insert(table).values(name=name, **values))
