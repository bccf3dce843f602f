"""MIME parsing for the scan stage: the stdlib parser, never trusted to be polite.

Hostile mail can make ``email`` raise in surprising places (header accessors,
payload decoding, RFC 2231 parameters). Every access here is guarded: a part
that cannot be decoded is still listed, with the raw payload, and a defect is
recorded so the verdict can treat the message as malformed.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import Parser

from ingest.event import HeaderSummary, Part
from ingest.mime_split import parse_text
from scanners.base import ScanPart
from scanners.filetype import sniff

MAX_PARTS = 1000
MAX_DEPTH = 20


class _FetchCachingPolicy(policy.EmailPolicy):
    """policy.default, except that a header's parsed form is remembered.

    With policy.default every ``msg[name]``/``get_content_type()``/``get_filename()`` runs the
    structured header parser again on the same text - the feedparser, our MIME walk and the
    scanners ask for each part's Content-Type about six times. The parsed header objects are
    immutable, so the same text maps to the same object; the cache is bounded and per process.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        if hasattr(value, "name"):
            return value
        if len(value) > _FETCH_CACHE_MAX_VALUE:  # a hostile giant header is not kept across messages
            return super().header_fetch_parse(name, value)
        key = (name, value)
        hit = _FETCHED.get(key)
        if hit is None:
            if len(_FETCHED) >= _FETCH_CACHE_SIZE:
                _FETCHED.clear()
            hit = _FETCHED[key] = super().header_fetch_parse(name, value)
        return hit


_FETCHED: dict[tuple[str, str], str] = {}
_FETCH_CACHE_SIZE = 2048
_FETCH_CACHE_MAX_VALUE = 2000
POLICY = _FetchCachingPolicy()  # policy.default's settings (utf8=False, linesep "\n", raise_on_defect=False)
_PARSER = Parser(policy=POLICY)


def parse(raw: bytes) -> EmailMessage:
    """The stdlib's message tree for ``raw`` (what ``BytesParser(policy=POLICY)`` builds).

    Built by ingest.mime_split where it reproduces feedparser exactly (most mail, at a
    fraction of the cost), by feedparser itself for everything else.
    """
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    msg = parse_text(text, POLICY)
    if msg is None:
        msg = _PARSER.parsestr(text)
    return msg  # type: ignore[return-value,unused-ignore]


def _raw_header(msg: Message, name: str) -> str | None:
    lname = name.lower()
    for key, value in msg.raw_items():  # type: ignore[attr-defined,unused-ignore]
        if key.lower() == lname:
            return str(value)
    return None


def header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception:
        return _raw_header(msg, name)


_FOLD = re.compile(r"\r?\n[ \t]")


def display_header(msg: Message, name: str) -> str | None:
    """A header's text for display and search: unfolded and RFC 2047-decoded.

    Cheaper than the structured header registry (which parses address lists in
    full) and total: a header that will not decode is shown raw.
    """
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    value = _FOLD.sub(" ", raw).strip()
    if "=?" in value:
        try:
            value = "".join(
                chunk.decode(_charset(charset), "replace") if isinstance(chunk, bytes) else chunk
                for chunk, charset in decode_header(value)
            )
        except Exception:
            pass
    return value


def _charset(name: str | None) -> str:
    if not name or name == "unknown-8bit":
        return "ascii"
    try:
        codecs.lookup(name)
    except LookupError:
        return "latin-1"
    return name


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
        values[field] = display_header(msg, name)
        source = _raw_header(msg, name)
        if source is not None and not source.isascii():
            raw[name.lower()] = source.encode("utf-8", "surrogateescape")
    if raw:
        values["raw"] = raw
    return HeaderSummary.model_validate(values)


def part_filename(part: Message) -> str | None:
    """The part's declared file name, or None; never raises on hostile parameters."""
    try:
        name = part.get_filename()
    except Exception:
        return None
    return str(name) if name else None


def part_content_type(part: Message) -> str:
    """The declared content type; application/octet-stream when it cannot be read."""
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def part_payload(part: Message) -> bytes:
    """The decoded body of a leaf part; the raw text when the transfer encoding is broken.
    Total: hostile input gives bytes, never an exception."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    try:
        raw = part.get_payload()
    except Exception:
        return b""
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def part_children(part: Message) -> list[Message] | None:
    """The sub-parts of a multipart part (only real Message objects), or None for a leaf.
    Total: a part whose structure cannot be read counts as a leaf."""
    try:
        if not part.is_multipart():
            return None
        children = part.get_payload()
    except Exception:
        return None
    return [c for c in children if isinstance(c, Message)] if isinstance(children, list) else []


_filename = part_filename
_content_type = part_content_type


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
        ctype = _content_type(node)
        try:
            payload = node.get_payload(decode=True)
        except Exception:
            payload = None
            defects.append("undecodable-payload")
        if not isinstance(payload, bytes):
            raw_payload = node.get_payload()
            payload = raw_payload.encode("utf-8", "surrogateescape") if isinstance(raw_payload, str) else b""
        filename = _filename(node)
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
