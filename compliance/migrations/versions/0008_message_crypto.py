"""Messages record their S/MIME and PGP use (issue 19: crypto in every summary row).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

``messages`` gains a nullable ``crypto`` column: the event's ``crypto`` list
comma-joined (``smime-signed,pgp-encrypted``), ``''`` when the message used none,
NULL for rows written before qscan recorded it (they are not back-filled: the
event they came from never said). The column is chained: a row with a value is
hashed with canonical encoding version 2, a NULL one with version 1, so every
row sealed before this migration keeps verifying as it was hashed
(compliance/canonical.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("crypto", sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: rebuilding drops the old
    # table, and with foreign keys on that cascades into recipients and findings (see 0002).
    op.drop_column("messages", "crypto")
