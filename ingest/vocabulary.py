"""The words events are made of (actions, quarantine folders, UTC times), without pydantic.

``ingest.event`` re-exports every name; code that needs only these (the CLI's option choices,
``qscan --help``) imports them from here and so starts without building the event models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from scanners.result import Category


class Action(StrEnum):
    DELIVER = "deliver"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DROP = "drop"


# The quarantine maildirs (quarantine/<folder>/) and the category each one keeps: the one list,
# which the archive consumer, the quarantine store, verify, config and the CLI all import.
QUARANTINE_FOLDER_OF: dict[Category, str] = {
    Category.VIRUS: "viruses",
    Category.POLICY: "policy",
    Category.MALFORMED: "policy",
    Category.SPAM: "spam",
    Category.DLP: "dlp",
    Category.CLEAN: "policy",
}
QUARANTINE_FOLDERS: tuple[str, ...] = tuple(dict.fromkeys(QUARANTINE_FOLDER_OF.values()))
VIRUS_FOLDER = QUARANTINE_FOLDER_OF[Category.VIRUS]  # released only with force


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC time. qscan writes UTC everywhere (events, the log, SQL rows), so
    a naive time (SQLite hands them back naive) is read as UTC, never as local time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def quarantine_folder(category: str) -> str:
    """The folder a quarantined message of ``category`` is kept in (ValueError: no category)."""
    return QUARANTINE_FOLDER_OF.get(Category(category), "policy")
