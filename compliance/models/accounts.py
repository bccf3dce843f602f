"""The web console's accounts (migration 0014): who may sign in, with which role and scope.

How rows are written and passwords checked: ``compliance.accounts``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compliance.models.base import Base


class WebAccount(Base):
    """One console login: a role, for ``user`` the addresses and domains it may see."""

    __tablename__ = "web_accounts"

    login: Mapped[str] = mapped_column(String(128), primary_key=True, doc="lowercased")
    role: Mapped[str] = mapped_column(String(16), doc="postmaster, auditor, legal, dlp-officer or user")
    password_hash: Mapped[str | None] = mapped_column(
        String(255), nullable=True, doc="Argon2id (PHC string); NULL: signs in only through the SSO header")
    addresses: Mapped[str] = mapped_column(Text, doc="JSON list of lowercased addresses (role user)")
    domains: Mapped[str] = mapped_column(Text, doc="JSON list of lowercased domains (role user)")
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(255), doc="user@host of the last change")
