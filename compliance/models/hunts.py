"""The DLP retro-hunt tables (migrations 0005, 0007): ``dlp_hunts`` and ``dlp_hunt_findings``.

Why they are not ``dlp_findings``, and how hunts fill them: ``compliance.dlp_hunts``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import ADDRESS_LEN, DETAIL_LEN, Base, RowId


class DlpHunt(Base):
    """One `qscan dlp hunt` run: its rules, its selection, and what it found."""

    __tablename__ = "dlp_hunts"

    hunt_id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="UUIDv7")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(
        String(16), doc="'running', 'finished', 'interrupted' (Ctrl-C) or 'failed' (see error)")
    actor: Mapped[str] = mapped_column(String(255), doc="user@host that ran it")
    source: Mapped[str] = mapped_column(String(16), doc="'journal', 'archive' or 'kafka'")
    rules_path: Mapped[str] = mapped_column(Text)
    rules_sha256: Mapped[str] = mapped_column(String(64), doc="the exact rules file used")
    query: Mapped[str] = mapped_column(Text, doc="JSON: the selection (since, until, addresses, ...)")
    examined: Mapped[int] = mapped_column(Integer, doc="messages the rules were evaluated on")
    matched: Mapped[int] = mapped_column(Integer, doc="messages at least one rule fired on")
    findings: Mapped[int] = mapped_column(Integer, doc="rows in dlp_hunt_findings")
    unreadable: Mapped[int] = mapped_column(Integer, doc="stored copies or events that could not be read")
    error: Mapped[str | None] = mapped_column(Text, doc="why a 'failed' hunt stopped")


class DlpHuntFinding(Base):
    """One rule hit for one detector in one message, found by a hunt (masked evidence only)."""

    __tablename__ = "dlp_hunt_findings"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    hunt_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("dlp_hunts.hunt_id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(36), index=True, doc="the message.scanned event")
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sender: Mapped[str] = mapped_column(String(ADDRESS_LEN))
    direction: Mapped[str] = mapped_column(String(8), doc="'inbound', 'outbound' or 'local'")
    rule: Mapped[str] = mapped_column(String(200))
    detector: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32), doc="what the rule would have done inline")
    location: Mapped[str] = mapped_column(String(DETAIL_LEN))
    evidence: Mapped[str] = mapped_column(String(DETAIL_LEN))
    notify: Mapped[bool] = mapped_column(Boolean)
    encrypted: Mapped[bool] = mapped_column(Boolean)


Index("ix_dlp_hunt_findings_rule_event", DlpHuntFinding.rule, DlpHuntFinding.event_id)
