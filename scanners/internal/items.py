"""The unit the attachment checks and the policy rules look at: a MIME leaf or an unpacked member."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Item:
    path: str  # '2', '2/1/invoice.zip!/a.exe', '1!/notes.txt' (uuencoded in a text part)
    filename: str | None
    declared_type: str | None  # MIME Content-Type; None for archive members
    head: bytes  # the first bytes (all of them for MIME leaves): enough for signatures and libmagic
    size: int
    sha256: str
    depth: int = 0  # 0 for MIME leaves, 1 for a member of an attached archive, ...
    names: tuple[str, ...] = ()  # every filename declared (Content-Type name=, filename=, RFC 2231)
    attachment: bool = False  # named, or Content-Disposition: attachment
    encrypted: bool = False
    detected_type: str | None = None

    @property
    def in_archive(self) -> bool:
        return self.depth > 0

    def all_names(self) -> tuple[str, ...]:
        if self.names:
            return self.names
        return (self.filename,) if self.filename else ()
