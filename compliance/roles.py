"""The console's roles and what each may see (light: no SQL, imported by the settings too).

- ``postmaster``: runs the mail system: every message, quarantine, the raw source.
- ``auditor``: answers regulatory queries: every message's record, read-only.
- ``legal``: discovery: every message, holds and exports, the raw source.
- ``dlp-officer``: data loss prevention: every message, DLP findings, the raw source.
- ``user``: a mail user: only mail sent by or to its own addresses, or its assigned domains.

Which roles may download raw mail is a setting (``web.raw_roles``); the defaults are above.
"""

from __future__ import annotations

ROLES = ("postmaster", "auditor", "legal", "dlp-officer", "user")
SCOPED = frozenset({"user"})  # roles that see only their own addresses' and domains' mail


def is_scoped(role: str) -> bool:
    return role in SCOPED
