"""Initial schema: messages, recipients, findings, consumer_positions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("client_host", sa.String(255), nullable=True),
        sa.Column("relay", sa.Boolean(), nullable=False),
        sa.Column("auth_user", sa.String(255), nullable=True),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("sender_domain", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.Column("parts_count", sa.Integer(), nullable=False),
        sa.Column("recipients_count", sa.Integer(), nullable=False),
        sa.Column("spam_score", sa.Float(), nullable=True),
        sa.Column("processing_ms", sa.Float(), nullable=False),
        sa.Column("queue_status", sa.String(16), nullable=False),
        sa.Column("queue_exit_code", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_messages"),
    )
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_messages_action", "messages", ["action"])
    op.create_index("ix_messages_client_ip", "messages", ["client_ip"])
    op.create_index(
        "ix_messages_sender_received", "messages", [sa.text("lower(sender)"), "received_at"]
    )
    op.create_index(
        "ix_messages_sender_domain_received", "messages", ["sender_domain", "received_at"]
    )

    op.create_table(
        "recipients",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["messages.event_id"],
            name="fk_recipients_event_id_messages", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recipients"),
    )
    op.create_index("ix_recipients_event_id", "recipients", ["event_id"])
    op.create_index(
        "ix_recipients_address_event", "recipients", [sa.text("lower(address)"), "event_id"]
    )
    op.create_index("ix_recipients_domain_event", "recipients", ["domain", "event_id"])

    op.create_table(
        "findings",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("scanner", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["messages.event_id"],
            name="fk_findings_event_id_messages", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
    )
    op.create_index("ix_findings_event_id", "findings", ["event_id"])

    op.create_table(
        "consumer_positions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_consumer_positions"),
    )


def downgrade() -> None:
    op.drop_table("consumer_positions")
    op.drop_index("ix_findings_event_id", table_name="findings")
    op.drop_table("findings")
    for name in ("ix_recipients_domain_event", "ix_recipients_address_event",
                 "ix_recipients_event_id"):
        op.drop_index(name, table_name="recipients")
    op.drop_table("recipients")
    for name in ("ix_messages_sender_domain_received", "ix_messages_sender_received",
                 "ix_messages_client_ip", "ix_messages_action", "ix_messages_received_at"):
        op.drop_index(name, table_name="messages")
    op.drop_table("messages")
