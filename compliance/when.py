"""The one reader of points in time people type: the CLI's --since/--until and the console's.

Light on purpose (no SQL): ``qscan --help`` builds its options from here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from ingest.vocabulary import utc

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdwy])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DAYS_A_YEAR = 365


def parse_when(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """A point in time (UTC) from '2026-11-25', '2026-11-25T10:00', '7d', '12h' or '5y'.

    The one parser of every ``--since``/``--until`` (and ``--now``): relative times count
    back from now in s, m (minutes), h, d, w or y (365 days).

    A date alone is midnight UTC, or with ``end`` the midnight after it, so
    ``--until 2026-11-25`` includes that whole day. Times without an offset
    are UTC, like every time qscan writes.
    """
    m = _RELATIVE.match(text)
    if m:
        unit, n = m.group(2).lower(), int(m.group(1))
        delta = timedelta(days=n * _DAYS_A_YEAR) if unit == "y" else timedelta(**{_UNITS[unit]: n})
        return (now or datetime.now(UTC)) - delta
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    when = datetime.fromisoformat(text)
    return utc(when)
