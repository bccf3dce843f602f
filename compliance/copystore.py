"""The stored copies of messages (archive and quarantine maildirs), as compliance sees them.

compliance/ does not know maildirs (archive/ owns them); verification,
retention and exports get an object with this interface from the composition
root (qscan), implemented by ``archive.copies.MaildirCopies``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredCopy:
    """A copy file on disk; ``event_id`` is '' for a file that is no qscan copy at all."""

    event_id: str
    location: str  # 'archive' or 'quarantine/FOLDER'
    path: Path


@dataclass(frozen=True)
class MessageFacts:
    """What SQL says about a message, for finding and checking its copy."""

    event_id: str
    received_at: datetime
    sender: str
    recipients: list[str]
    raw_sha256: str | None
    location: str | None  # where its copy should be; None when it has none


@dataclass(frozen=True)
class ArchiveDecision:
    """What the archive consumer decided for an accepted message, as it recorded it.

    ``made`` holds every recorded decision (a replay under other settings records
    again): (archived, digest of the settings it was made under). A message that was
    archived once must keep its copy until a tombstone says otherwise."""

    event_id: str
    made: tuple[tuple[bool, str], ...]

    @property
    def archived(self) -> bool:
        return any(kept for kept, _ in self.made)


class CopyStore(Protocol):
    def scan(self) -> Iterator[StoredCopy]:
        """Every file in every archive and quarantine maildir."""

    def locate(self, facts: MessageFacts) -> list[StoredCopy]:
        """The copies of one message that exist, wherever they are."""

    def check(self, copy: StoredCopy, facts: MessageFacts) -> str | None:
        """None when the copy is intact, else what is wrong with it."""

    def read_message(self, copy: StoredCopy, facts: MessageFacts) -> bytes:
        """The message as handed to qmail-queue (the copy without its envelope block).

        Raises ``CopyError`` when the copy does not hash to ``facts.raw_sha256``.
        """

    def remove(self, copy: StoredCopy) -> bool:
        """Delete one copy durably; False when it was already gone."""

    def archive_decisions(self) -> dict[str, ArchiveDecision]:
        """The archive decisions recorded so far, by event id (messages handled before
        decisions were recorded have none); raises ``CopyError`` on an unreadable record."""

    def archive_decision(self, event_id: str) -> ArchiveDecision | None:
        """One message's recorded decisions (``archive_decisions()[event_id]``), found without
        parsing every line; raises ``CopyError`` when a line of it is unreadable."""

    def decision_trouble(self, decision: ArchiveDecision, sender: str,
                         recipients: list[str]) -> str | None:
        """None when each recorded decision is what its recorded settings give for these
        envelope addresses, else what is wrong."""


class CopyError(Exception):
    """A copy that cannot be read or does not match what SQL recorded."""
