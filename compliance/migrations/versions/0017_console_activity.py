"""The web console's activity, listable (issue 24).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Console events (sign-ins and refused ones, account changes, raw mail read, exports downloaded)
were on the log only; the summaries consumer now projects each into one ``console_activity``
row, so the console's own activity page (and SQL) can list them by time and by person.
``qscan verify`` compares the rows with their events both ways (compliance.record_check).
Rows are projected from the position the consumer is at: ``qscan replay summaries`` fills in
the events the journal still holds from before this migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_activity",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("remote", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_console_activity"),
    )
    op.create_index("ix_console_activity_time", "console_activity", ["time", "event_id"])
    op.create_index("ix_console_activity_actor", "console_activity", ["actor", "time"])


def downgrade() -> None:
    op.drop_index("ix_console_activity_actor", table_name="console_activity")
    op.drop_index("ix_console_activity_time", table_name="console_activity")
    op.drop_table("console_activity")
