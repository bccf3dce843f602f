"""The scanner hook: what a scanner receives and the interface it implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from scanners.result import ScanResult


@dataclass(slots=True)
class ScanPart:
    path: str
    content_type: str
    filename: str | None
    payload: bytes  # decoded content


@dataclass(slots=True)
class ScanContext:
    """Everything a scanner may look at. Scanners must not mutate it."""

    raw: bytes
    message: EmailMessage | None  # None when the parser gave up
    parts: list[ScanPart]
    sender: str
    recipients: list[str]
    client_ip: str | None
    relay: bool
    size: int
    max_size: int
    env: dict[str, str] = field(default_factory=dict)


class Scanner(Protocol):
    name: str
    version: str

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        """Return findings (an empty list means nothing to report)."""
