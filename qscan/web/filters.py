"""Jinja2 filters of the console's templates: mail text shown as text, never as markup.

Autoescape already makes ``<script>`` harmless; ``visible`` also shows what a header or file
name hides: each control character becomes a small marked label (``ESC``, ``CR``, ``BEL``...)
and each Unicode format character that reorders or hides text (bidi overrides, zero-width
spaces) its code point (``U+202E``), so a subject cannot pretend to be something else on the
page. The text around them is escaped here, the labels are the only markup added.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ingest.vocabulary import utc

NAMES = {0: "NUL", 7: "BEL", 8: "BS", 9: "TAB", 10: "LF", 11: "VT", 12: "FF", 13: "CR", 27: "ESC",
         127: "DEL"}
_LABEL = Markup('<span class="ctl" title="U+{code:04X}">{name}</span>')


def _hidden(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")


def visible(value: Any) -> Markup:
    """Escaped text with every control and format character shown as a label."""
    text = "" if value is None else str(value)
    if not any(_hidden(c) for c in text):
        return escape(text)
    out: list[str] = []
    plain: list[str] = []
    for c in text:
        if not _hidden(c):
            plain.append(c)
            continue
        out.append(escape("".join(plain)))
        plain = []
        code = ord(c)
        out.append(_LABEL.format(code=code, name=NAMES.get(code, f"U+{code:04X}")))
    out.append(escape("".join(plain)))
    return Markup("".join(out))


def visible_header(value: Any) -> Markup:
    """A header line: its folding whitespace (leading tabs) read as spaces, the rest as visible."""
    text = "" if value is None else str(value)
    stripped = text.lstrip(" \t")
    return Markup(" " * (len(text) - len(stripped))) + visible(stripped)


def when(value: Any, seconds: bool = False) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return utc(value).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def size(value: Any) -> str:
    if not isinstance(value, int):
        return "" if value is None else str(value)
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def install(env: jinja2.Environment) -> None:
    env.filters.update(visible=visible, visible_header=visible_header, when=when, size=size)
