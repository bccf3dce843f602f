"""The web console's activity (migration 0017 console_activity): one row per console event -
sign-ins and refused ones, account changes, raw mail read, exports downloaded - as the summaries
consumer projects them from the log (``compliance.activity``), so an auditor can list them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import Base


class ConsoleActivity(Base):
    """One console event: who did what, from where, to which message, export or account."""

    __tablename__ = "console_activity"
    __table_args__ = (
        Index("ix_console_activity_time", "time", "event_id"),
        Index("ix_console_activity_actor", "actor", "time"),
    )

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(String(255), doc="the host the console ran on")
    type: Mapped[str] = mapped_column(
        String(32), doc="console.signin, console.account, message.raw_read or export.downloaded")
    actor: Mapped[str] = mapped_column(
        String(255), doc="login@host of who acted (a sign-in: the login given, bounded)")
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome: Mapped[str | None] = mapped_column(
        String(16), nullable=True, doc="a sign-in's ok/failed/throttled; an account's change")
    remote: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                               doc="the client's address as the console saw it")
    subject: Mapped[str | None] = mapped_column(
        String(255), nullable=True, doc="the message (event id), export (id) or account (login) acted on")
    detail: Mapped[str | None] = mapped_column(
        String(255), nullable=True, doc="a sign-in's method; where raw mail came from; a download's SHA-256")
