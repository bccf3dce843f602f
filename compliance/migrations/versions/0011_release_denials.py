"""A four-eyes release request can be denied or withdrawn (issue 22).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``qscan quarantine deny`` closes a pending request without releasing anything: a
``release.denied`` event on the log and, on the request's row, who closed it, as
which login, when and why. ``state`` becomes ``denied`` (another login) or
``withdrawn`` (the requester). The request stays the message's one request.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("denial_event_id", sa.String(36)), ("denied_at", sa.DateTime(timezone=True)),
           ("denied_by", sa.String(255)), ("denied_operator", sa.String(255)),
           ("denial_reason", sa.String(1000)))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("quarantine_release_requests", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), as 0008 and 0010.
    for name, _ in reversed(COLUMNS):
        op.drop_column("quarantine_release_requests", name)
