"""The web console's accounts (issue 24).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

``qscan web user add`` writes one row per login: its role, an Argon2id password hash (NULL for
an account that signs in only through the SSO header), and for the ``user`` role the
addresses and domains whose mail it may see (JSON lists). Accounts are disabled, never deleted,
so the events that name a login keep meaning something.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_accounts",
        sa.Column("login", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.Column("domains", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("login", name="pk_web_accounts"),
    )


def downgrade() -> None:
    op.drop_table("web_accounts")
