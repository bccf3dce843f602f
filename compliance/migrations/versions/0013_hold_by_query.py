"""Holds chosen by a discovery search (issue 25): the search and the messages it found.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

``qscan hold create MATTER --query QUERY`` holds exactly the messages the search found:
``holds.discovery`` records the search (JSON: the query as typed, its canonical form, the
filters, how many messages), ``hold_items`` one row per message copy held (event id and
the message's hash), which is what retention and expiry match against. NULL / no rows for
holds by custodians and filters. Both databases (the index itself is elsewhere: 0012).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("holds", sa.Column("discovery", sa.Text(), nullable=True))
    op.create_table(
        "hold_items",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("hold_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hold_items"),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.hold_id"], ondelete="CASCADE",
                                name="fk_hold_items_hold_id_holds"),
    )
    op.create_index("ix_hold_items_hold_event", "hold_items", ["hold_id", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_hold_items_hold_event", table_name="hold_items")
    op.drop_table("hold_items")
    # Plain DROP COLUMN (SQLite >= 3.35), as 0008, 0010 and 0011.
    op.drop_column("holds", "discovery")
