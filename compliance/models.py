"""The SQL summary store: one row per message, what auditors search.

Rows are projections of ``message.scanned`` events. Text that came from mail is
stored cleaned and cut to the column length (so PostgreSQL never refuses a
batch over one hostile header); the full event stays in the journal/archive.

Addresses keep the case they were sent with (evidence), and searches compare
``lower(...)``: the expression indexes below make that fast on SQLite and
PostgreSQL alike. Domains are case-insensitive by definition and stored
lowercased, so plain indexes serve them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names: migrations can then drop/alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS_LEN = 320  # RFC 5321 path limit, with room for what qmail lets through
DOMAIN_LEN = 255
SUBJECT_LEN = 998  # RFC 5322 line limit
DETAIL_LEN = 1000

# Child tables outgrow 2**31 rows at a large ISP; SQLite only autoincrements INTEGER.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Message(Base):
    __tablename__ = "messages"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, doc="journal position of the event")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    host: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(100))
    client_ip: Mapped[str | None] = mapped_column(String(64), index=True)
    client_host: Mapped[str | None] = mapped_column(String(255))
    relay: Mapped[bool] = mapped_column(Boolean)
    auth_user: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(ADDRESS_LEN), doc="'' for bounces")
    sender_domain: Mapped[str] = mapped_column(String(DOMAIN_LEN), doc="lowercased")
    subject: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    message_id: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    attachments: Mapped[str] = mapped_column(Text, doc="comma-joined filenames")
    parts_count: Mapped[int] = mapped_column(Integer)
    recipients_count: Mapped[int] = mapped_column(Integer)
    spam_score: Mapped[float | None] = mapped_column(Float)
    processing_ms: Mapped[float] = mapped_column(Float)
    queue_status: Mapped[str] = mapped_column(
        String(16), doc="'queued' (deliver), 'failed' (qmail-queue refused it) or 'n/a'"
    )
    queue_exit_code: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, doc="the one-line summary, as logged")


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(ADDRESS_LEN))
    domain: Mapped[str] = mapped_column(String(DOMAIN_LEN), doc="lowercased")


class Finding(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), index=True
    )
    scanner: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(String(DETAIL_LEN))
    duration_ms: Mapped[float] = mapped_column(Float)


class ConsumerPosition(Base):
    """Where a consumer is in the log, committed in the same transaction as its rows."""

    __tablename__ = "consumer_positions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Search paths, each "match, then newest first": the date column rides along so
# the sort and a --since/--until range come from the same index.
Index("ix_messages_sender_received", func.lower(Message.sender), Message.received_at)
Index("ix_messages_sender_domain_received", Message.sender_domain, Message.received_at)
Index("ix_recipients_address_event", func.lower(Recipient.address), Recipient.event_id)
Index("ix_recipients_domain_event", Recipient.domain, Recipient.event_id)
