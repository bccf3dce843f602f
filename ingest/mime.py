"""The event's records of a parsed message: its header summary and its leaf parts.

Parsing itself, and the total accessors every walk uses, live in ``scanners.mime.parse``;
this module only turns that tree into the event's ``HeaderSummary`` and ``Part`` records
(and the scanners' ``ScanPart`` list, built in the same walk).
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage, Message

from ingest.event import HeaderSummary, Part
from scanners.base import ScanPart
from scanners.mime.filetype import sniff
from scanners.mime.parse import display_value, part_content_type, part_filename, raw_header

MAX_PARTS = 1000
MAX_DEPTH = 20

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


def walk_parts(msg: EmailMessage) -> tuple[list[Part], list[ScanPart], list[str]]:
    """Leaf parts with decoded payloads, in document order, plus parser defects seen."""
    parts: list[Part] = []
    scan: list[ScanPart] = []
    defects: list[str] = []

    def visit(node: Message, path: str, depth: int) -> None:
        if len(parts) >= MAX_PARTS:
            if "too-many-parts" not in defects:
                defects.append("too-many-parts")
            return
        for d in getattr(node, "defects", ()):
            name = type(d).__name__
            if name not in defects:
                defects.append(name)
        if depth > MAX_DEPTH:
            defects.append("nesting-too-deep")
            return
        if node.is_multipart():
            try:
                children = node.get_payload()
            except Exception:
                children = []
            if not isinstance(children, list):
                children = []
            for i, child in enumerate(children, 1):
                if isinstance(child, Message):
                    visit(child, f"{path}/{i}" if path else str(i), depth + 1)
            return
        ctype = part_content_type(node)
        try:
            payload = node.get_payload(decode=True)
        except Exception:
            payload = None
            defects.append("undecodable-payload")
        if not isinstance(payload, bytes):
            raw_payload = node.get_payload()
            payload = raw_payload.encode("utf-8", "surrogateescape") if isinstance(raw_payload, str) else b""
        filename = part_filename(node)
        p = path or "1"
        parts.append(
            Part(
                path=p,
                content_type=ctype,
                detected_type=sniff(payload),
                filename=filename,
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
            )
        )
        scan.append(ScanPart(path=p, content_type=ctype, filename=filename, payload=payload))

    visit(msg, "", 0)
    return parts, scan, defects
