"""Recipients carry their message's received time, so 'to X since D' is one index range;
the action index gains the time as well.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

``--recipient``/``--domain`` combined with ``--since`` used to collect every
event id of a popular address or domain before the date could apply (about
0.7 s for example.com on a million messages); with (domain, received_at,
event_id) and (lower(address), received_at, event_id) the range is read
directly, and the event id comes from the index. The two 0001 indexes these
supersede (same leading column, event id second) are dropped. Likewise
(action, received_at) replaces the 0001 index on action alone: '--action
quarantine --since 30d' read every quarantined message of all time first
(0.2 s on a million messages with SQLite, which has no statistics by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recipients", sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE recipients SET received_at = (SELECT m.received_at FROM messages m "
               "WHERE m.event_id = recipients.event_id)")
    op.create_index("ix_recipients_address_received", "recipients",
                    [sa.text("lower(address)"), "received_at", "event_id"])
    op.create_index("ix_recipients_domain_received", "recipients",
                    ["domain", "received_at", "event_id"])
    op.drop_index("ix_recipients_address_event", table_name="recipients")
    op.drop_index("ix_recipients_domain_event", table_name="recipients")
    op.create_index("ix_messages_action_received", "messages", ["action", "received_at"])
    op.drop_index("ix_messages_action", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_action", "messages", ["action"])
    op.drop_index("ix_messages_action_received", table_name="messages")
    op.create_index("ix_recipients_address_event", "recipients",
                    [sa.text("lower(address)"), "event_id"])
    op.create_index("ix_recipients_domain_event", "recipients", ["domain", "event_id"])
    op.drop_index("ix_recipients_domain_received", table_name="recipients")
    op.drop_index("ix_recipients_address_received", table_name="recipients")
    op.drop_column("recipients", "received_at")
