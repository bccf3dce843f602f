"""Raw MIME header blocks, read from the bytes as sent (sans-I/O: bytes in, structure out).

The stdlib parser, which the rest of qscan uses, normalises exactly what the
format checks must see: it takes a bare CR for a line end, starts the body at
the first line without a colon, and keeps one value per parameter. Mail
clients disagree on those points, and malware lives in the disagreement. This
module walks the message only as far as the header blocks: for each MIME
entity it returns the fields with their byte offsets and the lines that are
not fields, so the checks can judge them and the repeated-header rename can
rewrite nothing but the names it means to.

Entity paths follow the event's part list (``scanners.inventory``): children of a
multipart are ``1``, ``2``, ...; the message inside a ``message/rfc822`` part
at ``p`` is ``p/1``; a single-part message's own leaf is ``1``. The message's
top header block is labelled ``0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 20
MAX_BLOCKS = 1000
MAX_HEADER_LINES = 1000
MAX_HEADER_BYTES = 256 * 1024

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_PARAM = re.compile(rb"[ \t]*;?[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+\*?[0-9]*\*?[ \t]*=")
_TYPE = re.compile(rb"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*/\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)")
_BOUNDARY = re.compile(rb'(?i)(?:^|;)\s*boundary\s*=\s*(?:"((?:[^"\\\r\n]|\\.)*)"|([^\s;"]+))')
_RAW_CTE = {b"", b"7bit", b"8bit", b"binary"}


@dataclass(slots=True)
class RawField:
    """One header field: its name as written, where its first line starts, its physical lines."""

    name: bytes
    offset: int
    lines: list[bytes]  # without the LF; a CR before it is kept
    lname: bytes = b""  # the name lowercased (set by the reader)

    @property
    def value(self) -> bytes:
        """The unfolded value (after the colon), line ends removed, CR inside lines kept."""
        first = self.lines[0]
        head = first[first.index(b":") + 1 :]
        parts = [head, *self.lines[1:]]
        return b"".join(p[:-1] if p.endswith(b"\r") else p for p in parts).strip(b" \t")


@dataclass(slots=True)
class StrayLine:
    """A line in a header block that is neither a field nor its continuation."""

    offset: int
    text: bytes
    kind: str  # 'orphan-continuation' | 'unindented-parameter' | 'junk'


@dataclass(slots=True)
class HeaderBlock:
    path: str  # '0' for the message's own header, else the entity's part path
    top: bool  # the header of a message (the message itself or an attached message/rfc822)
    fields: list[RawField] = field(default_factory=list)
    stray: list[StrayLine] = field(default_factory=list)
    truncated: bool = False

    def first(self, lname: bytes) -> RawField | None:
        return next((f for f in self.fields if f.lname == lname), None)

    def mime_fields(self) -> list[RawField]:
        """The MIME headers: all of a body part's, only Content-*/MIME-Version of a message's."""
        if not self.top:
            return self.fields
        return [f for f in self.fields if f.lname.startswith(b"content-") or f.lname == b"mime-version"]


@dataclass(slots=True)
class Walk:
    blocks: list[HeaderBlock] = field(default_factory=list)
    boundaries: list[tuple[str, bytes]] = field(default_factory=list)  # (path, boundary) in order
    truncated: bool = False  # depth or block limit reached


def strip_comments(value: bytes) -> bytes:
    """RFC 822 comments (nested, with quoted-pairs) removed outside quoted strings."""
    if b"(" not in value:
        return value
    out = bytearray()
    depth = 0
    quoted = escaped = False
    for c in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(c)
            continue
        if c == 0x5C:  # backslash: quoted-pair inside quotes or comments
            escaped = quoted or depth > 0
            if depth == 0:
                out.append(c)
            continue
        if quoted:
            out.append(c)
            quoted = c != 0x22
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29 and depth:
            depth -= 1
        elif depth == 0:
            out.append(c)
            quoted = c == 0x22
    return bytes(out)


def content_type(block: HeaderBlock) -> tuple[bytes, bytes | None]:
    """(type/subtype lowercased, boundary) from the first Content-Type field; text/plain by default."""
    f = block.first(b"content-type")
    if f is None:
        return b"text/plain", None
    value = strip_comments(f.value)
    m = _TYPE.match(value)
    if not m:
        return b"text/plain", None
    ctype = (m.group(1) + b"/" + m.group(2)).lower()
    b = _BOUNDARY.search(value, m.end())
    boundary = None
    if b:
        boundary = b.group(1) if b.group(1) is not None else b.group(2)
        if b.group(1) is not None:
            boundary = re.sub(rb"\\(.)", rb"\1", boundary)
    return ctype, boundary


def read_header_block(buf: bytes, start: int, end: int, path: str, top: bool) -> tuple[HeaderBlock, int]:
    """Parse the header block at ``start``; return it and where the body starts."""
    block = HeaderBlock(path=path or "0", top=top)
    current: RawField | None = None
    pos = start
    lines = 0
    while pos < end:
        nl = buf.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        nxt = end if nl < 0 else nl + 1
        line = buf[pos:line_end]
        if line in (b"", b"\r"):
            return block, nxt
        lines += 1
        if lines > MAX_HEADER_LINES or nxt - start > MAX_HEADER_BYTES:
            block.truncated = True
            return block, pos
        if line[:1] in (b" ", b"\t"):
            if current is None:
                block.stray.append(StrayLine(pos, line, "orphan-continuation"))
            else:
                current.lines.append(line)
        else:
            m = _FIELD.match(line)
            if m:
                current = RawField(name=m.group(1), offset=pos, lines=[line], lname=m.group(1).lower())
                block.fields.append(current)
            elif (
                current is not None and current.lname.startswith(b"content-") and _PARAM.match(line)
            ):
                # A lenient client reads it as the field's continuation: so do we, and flag it.
                block.stray.append(StrayLine(pos, line, "unindented-parameter"))
                current.lines.append(line)
            elif top:
                return block, pos  # a message's body starts at its first non-header line
            else:
                block.stray.append(StrayLine(pos, line, "junk"))
                current = None
        pos = nxt
    return block, end


def _delimiters(buf: bytes, start: int, end: int, boundary: bytes) -> tuple[list[tuple[int, int]], bool]:
    """Body-part spans between delimiter lines, and whether the close delimiter was seen."""
    delim = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while pos < end:
        idx = buf.find(delim, pos, end)
        if idx < 0:
            break
        pos = idx + len(delim)
        if idx != start and buf[idx - 1 : idx] != b"\n":
            continue
        rest = pos
        closing = buf[rest : rest + 2] == b"--"
        if closing:
            rest += 2
        while rest < end and buf[rest : rest + 1] in (b" ", b"\t"):
            rest += 1
        if rest < end and buf[rest : rest + 1] == b"\r":
            rest += 1
        if rest < end and buf[rest : rest + 1] != b"\n":
            continue  # '--boundary' followed by more text: not a delimiter line
        line_end = min(rest + 1, end)
        if part_start is not None:
            spans.append((part_start, idx))
        if closing:
            return spans, True
        part_start = line_end
        pos = line_end
    if part_start is not None:
        spans.append((part_start, end))
    return spans, False


def _join(path: str, i: int) -> str:
    return f"{path}/{i}" if path else str(i)


def walk_headers(raw: bytes) -> Walk:
    """Every entity's header block in document order, bounded by depth and count."""
    walk = Walk()

    def entity(start: int, end: int, path: str, top: bool, depth: int) -> None:
        if depth > MAX_DEPTH or len(walk.blocks) >= MAX_BLOCKS:
            walk.truncated = True
            return
        block, body = read_header_block(raw, start, end, path, top)
        walk.blocks.append(block)
        ctype, boundary = content_type(block)
        if ctype.startswith(b"multipart/"):
            if boundary is None:
                return
            walk.boundaries.append((block.path, boundary))
            spans, _closed = _delimiters(raw, body, end, boundary)
            for i, (s, e) in enumerate(spans, 1):
                entity(s, e, _join(path, i), False, depth + 1)
        elif ctype in (b"message/rfc822", b"message/global"):
            cte = block.first(b"content-transfer-encoding")
            if cte is None or strip_comments(cte.value).strip().lower() in _RAW_CTE:
                entity(body, end, _join(path, 1), True, depth + 1)

    entity(0, len(raw), "", True, 0)
    return walk
