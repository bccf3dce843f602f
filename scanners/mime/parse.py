"""MIME parsing, never trusted to be polite: the parser and the total part accessors.

Hostile mail can make ``email`` raise in surprising places (header accessors,
payload decoding, RFC 2231 parameters). Every access here is guarded: a part
that cannot be decoded still gives bytes (the raw payload), a header that will
not decode is shown raw. The scanners walk the tree with these helpers; ingest
builds the event's records from the same tree (``ingest.mime``).
"""

from __future__ import annotations

import binascii
import codecs
import re
from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import Parser

import pybase64

from scanners.mime.split import parse_text


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
            return self._structured(name, value)
        key = (name, value)
        hit = _FETCHED.get(key)
        if hit is None:
            if len(_FETCHED) >= _FETCH_CACHE_SIZE:
                _FETCHED.clear()
            hit = _FETCHED[key] = self._structured(name, value)
        return hit

    def _structured(self, name: str, value: str) -> str:
        """The stdlib's structured header; its raw text, unfolded, where the stdlib's own
        parser raises (``Content-Type: text/plain; Name*`` is an IndexError in CPython 3.11):
        the compat accessors (get_content_type, get_param, get_filename) read plain text."""
        try:
            return super().header_fetch_parse(name, value)
        except Exception:
            return _FOLD_BREAKS.sub("", value)


_FETCHED: dict[tuple[str, str], str] = {}
_FOLD_BREAKS = re.compile(r"\r?\n")
_FETCH_CACHE_SIZE = 2048
_FETCH_CACHE_MAX_VALUE = 2000
POLICY = _FetchCachingPolicy()  # policy.default's settings (utf8=False, linesep "\n", raise_on_defect=False)
_PARSER = Parser(policy=POLICY)


def parse(raw: bytes) -> EmailMessage:
    """The stdlib's message tree for ``raw`` (what ``BytesParser(policy=POLICY)`` builds).

    Built by scanners.mime.split where it reproduces feedparser exactly (most mail, at a
    fraction of the cost), by feedparser itself for everything else.
    """
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    msg = parse_text(text, POLICY)
    if msg is None:
        msg = _PARSER.parsestr(text)
    return msg  # type: ignore[return-value,unused-ignore]


def raw_header(msg: Message, name: str) -> str | None:
    """The first ``name`` header's value as it was written (folded, undecoded), or None."""
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
        return raw_header(msg, name)


_FOLD = re.compile(r"\r?\n[ \t]")


def display_header(msg: Message, name: str) -> str | None:
    """A header's text for display and search: unfolded and RFC 2047-decoded.

    Cheaper than the structured header registry (which parses address lists in
    full) and total: a header that will not decode is shown raw.
    """
    raw = raw_header(msg, name)
    return None if raw is None else display_value(raw)


def display_value(raw: str) -> str:
    """A raw header value (as ``raw_header`` gives it) unfolded and RFC 2047-decoded."""
    return decode_words(_FOLD.sub(" ", raw).strip())


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (unknown charsets as Latin-1); the value as is if none."""
    if "=?" not in value:
        return value
    try:
        return "".join(
            chunk.decode(_charset(charset), "replace") if isinstance(chunk, bytes) else chunk
            for chunk, charset in decode_header(value)
        )
    except Exception:
        return value


def _charset(name: str | None) -> str:
    if not name or name == "unknown-8bit":
        return "ascii"
    try:
        codecs.lookup(name)
    except LookupError:
        return "latin-1"
    return name


def part_filename(part: Message) -> str | None:
    """The part's declared file name, or None; never raises on hostile parameters.

    ``get_filename`` parses the parameters of Content-Disposition and then of Content-Type; a
    parameter is found only under a key that lowercases to ``filename``/``name`` (``name*``,
    ``name*0*`` ...), which the header's text then holds, lowercased: a part whose two headers
    hold no "name" (a text body) has none, and is not parsed (about 9 % of a plain message's
    scan, asked by the inventory and the crypto summary)."""
    try:
        if not any("name" in str(v).lower() for h in ("content-disposition", "content-type")
                   if (v := part.get(h)) is not None):
            return None
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


def decoded_payload(part: Message) -> bytes | None:
    """``part.get_payload(decode=True)``, the same bytes and the same defects recorded on the
    part, without the stdlib's copies where they change nothing. Raises where it raises.

    The stdlib checks the whole payload for surrogates by encoding it, encodes it again, and for
    base64 splits it into lines and joins them before ``binascii.a2b_base64(strict_mode=True)``
    (about 2.4 ms for a 300 KB attachment on the bench VM, CPython 3.11's decoder alone 1.6 ms).
    For an ASCII payload the lines joined are the text without its CR and LF bytes, and when
    their length is a multiple of 4 the stdlib's first try is exactly
    ``a2b_base64(joined, strict_mode=True)``. That is done here with pybase64's SIMD decoder in
    validating mode (0.04 ms for the same part), which accepts a subset of what strict mode
    accepts and decodes it to the same bytes (``tests/test_mime.py`` holds it so on random
    input); what it refuses goes to the strict decoder, then to the stdlib. The line breaks
    go with two single-byte ``replace`` calls (``memchr``; ``translate`` walks every byte).
    Anything else (not ASCII, padding to repair, characters outside the alphabet, uuencode: the
    cases where the stdlib records a defect or tries again) goes to the stdlib itself.
    ``tests/test_mime.py`` holds the two to the same bytes and defects on random payloads."""
    payload = getattr(part, "_payload", None)
    if isinstance(payload, str) and payload.isascii():
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte == "base64":
            joined = without_line_breaks(payload.encode("ascii"))
            if len(joined) % 4 == 0:
                try:
                    return strict_b64decode(joined)
                except binascii.Error:
                    pass  # the stdlib tries again, leniently, and records the defect
        elif cte == "quoted-printable":
            return binascii.a2b_qp(payload.encode("ascii"))  # what quopri.decodestring runs
        elif cte not in ("x-uuencode", "uuencode", "uue", "x-uue"):
            return payload.encode("ascii")
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else None


def without_line_breaks(data: bytes) -> bytes:
    """``data.translate(None, b"\\r\\n")``, ten times faster on base64 text (one LF per 77 bytes)."""
    data = data.replace(b"\n", b"")
    return data.replace(b"\r", b"") if b"\r" in data else data


def strict_b64decode(joined: bytes) -> bytes:
    """``binascii.a2b_base64(joined, strict_mode=True)``: the same bytes, the same refusals
    (``binascii.Error``), pybase64's SIMD decoder first. pybase64 refuses a few inputs strict
    mode takes (surplus padding, ``QQ====``): those are decoded by binascii."""
    try:
        return pybase64.b64decode(joined, validate=True)
    except binascii.Error:
        return binascii.a2b_base64(joined, strict_mode=True)


def part_payload(part: Message) -> bytes:
    """The decoded body of a leaf part; the raw text when the transfer encoding is broken.
    Total: hostile input gives bytes, never an exception."""
    try:
        data = decoded_payload(part)
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
