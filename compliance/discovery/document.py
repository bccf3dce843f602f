"""One message as the index stores it: its fields' text, built from a ``message.scanned`` event.

The text comes from the DLP extractor (scanners/dlp/extract.py: bodies, HTML as text, PDF,
office documents, text inside archives, each under the per-message limits) over the
message's contents inventory (scanners/inventory.py: attachment and archive member names).
A segment at a named part or inside a container is attachment text; the others are body.
Whatever could not be read (a limit reached, a document that would not open, encrypted
content, no stored copy in the event) is kept in ``incomplete``; an extractor that fails
outright is caught here: the message is indexed by its headers and the failure noted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from compliance.discovery.query import Field
from ingest.event import MessageScanned, utc
from scanners.dlp.extract import Extraction, ExtractLimits, extract, plan
from scanners.inventory import build
from scanners.mime.parse import parse as parse_mime

log = logging.getLogger(__name__)

NOTES_LEN = 4000  # characters of ``incomplete`` kept


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    event_id: str
    sha256: str  # of the message as received: copies of one message count once
    received_at: datetime
    host: str
    sender: str
    subject: str
    recipients: tuple[str, ...]
    text: dict[Field, str]
    incomplete: str | None  # None: everything was read


def _attachment(location: str) -> bool:
    return "/" in location or "!" in location


def _extract(raw: bytes, limits: ExtractLimits) -> tuple[Extraction, list[str], list[str]]:
    """(the text, attachment names, notes)."""
    notes: list[str] = []
    try:
        msg = parse_mime(raw)
    except Exception as exc:
        return Extraction(), [], [f"message not parsed ({type(exc).__name__})"]
    contents = build(msg, plan(limits))
    names: list[str] = []
    for item in contents.items:
        names.extend(item.names or ((item.filename,) if item.filename else ()))
    if contents.error:
        notes.append(f"contents: {contents.error}")
    return extract(msg, headers=(), limits=limits, contents=contents), names, notes


def indexed_message(ev: MessageScanned, limits: ExtractLimits) -> IndexedMessage:
    h = ev.headers
    body: list[str] = []
    attachment: list[str] = []
    notes: list[str] = []
    if ev.raw_message:
        try:
            found, names, notes = _extract(ev.raw_message, limits)
        except Exception as exc:
            log.warning("discovery: extraction failed for %s: %r", ev.event_id, exc)
            found, names, notes = Extraction(), [], [f"extraction failed ({type(exc).__name__})"]
        attachment.extend(dict.fromkeys(names))
        for seg in found.segments:
            (attachment if _attachment(seg.location) else body).append(seg.text)
        notes.extend(found.notes)
        notes.extend(f"encrypted: {where}" for where in found.encrypted)
    elif ev.size:
        notes.append("no stored copy in the event (oversized): headers only")
    recipients = tuple(dict.fromkeys(ev.envelope.recipients))
    text: dict[Field, str] = {
        "subject": h.subject or "",
        "from": " ".join(x for x in (h.from_ or "", ev.envelope.sender) if x),
        "to": " ".join([h.to or "", *recipients]).strip(),
        "cc": h.cc or "",
        "body": "\n".join(body),
        "attachment": "\n".join(attachment),
    }
    incomplete = "; ".join(dict.fromkeys(notes))[:NOTES_LEN] or None
    return IndexedMessage(
        event_id=ev.event_id, sha256=ev.sha256, received_at=utc(ev.time),
        host=ev.host, sender=ev.envelope.sender, subject=h.subject or "",
        recipients=recipients, text=text, incomplete=incomplete)
