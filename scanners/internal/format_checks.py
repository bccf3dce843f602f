"""MIME format checks on the raw header blocks, and the repeated-header rename.

These are Qmail-Scanner's "perlscan" format checks: each looks for a way of
writing MIME that standards-following software and sloppy mail clients read
differently, which is how malware slips attachments past scanners. None of
them needs to decode a body, so they cost a pass over the header lines only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from scanners.internal.checks import CheckHit
from scanners.internal.rawmime import HeaderBlock, RawField, Walk, strip_comments, walk_headers

MAX_BOUNDARY = 250
RENAME_PREFIX = b"X-qscan-Renamed-"
# Headers whose repetition changes how a part is read; later occurrences get renamed.
REPEATABLE_NOT = (b"content-type", b"content-transfer-encoding", b"content-disposition")
# Header names a comment must not hide inside (Content-T(xxx)ype:).
STANDARD_NAMES = frozenset(
    n.encode() for n in (
        "content-type", "content-transfer-encoding", "content-disposition", "content-id",
        "content-description", "content-location", "mime-version", "from", "to", "cc", "bcc",
        "subject", "reply-to", "sender", "date", "message-id", "received", "return-path",
    )
)
# MIME fields whose leading token a comment must not split or precede.
_TOKEN_FIELDS = (b"content-type", b"content-transfer-encoding", b"content-disposition")
_GLUED_COMMENT = re.compile(rb"[A-Za-z0-9/._+-]\s*\([^)]*\)\s*[A-Za-z0-9/._+=-]")
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')
_PARAM_NAME_COMMENT = re.compile(rb";\s*[A-Za-z0-9*_.-]*\([^)]*\)[A-Za-z0-9*_.-]*\s*=")


def _show(data: bytes, limit: int = 80) -> str:
    text = data.decode("latin-1")
    text = "".join(c if 32 <= ord(c) < 127 else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _control_chars(lines: Iterable[bytes], ignore_eol: bool) -> str | None:
    for line in lines:
        if b"\0" in line:
            return "NUL"
        if not ignore_eol and b"\r" in (line[:-1] if line.endswith(b"\r") else line):
            return "bare CR"
    return None


def _hidden_comment(f: RawField) -> bool:
    """A comment before the type token, glued inside it, or inside a parameter name."""
    value = _QUOTED.sub(b'""', f.value)
    if b"(" not in value:
        return False
    if value.lstrip().startswith(b"("):
        return True
    head = value.split(b";", 1)[0]
    if _GLUED_COMMENT.search(head):
        return True
    return bool(_PARAM_NAME_COMMENT.search(value))


def _name_comment(f: RawField) -> bool:
    return b"(" in f.name and strip_comments(f.name).strip().lower() in STANDARD_NAMES


def block_checks(block: HeaderBlock, ignore_eol: bool) -> list[CheckHit]:
    """Every header-level check on one block; at most one hit per check per block."""
    hits: list[CheckHit] = []
    path = block.path
    mime = block.mime_fields()
    for f in mime:
        why = _control_chars(f.lines, ignore_eol)
        if why:
            hits.append(CheckHit("header-control-chars", path, f"{why} in {_show(f.name)}"))
            break
    else:
        for s in block.stray:
            why = _control_chars([s.text], ignore_eol)
            if why:
                hits.append(CheckHit("header-control-chars", path, f"{why} in header line"))
                break
    for f in block.fields:
        if _name_comment(f):
            hits.append(CheckHit("header-comment", path, f"comment in header name {_show(f.name)}"))
            break
    else:
        for f in mime:
            if f.lname in _TOKEN_FIELDS and _hidden_comment(f):
                hits.append(CheckHit("header-comment", path, f"comment hiding in {_show(f.name)}: "
                                     f"{_show(f.value)}"))
                break
    counts: dict[bytes, int] = {}
    for f in mime:
        if f.lname in REPEATABLE_NOT:
            counts[f.lname] = counts.get(f.lname, 0) + 1
    repeated = [n for n, c in counts.items() if c > 1]
    if repeated:
        hits.append(CheckHit("repeated-mime-header", path, "repeated " + ", ".join(
            f"{n.decode()} x{counts[n]}" for n in repeated) + " (later ones renamed)"))
    for s in block.stray:
        if s.kind in ("orphan-continuation", "unindented-parameter"):
            what = "continuation of no header" if s.kind == "orphan-continuation" else "unindented parameter"
            hits.append(CheckHit("broken-continuation", path, f"{what}: {_show(s.text)}"))
            break
    if not block.top:
        for s in block.stray:
            if s.kind == "junk":
                hits.append(CheckHit("broken-part-header", path, f"not a header: {_show(s.text)}"))
                break
    return hits


def boundary_checks(walk: Walk) -> list[CheckHit]:
    hits: list[CheckHit] = []
    seen: dict[bytes, str] = {}
    for path, boundary in walk.boundaries:
        if len(boundary) > MAX_BOUNDARY:
            hits.append(CheckHit("boundary-too-long", path, f"boundary of {len(boundary)} characters"))
        if boundary in seen:
            hits.append(CheckHit("boundary-reused", path, f"boundary {_show(boundary, 60)!r} "
                                 f"already defined at {seen[boundary]}"))
        else:
            seen[boundary] = path
    return hits


def header_checks(walk: Walk, ignore_eol: bool = False) -> list[CheckHit]:
    hits: list[CheckHit] = []
    for block in walk.blocks:
        hits.extend(block_checks(block, ignore_eol))
    hits.extend(boundary_checks(walk))
    return hits


def repeated_offsets(walk: Walk) -> list[int]:
    """Where each later occurrence of a repeated MIME header starts."""
    offsets: list[int] = []
    for block in walk.blocks:
        seen: set[bytes] = set()
        for f in block.mime_fields():
            if f.lname in REPEATABLE_NOT:
                if f.lname in seen:
                    offsets.append(f.offset)
                seen.add(f.lname)
    return sorted(offsets)


def rename_repeated(data: bytes) -> bytes:
    """Rename later occurrences of repeated MIME headers so no client honours them.

    ``Content-Type:`` becomes ``X-qscan-Renamed-Content-Type:``; every other byte is
    kept. Total: it re-reads the bytes it is given (an earlier rewrite may have moved
    things) and returns them unchanged if anything goes wrong.
    """
    try:
        offsets = repeated_offsets(walk_headers(data))
        if not offsets:
            return data
        out: list[bytes] = []
        last = 0
        for off in offsets:
            out.append(data[last:off])
            out.append(RENAME_PREFIX)
            last = off
        out.append(data[last:])
        return b"".join(out)
    except Exception:
        return data
