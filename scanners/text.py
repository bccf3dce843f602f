"""Text from mail made safe to write: the control-character cleaners, one per purpose.

- ``one_line``: for a header value, a protocol line (spamd, rspamd), a log field or an SMTP
  reply: nothing that could end or split the line (C0 and C1 controls, DEL, line and paragraph
  separators) survives; each run of them becomes one space.
- ``display_safe``: for a person's screen or a notification: also no bidi overrides or
  isolates, no byte-order mark, white space folded to single spaces.
"""

from __future__ import annotations

import re

# C0 controls (CR, LF, TAB included), DEL, C1 controls (NEL...), LINE and PARAGRAPH SEPARATOR.
_LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# ... and bidi embeddings/overrides/isolates, LRM/RLM, the byte-order mark.
_UNSAFE_ON_SCREEN = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]+")
_SPACES = re.compile(r"\s{2,}")


def _bounded(text: str, limit: int | None, ellipsis: str) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - len(ellipsis)].rstrip() + ellipsis if ellipsis else text[:limit]


def breaks_line(value: str) -> bool:
    """``value`` has a character ``one_line`` would replace (config checks refuse such values)."""
    return _LINE_BREAKERS.search(value) is not None


def one_line(value: str | None, limit: int | None = None, *, ellipsis: str = "") -> str:
    """``value`` as one line: line breakers to spaces, stripped, at most ``limit`` characters
    (the last ones replaced by ``ellipsis`` when it is cut)."""
    if not value:
        return ""
    if not value.isprintable():  # C-speed pre-check: most values need no regex pass
        value = _LINE_BREAKERS.sub(" ", value)
    return _bounded(value.strip(), limit, ellipsis)


def display_safe(value: object, limit: int | None = None, *, ellipsis: str = "…") -> str:
    """``value`` as one line of text to show: ``one_line``'s rule, no bidi controls either,
    white space folded; at most ``limit`` characters (ending in ``ellipsis`` when cut)."""
    if value is None:
        return ""
    text = _SPACES.sub(" ", _UNSAFE_ON_SCREEN.sub(" ", str(value))).strip()
    return _bounded(text, limit, ellipsis)
