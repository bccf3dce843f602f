"""The discovery index's tables (not on the store's ``Base``: on SQLite they live in their
own file, see compliance/discovery/index.py; on PostgreSQL migration 0012 creates them,
0014 adds ``discovery_text.received_at``).

``discovery_docs``: one row per indexed message (metadata the filters and counts use);
``discovery_participants``: its envelope sender and recipients (filters, per-custodian
counts); ``discovery_text``: its text per field: an FTS5 table on SQLite (created by
``FTS5_DDL``), on PostgreSQL a table with a text and a ``tsvector`` column per field.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from compliance.discovery.compile import FTS5_COLUMNS, PG_VECTORS
from compliance.discovery.query import FIELDS
from compliance.models.base import ADDRESS_LEN, NAMING, SUBJECT_LEN, RowId

metadata = MetaData(naming_convention=NAMING)

docs = Table(
    "discovery_docs", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    # the message's hash: one message delivered to many recipients counts once
    Column("sha256", String(64), nullable=False, index=True),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("sender", String(ADDRESS_LEN), nullable=False),
    Column("subject", String(SUBJECT_LEN), nullable=False),
    Column("incomplete", Text, nullable=True),  # what could not be extracted; NULL: all of it
    Column("position", BigInteger, nullable=False),  # the log position it was indexed from
)

participants = Table(
    "discovery_participants", metadata,
    Column("doc_id", RowId, ForeignKey("discovery_docs.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(ADDRESS_LEN), nullable=False),
    Column("role", String(8), nullable=False),  # 'from' (envelope sender) or 'to'
    Index("ix_discovery_participants_address", "address"),
    Index("ix_discovery_participants_doc_id", "doc_id"),
)

# SQLite only (the index file keeps its own position; PostgreSQL uses consumer_positions)
positions = Table(
    "discovery_positions", metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

# PostgreSQL only: the text (for ts_headline) and its vector, per field. ``received_at``
# (migration 0014) repeats the doc's: a date filter then narrows the GIN matches in the
# same bitmap scan (BitmapAnd) before PostgreSQL rechecks phrases against the stored
# vectors, instead of rechecking every match of all time (bench/discovery.py,
# docs/discovery.md "Performance").
pg_text = Table(
    "discovery_text", metadata,
    Column("doc_id", RowId, ForeignKey("discovery_docs.id", ondelete="CASCADE"), primary_key=True),
    *[Column(column, Text, nullable=False) for column in FTS5_COLUMNS],
    *[Column(PG_VECTORS[f], TSVECTOR, nullable=False) for f in FIELDS],
    Column("received_at", DateTime(timezone=True), nullable=False),
    *[Index(f"ix_discovery_text_{PG_VECTORS[f]}", PG_VECTORS[f], postgresql_using="gin")
      for f in FIELDS],
    Index("ix_discovery_text_received_at", "received_at"),
)

# Same columns as the PostgreSQL table's text, rowid = discovery_docs.id. No diacritics
# folding, like PostgreSQL's ``simple`` configuration: a word matches the same on both.
FTS5_DDL = ("CREATE VIRTUAL TABLE IF NOT EXISTS discovery_text USING fts5("
            + ", ".join(FTS5_COLUMNS) + ", tokenize = 'unicode61 remove_diacritics 0')")
