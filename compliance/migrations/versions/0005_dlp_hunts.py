"""DLP retro-hunts (compliance/dlp_hunts.py): one row per hunt, and what each hunt found.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Hunt findings do not go into ``dlp_findings``: those rows are what the inline
scanner decided, sealed into the hash chain with their message, and a later
hunt must not change what ``qscan verify`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dlp_hunts",
        sa.Column("hunt_id", sa.String(36), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rules_path", sa.Text(), nullable=False),
        sa.Column("rules_sha256", sa.String(64), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("examined", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("unreadable", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hunt_id", name="pk_dlp_hunts"),
    )
    op.create_table(
        "dlp_hunt_findings",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("hunt_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("received_at", TS, nullable=True),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("detector", sa.String(200), nullable=False),
        sa.Column("confidence", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("location", sa.String(1000), nullable=False),
        sa.Column("evidence", sa.String(1000), nullable=False),
        sa.Column("notify", sa.Boolean(), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["hunt_id"], ["dlp_hunts.hunt_id"],
                                name="fk_dlp_hunt_findings_hunt_id_dlp_hunts", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_dlp_hunt_findings"),
    )
    op.create_index("ix_dlp_hunt_findings_hunt_id", "dlp_hunt_findings", ["hunt_id"])
    op.create_index("ix_dlp_hunt_findings_event_id", "dlp_hunt_findings", ["event_id"])
    op.create_index("ix_dlp_hunt_findings_rule_event", "dlp_hunt_findings", ["rule", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_dlp_hunt_findings_rule_event", table_name="dlp_hunt_findings")
    op.drop_index("ix_dlp_hunt_findings_event_id", table_name="dlp_hunt_findings")
    op.drop_index("ix_dlp_hunt_findings_hunt_id", table_name="dlp_hunt_findings")
    op.drop_table("dlp_hunt_findings")
    op.drop_table("dlp_hunts")
