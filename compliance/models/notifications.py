"""The notification outbox table (on the shared ``Base``, migration 0003).

One row per (event, recipient, kind): the unique key is what makes a replay of
the log or a restart after a crash add nothing. The rendered message is stored
in the row, so a retry sends exactly the bytes (and the Message-ID) decided the
first time, whatever the templates or catalogs say by then.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import ADDRESS_LEN, DETAIL_LEN, Base, RowId

STATES = ("pending", "sending", "indoubt", "sent", "failed")


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("event_id", "recipient", "kind"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), doc="the message.scanned event told about")
    recipient: Mapped[str] = mapped_column(String(ADDRESS_LEN), doc="domain lowercased")
    kind: Mapped[str] = mapped_column(String(16), doc="virus, policy, spam, dlp or reject")
    audience: Mapped[str] = mapped_column(String(16), doc="sender, recipient, admin or officer")
    language: Mapped[str] = mapped_column(String(16))
    envelope_sender: Mapped[str] = mapped_column(String(ADDRESS_LEN), doc="'' is the null sender")
    message_id: Mapped[str] = mapped_column(String(255))
    message: Mapped[bytes | None] = mapped_column(
        LargeBinary, doc="the RFC 5322 message as it is sent; NULL when rendering failed"
    )
    state: Mapped[str] = mapped_column(
        String(16), doc="pending, sending (claimed), indoubt (crashed mid-DATA: not resent), "
        "sent or failed"
    )
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(DETAIL_LEN))


# The delivery loop's question: "what is due?"
Index("ix_notifications_state_next_attempt", Notification.state, Notification.next_attempt_at)
