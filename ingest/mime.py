"""The event's records of a parsed message: its header summary and its leaf parts.

Parsing itself lives in ``scanners.mime.parse``, the one walk over the message's contents
in ``scanners.inventory``; this module only turns them into the event's ``HeaderSummary``
and ``Part`` records (and the scanners' ``ScanPart`` list, from the same inventory).
"""

from __future__ import annotations

from email.message import EmailMessage

from ingest.event import HeaderSummary, Part
from scanners.base import ScanPart
from scanners.inventory import Inventory, build
from scanners.mime.parse import display_value, raw_header

SUMMARISED = (("from", "From"), ("to", "To"), ("cc", "Cc"), ("subject", "Subject"),
              ("message_id", "Message-ID"), ("date", "Date"))


def header_summary(msg: EmailMessage) -> HeaderSummary:
    """Display text of the summarised headers, and the raw bytes of those that are not ASCII.

    The message was decoded as ASCII with surrogate escapes, so a raw 8-bit header value holds
    its bytes as escapes: they are given back byte for byte (``raw``), and the event's text
    type decodes them for display (RFC 6532 UTF-8; U+FFFD for bytes that are not)."""
    values: dict[str, object] = {}
    raw: dict[str, bytes] = {}
    for field, name in SUMMARISED:
        source = raw_header(msg, name)
        values[field] = None if source is None else display_value(source)
        if source is not None and not source.isascii():
            raw[name.lower()] = source.encode("utf-8", "surrogateescape")
    if raw:
        values["raw"] = raw
    return HeaderSummary.model_validate(values)


def part_records(inv: Inventory) -> tuple[list[Part], list[ScanPart], list[str]]:
    """The event's parts and the scanners' ScanParts: the message's leaves from its
    inventory, in document order, plus the parser defects it saw."""
    parts: list[Part] = []
    scan: list[ScanPart] = []
    for it in inv.leaves():
        parts.append(Part(path=it.path, content_type=it.declared_type, detected_type=it.sniffed_type,
                          filename=it.filename, size=it.size, sha256=it.sha256))
        scan.append(ScanPart(path=it.path, content_type=it.declared_type, filename=it.filename,
                             payload=it.data))
    return parts, scan, list(inv.defects)


def walk_parts(msg: EmailMessage) -> tuple[list[Part], list[ScanPart], list[str]]:
    """Leaf parts with decoded payloads, in document order, plus parser defects seen
    (an inventory of the leaves only: nothing is unpacked)."""
    return part_records(build(msg))
