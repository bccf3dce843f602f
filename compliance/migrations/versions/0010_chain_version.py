"""Message rows record their canonical encoding version (issue 22: one zero on both databases).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Canonical encoding version 3 writes ``-0.0`` as ``0.0`` (SQLite gives a stored
``-0.0`` back as ``0.0``, PostgreSQL keeps the sign, so a hash over the sign was
a false alarm on SQLite). ``messages.chain_version`` says which version a row was
sealed with: 3 for rows written from now on, NULL for every row sealed before,
which keep verifying by the rules of versions 1 and 2 exactly as they were hashed
(compliance/canonical.py). The column is itself part of the encoding (``"v"``), so
changing it breaks the link like any other edit. Nothing is back-filled.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("chain_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), as 0008: a batch rebuild would cascade.
    op.drop_column("messages", "chain_version")
