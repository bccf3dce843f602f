"""The quarantine releases (migration 0006) and release requests (0009, four-eyes;
denials 0011) tables.

How rows are written, and why ``ref_event_id`` is unique: ``compliance.quarantine_records``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import ADDRESS_LEN, DETAIL_LEN, Base


class QuarantineRelease(Base):
    """One release of a quarantined message through qmail-queue."""

    __tablename__ = "quarantine_releases"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="message.released id")
    ref_event_id: Mapped[str] = mapped_column(
        String(36), unique=True, doc="the released message (no foreign key: the record outlives it)"
    )
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    host: Mapped[str] = mapped_column(String(255), doc="where the release ran")
    folder: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255), doc="user@host, or --by")
    reason: Mapped[str] = mapped_column(String(DETAIL_LEN))
    sender: Mapped[str] = mapped_column(String(ADDRESS_LEN), doc="envelope sender re-injected")
    recipients: Mapped[str] = mapped_column(Text, doc="JSON list: envelope recipients re-injected")
    original_recipients: Mapped[bool] = mapped_column(Boolean, doc="false: --to was given")
    forced: Mapped[bool] = mapped_column(Boolean, doc="released with --force")
    sha256: Mapped[str] = mapped_column(String(64), doc="of the message handed to qmail-queue")
    request_id: Mapped[str | None] = mapped_column(
        String(36), nullable=True, doc="the release request it approved (four-eyes)")
    requested_by: Mapped[str | None] = mapped_column(
        String(255), nullable=True, doc="the login that requested it (four-eyes)")


class ReleaseRequest(Base):
    """A release from a four-eyes folder, waiting for a different operator's approval."""

    __tablename__ = "quarantine_release_requests"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True,
                                          doc="release.requested id")
    ref_event_id: Mapped[str] = mapped_column(String(36), unique=True,
                                              doc="the message (one request per message)")
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    host: Mapped[str] = mapped_column(String(255), doc="where it was requested")
    folder: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255), doc="user@host, or --by")
    operator: Mapped[str] = mapped_column(String(255), doc="the login that asked")
    reason: Mapped[str] = mapped_column(String(DETAIL_LEN))
    recipients: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="JSON list of --to recipients; null: the original envelope")
    state: Mapped[str] = mapped_column(String(16), doc="pending, released, denied or withdrawn")
    release_event_id: Mapped[str | None] = mapped_column(
        String(36), nullable=True, doc="the message.released that approved it")
    # closed without a release (migration 0011): qscan quarantine deny
    denial_event_id: Mapped[str | None] = mapped_column(
        String(36), nullable=True, doc="the release.denied that closed it")
    denied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    denied_by: Mapped[str | None] = mapped_column(String(255), nullable=True,
                                                  doc="user@host, or --by")
    denied_operator: Mapped[str | None] = mapped_column(
        String(255), nullable=True, doc="the login that denied or withdrew it")
    denial_reason: Mapped[str | None] = mapped_column(String(DETAIL_LEN), nullable=True)
