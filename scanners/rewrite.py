"""Byte-level edits of a message's header block, for ScanResult.transform.

Re-serialising a parsed message would change bytes the sender signed (DKIM) and
ones qscan never meant to touch; these edits work on the raw header lines and leave
everything else, the body above all, exactly as received. They are total: any
input, however malformed, gives an output.
"""

from __future__ import annotations

import re

_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")
_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_SUBJECT = re.compile(rb"^(Subject[ \t]*:[ \t]*)", re.IGNORECASE)


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its continuation lines) and the rest (blank line + body)."""
    fields: list[bytes] = []
    pos = 0
    for m in _LINE.finditer(raw):
        line = m.group()
        if line in (b"\n", b"\r\n") or not line.strip(b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif _NAME.match(line) or not fields:
            fields.append(line)
        else:
            break  # not a header line: the header block ended without a blank line
        pos = m.end()
    return fields, raw[pos:]


def _eol(raw: bytes) -> bytes:
    nl = raw.find(b"\n")
    return b"\r\n" if nl > 0 and raw[nl - 1 : nl] == b"\r" else b"\n"


def _field_name(field: bytes) -> bytes:
    m = _NAME.match(field)
    return m.group(1).lower() if m else b""


def rewrite_headers(raw: bytes, drop: frozenset[str] = frozenset(), subject_prefix: str = "") -> bytes:
    """Remove the fields named in ``drop``; put ``subject_prefix`` in front of the Subject."""
    fields, rest = _split(raw)
    if not fields:
        return raw
    names = {n.lower().encode("ascii") for n in drop}
    kept = [f for f in fields if _field_name(f) not in names]
    prefix = subject_prefix.encode("utf-8")
    if prefix:
        for i, field in enumerate(kept):
            m = _SUBJECT.match(field)
            if m:
                name = m.group(1).rstrip(b" \t")
                value = field[m.end() :]
                if not value.startswith(prefix):
                    sep = b" " if value.strip(b" \t\r\n") else b""
                    kept[i] = name + b" " + prefix + sep + value
                break
        else:
            eol = _eol(raw)
            if kept and not kept[-1].endswith(b"\n"):
                kept[-1] += eol
            kept.append(b"Subject: " + prefix + eol)
    return b"".join(kept) + rest
