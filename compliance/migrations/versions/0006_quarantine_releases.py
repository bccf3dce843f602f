"""Quarantine releases (compliance/quarantine_records.py): one row per released message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``quarantine_entries.state`` gains two values, no schema change: ``releasing``
(a release has claimed the entry and is running qmail-queue) and ``released``.
The quarantined file needs no column: its name is computed from the entry's
event id and received time (see compliance/quarantine_records.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantine_releases",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("ref_event_id", sa.String(36), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("original_recipients", sa.Boolean(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_quarantine_releases"),
        sa.UniqueConstraint("ref_event_id", name="uq_quarantine_releases_ref_event_id"),
    )
    op.create_index("ix_quarantine_releases_time", "quarantine_releases", ["time"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_releases_time", table_name="quarantine_releases")
    op.drop_table("quarantine_releases")
