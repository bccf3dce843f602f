"""DLP retro-hunts record why they failed (compliance/dlp_hunts.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``dlp_hunts.state`` gains the value ``failed`` (no schema change) and the row a
nullable ``error`` column: the exception that stopped the hunt. Rows of hunts
that an earlier qscan left ``running`` after a crash stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dlp_hunts") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dlp_hunts") as batch:
        batch.drop_column("error")
