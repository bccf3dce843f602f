"""The scanner hook: what a scanner receives and the interface it implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

from scanners.direction import leaves_site
from scanners.result import ScanResult

if TYPE_CHECKING:  # the walk itself is imported by the first scanner that asks for it
    from scanners.inventory import Inventory, Plan


@dataclass(slots=True)
class ScanPart:
    path: str
    content_type: str
    filename: str | None
    payload: bytes  # decoded content


@dataclass(slots=True)
class PartInfo:
    """A part a scanner found inside another (archive member, TNEF attachment, uuencoded file)
    or re-typed (a MIME part's libmagic type), for the event's part list. A path already in
    the list updates that part's detected type; a new path is appended."""

    path: str  # e.g. '2/invoice.zip!/a.exe'
    content_type: str  # declared type; for members, the type their name claims
    detected_type: str | None
    filename: str | None
    size: int
    sha256: str


@dataclass(slots=True)
class ScanContext:
    """Everything a scanner may look at. Scanners must not mutate it (but may append to
    found_parts; ``contents`` fills in the inventory once)."""

    raw: bytes
    message: EmailMessage | None  # None when the parser gave up
    parts: list[ScanPart]
    sender: str
    recipients: list[str]
    client_ip: str | None  # only from a trusted SMTP peer (daemon.smtp_users); None: local mail
    relay: bool  # RELAYCLIENT, from a trusted SMTP peer
    size: int
    max_size: int
    env: dict[str, str] = field(default_factory=dict)  # the trusted attributes only
    # The mail leaves the site: a relay client sent it, or it was injected locally to a
    # recipient outside the local domains. None: the same as ``relay`` (callers that predate it).
    outbound: bool | None = None

    @property
    def leaves_site(self) -> bool:
        """Outbound, for rules with a direction."""
        return leaves_site(self.relay, self.outbound)
    queue_id: str = ""  # the event id, for correlating a scanner's own logs (rspamd Queue-Id)
    found_parts: list[PartInfo] = field(default_factory=list)  # the one thing scanners may append to
    # The message's contents, walked and unpacked once (scanners.inventory): the processor's,
    # or built by the first scanner that asks (``contents``) when a scanner runs alone.
    inventory: Inventory | None = None

    def contents(self, plan: Plan) -> Inventory:
        """The message's inventory; built here, with ``plan``, only if nobody built one that
        covers it (a processor whose scanner list was changed after it was made)."""
        if self.inventory is None or not self.inventory.plan.covers(plan):
            from scanners.inventory import build

            self.inventory = build(self.message, plan)
        return self.inventory


class Scanner(Protocol):
    """Optional attributes, read once by the processor (``scanners.inventory.plan_for``):
    ``unpack_limits`` (an UnpackLimits: the scanner reads archive members; the first such
    scanner's limits are the message's) and ``keep_whole`` (head, name -> bool: archive
    members it needs in full)."""

    name: str
    version: str

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        """Return findings (an empty list means nothing to report)."""
