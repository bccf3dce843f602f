"""The discovery index on PostgreSQL: the received time on ``discovery_text`` (issue 25).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

PostgreSQL only (on SQLite the index is its own FTS5 file). A date filter was applied to
``discovery_docs`` after the text match: PostgreSQL rechecked every GIN match of all time
against the stored vectors (phrases need the positions) before the dates narrowed them,
1.5 s for a phrase with a 30-day filter over a million messages. With the time on the
text table and a btree index, one bitmap scan ANDs the GIN matches with the date range
and only those rows are rechecked (bench/discovery.py, docs/discovery.md). Existing rows
get their doc's time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("discovery_text",
                  sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE discovery_text t SET received_at = d.received_at "
               "FROM discovery_docs d WHERE d.id = t.doc_id")
    op.alter_column("discovery_text", "received_at", nullable=False)
    op.create_index("ix_discovery_text_received_at", "discovery_text", ["received_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_discovery_text_received_at", table_name="discovery_text")
    op.drop_column("discovery_text", "received_at")
