"""The SQL summary store: one row per message, what auditors search.

Rows are projections of events (``message.scanned`` and the later compliance
events: queue failures, deletions, holds, exports). Text that came from mail is
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
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import (
    ADDRESS_LEN,
    CRYPTO_LEN,
    DETAIL_LEN,
    DOMAIN_LEN,
    EXTENSION_LEN,
    FILENAME_LEN,
    MATTER_LEN,
    SUBJECT_LEN,
    TYPE_LEN,
    Base,
    RowId,
)


class Message(Base):
    __tablename__ = "messages"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, doc="journal position of the event")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    host: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
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
    # -- 0002 ------------------------------------------------------------------
    direction: Mapped[str] = mapped_column(
        String(8), doc="'inbound', 'outbound' (RELAYCLIENT set) or 'local' (no client IP)"
    )
    header_from: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    header_to: Mapped[str] = mapped_column(Text)
    header_cc: Mapped[str] = mapped_column(Text)
    header_date: Mapped[str] = mapped_column(String(200))
    raw_sha256: Mapped[str | None] = mapped_column(
        String(64), doc="SHA-256 of the message as handed to qmail-queue (= the stored copy "
        "without its envelope block); NULL when the event carried no message (oversized)"
    )
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, doc="place in the host's hash chain")
    chain_hash: Mapped[str | None] = mapped_column(String(64), doc="see compliance.chain")
    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="set when a tombstone (deletions) removed the stored copy"
    )
    # -- 0008 ------------------------------------------------------------------
    crypto: Mapped[str | None] = mapped_column(
        String(CRYPTO_LEN), doc="S/MIME and PGP use, comma-joined (smime-signed, smime-encrypted, "
        "pgp-signed, pgp-encrypted); '' none; NULL in rows from before qscan recorded it"
    )
    # -- 0009 ------------------------------------------------------------------
    chain_version: Mapped[int | None] = mapped_column(
        Integer, doc="canonical encoding version of the chain entry (compliance.canonical); "
        "NULL in rows sealed before 0009 (versions 1 and 2, told apart by their fields)"
    )


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(ADDRESS_LEN))
    domain: Mapped[str] = mapped_column(String(DOMAIN_LEN), doc="lowercased")
    received_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="the message's (0004): date-bounded recipient searches"
    )


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


class Part(Base):
    """One MIME part (attachments are the parts with a filename)."""

    __tablename__ = "parts"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(100))
    content_type: Mapped[str] = mapped_column(String(TYPE_LEN), doc="lowercased")
    detected_type: Mapped[str | None] = mapped_column(String(TYPE_LEN), doc="lowercased")
    filename: Mapped[str | None] = mapped_column(String(FILENAME_LEN))
    extension: Mapped[str | None] = mapped_column(
        String(EXTENSION_LEN), doc="lowercased, without the dot: '*.exe' searches use it"
    )
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class DlpFinding(Base):
    """One DLP rule hit; evidence is masked before it ever reaches an event."""

    __tablename__ = "dlp_findings"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), index=True
    )
    rule: Mapped[str] = mapped_column(String(200))
    detector: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(DETAIL_LEN))
    evidence: Mapped[str] = mapped_column(String(DETAIL_LEN))


class QuarantineEntry(Base):
    """A quarantined message: which folder holds it and what has happened to it since."""

    __tablename__ = "quarantine_entries"

    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("messages.event_id", ondelete="CASCADE"), primary_key=True
    )
    folder: Mapped[str] = mapped_column(String(32), doc="viruses, policy, spam or dlp")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(
        String(16), doc="'quarantined', 'releasing', 'released' or 'deleted' (compliance.quarantine)")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QueueFailure(Base):
    """A ``message.queue_failed`` event: chained, so ``messages.queue_status`` can be checked."""

    __tablename__ = "queue_failures"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ref_event_id: Mapped[str] = mapped_column(String(36), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(String(255))
    exit_code: Mapped[int] = mapped_column(Integer)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class Deletion(Base):
    """A tombstone: the stored copy of a message was deleted lawfully (retention, expiry).

    No foreign key to ``messages``: a tombstone must outlive whatever it records.
    """

    __tablename__ = "deletions"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ref_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(String(255), doc="the chain it sits in (the message's host)")
    actor: Mapped[str] = mapped_column(String(255), doc="user@host that deleted it")
    reason: Mapped[str] = mapped_column(String(DETAIL_LEN))
    rule: Mapped[str] = mapped_column(String(200), doc="retention rule, or '' ")
    location: Mapped[str] = mapped_column(String(64), doc="'archive' or 'quarantine/FOLDER'")
    raw_sha256: Mapped[str | None] = mapped_column(String(64), doc="hash of the deleted copy")
    message_hash: Mapped[str | None] = mapped_column(
        String(64), doc="chain hash of the message row it records (binds the two)"
    )
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class ChainHead(Base):
    """The last link of each host's chain: a truncated tail no longer matches it."""

    __tablename__ = "chain_heads"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Hold(Base):
    """A legal hold: messages matching it are never deleted while it is active."""

    __tablename__ = "holds"

    hold_id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="hold.created event id")
    matter: Mapped[str] = mapped_column(String(MATTER_LEN))
    custodians: Mapped[str] = mapped_column(Text, doc="JSON list of addresses ('*' patterns)")
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    query: Mapped[str] = mapped_column(Text, doc="JSON object of audit search filters")
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(255))
    release_reason: Mapped[str | None] = mapped_column(Text)
    release_event_id: Mapped[str | None] = mapped_column(String(36))
    # -- 0013 ------------------------------------------------------------------
    discovery: Mapped[str | None] = mapped_column(
        Text, doc="a hold by query: JSON of the discovery search that chose its messages "
        "(query, canonical, filters, total, incomplete); its messages are in hold_items")


class HoldItem(Base):
    """A hold by query: one message (copy) it holds, as the discovery search found it."""

    __tablename__ = "hold_items"
    __table_args__ = (Index("ix_hold_items_hold_event", "hold_id", "event_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    hold_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("holds.hold_id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36))
    sha256: Mapped[str] = mapped_column(String(64), doc="the message's hash when it was found")


class Export(Base):
    """A legal-discovery export and its chain-of-custody record."""

    __tablename__ = "exports"

    export_id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="export event id")
    matter: Mapped[str] = mapped_column(String(MATTER_LEN), index=True)
    hold_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    query: Mapped[str] = mapped_column(Text, doc="JSON: the exact selection")
    tool_version: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(8), doc="'eml' or 'mbox'")
    out_dir: Mapped[str] = mapped_column(Text)
    messages: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer, doc="selected but no stored copy left")
    total_bytes: Mapped[int] = mapped_column(BigInteger, doc="bytes of messages produced")
    files: Mapped[str] = mapped_column(Text, doc="JSON {relative path: sha256} of every file made")
    custody_sha256: Mapped[str] = mapped_column(String(64), doc="hash of custody.json")


class ExportItem(Base):
    """Which message went into which export, under which document id."""

    __tablename__ = "export_items"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    export_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("exports.export_id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    doc_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64), doc="NULL when the copy was missing")


class ConsumerPosition(Base):
    """Where a consumer is in the log, committed in the same transaction as its rows."""

    __tablename__ = "consumer_positions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Search paths, each "match, then newest first": the date column rides along so
# the sort and a --since/--until range come from the same index.
# 0016: the event id last on the sender ones too, and on PostgreSQL the column under lower(...)
# INCLUDEd (it reads an expression index alone only then): a user's scope, a recipient or a
# domain is read from its index alone, in (time, event id) order (compliance/audit.py).
Index("ix_messages_sender_received", func.lower(Message.sender), Message.received_at,
      Message.event_id, postgresql_include=["sender"])
Index("ix_messages_sender_domain_received", Message.sender_domain, Message.received_at,
      Message.event_id)
# 0004: the message's time between the match and the event id (which the index covers).
Index("ix_recipients_address_received", func.lower(Recipient.address), Recipient.received_at,
      Recipient.event_id, postgresql_include=["address"])
Index("ix_recipients_domain_received", Recipient.domain, Recipient.received_at, Recipient.event_id)
# -- 0002 ----------------------------------------------------------------------
Index("ix_messages_direction_received", Message.direction, Message.received_at)
Index("ix_messages_category_received", Message.category, Message.received_at)
Index("ix_messages_action_received", Message.action, Message.received_at)  # 0004
Index("ix_messages_message_id", func.lower(Message.message_id))
Index("ix_messages_host_chain_seq", Message.host, Message.chain_seq, unique=True)
Index("ix_parts_filename_event", func.lower(Part.filename), Part.event_id)
Index("ix_parts_extension_event", Part.extension, Part.event_id)
Index("ix_parts_content_type_event", Part.content_type, Part.event_id)
Index("ix_parts_detected_type_event", Part.detected_type, Part.event_id)
Index("ix_findings_name_event", func.lower(Finding.name), Finding.event_id)
Index("ix_findings_scanner_event", Finding.scanner, Finding.event_id)
Index("ix_dlp_findings_rule_event", DlpFinding.rule, DlpFinding.event_id)
Index("ix_quarantine_entries_folder_received", QuarantineEntry.folder, QuarantineEntry.received_at)
Index("ix_queue_failures_host_chain_seq", QueueFailure.host, QueueFailure.chain_seq, unique=True)
Index("ix_deletions_host_chain_seq", Deletion.host, Deletion.chain_seq, unique=True)
Index("ix_holds_matter", Hold.matter)
