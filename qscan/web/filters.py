"""Jinja2 filters of the console's templates: mail text shown as text, never as markup.

Autoescape already makes ``<script>`` harmless; ``visible`` also shows what a header or file
name hides: control characters become visible symbols (U+2400 block: ␀ ␉ ␊ ␍ ␛) and the
Unicode format characters that reorder or hide text (bidi overrides, zero-width) become
``<U+202E>`` markers, so a subject cannot pretend to be something else on the page.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

import jinja2

from ingest.vocabulary import utc


def visible(value: Any) -> str:
    """Text with every control and format character made visible (escaping comes after)."""
    if value is None:
        return ""
    out = []
    for c in str(value):
        code = ord(c)
        if code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            out.append(f"<U+{code:04X}>")
        else:
            out.append(c)
    return "".join(out)


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
    env.filters.update(visible=visible, when=when, size=size)
