"""Four-eyes releases (compliance/quarantine.py): release requests and who approved what.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``quarantine_release_requests`` holds one row per ``release.requested`` event
(a release from a four-eyes folder waiting for a second operator);
``quarantine_releases`` gains ``request_id`` and ``requested_by``, NULL for
releases made in one step (before this migration, outside four-eyes folders, or
forced by a release officer).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantine_release_requests",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("ref_event_id", sa.String(36), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("operator", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("release_event_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_quarantine_release_requests"),
        sa.UniqueConstraint("ref_event_id", name="uq_quarantine_release_requests_ref_event_id"),
    )
    op.create_index("ix_quarantine_release_requests_time", "quarantine_release_requests",
                    ["time"])
    with op.batch_alter_table("quarantine_releases") as batch:
        batch.add_column(sa.Column("request_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("requested_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantine_releases") as batch:
        batch.drop_column("requested_by")
        batch.drop_column("request_id")
    op.drop_index("ix_quarantine_release_requests_time", table_name="quarantine_release_requests")
    op.drop_table("quarantine_release_requests")
