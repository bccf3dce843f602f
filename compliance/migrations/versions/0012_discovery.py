"""The discovery index on PostgreSQL: per-field tsvector columns with GIN indexes (issue 25).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

PostgreSQL only. On SQLite the index is an FTS5 table in its own file, which the index
consumer creates (compliance/discovery/index.py, docs/discovery.md): a rebuildable
projection, kept out of the store that holds the chained records. Frozen copy of
compliance/discovery/schema.py as of this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("subject", "hdr_from", "hdr_to", "hdr_cc", "body", "attachment")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "discovery_docs",
        sa.Column("id", sa.BigInteger(), autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("incomplete", sa.Text(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_discovery_docs"),
        sa.UniqueConstraint("event_id", name="uq_discovery_docs_event_id"),
    )
    op.create_index("ix_discovery_docs_sha256", "discovery_docs", ["sha256"])
    op.create_index("ix_discovery_docs_received_at", "discovery_docs", ["received_at"])
    op.create_table(
        "discovery_participants",
        sa.Column("doc_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.ForeignKeyConstraint(["doc_id"], ["discovery_docs.id"], ondelete="CASCADE",
                                name="fk_discovery_participants_doc_id_discovery_docs"),
    )
    op.create_index("ix_discovery_participants_address", "discovery_participants", ["address"])
    op.create_index("ix_discovery_participants_doc_id", "discovery_participants", ["doc_id"])
    op.create_table(
        "discovery_text",
        sa.Column("doc_id", sa.BigInteger(), nullable=False),
        *[sa.Column(c, sa.Text(), nullable=False) for c in _COLUMNS],
        *[sa.Column(f"tsv_{c}", TSVECTOR(), nullable=False) for c in _COLUMNS],
        sa.PrimaryKeyConstraint("doc_id", name="pk_discovery_text"),
        sa.ForeignKeyConstraint(["doc_id"], ["discovery_docs.id"], ondelete="CASCADE",
                                name="fk_discovery_text_doc_id_discovery_docs"),
    )
    for c in _COLUMNS:
        op.create_index(f"ix_discovery_text_tsv_{c}", "discovery_text", [f"tsv_{c}"],
                        postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("discovery_text")
    op.drop_table("discovery_participants")
    op.drop_table("discovery_docs")
