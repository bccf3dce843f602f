"""Checks on what an attachment is called and what it contains.

Names are read the way the receiving client will read them: Windows drops
trailing dots and spaces, shows a right-to-left override reversed, and runs
whatever the *last* extension says. Harmless habits (``report.2024.pdf``,
``archive.tar.gz``, ``setup-1.2.exe`` with a version number) are not flagged:
a double-barrelled name needs a dangerous last extension *and* a decoy before
it (a document or media extension, or padding before the final dot).

Executables and scripts are banned outright at any depth (:func:`banned_checks`): by the last
extension of any name the part or member declares, and by content (a PE, ELF or Mach-O image
whatever it is called). A site takes exceptions back with an allow-list of extensions and
formats; allowing an extension also allows executable content that carries it (a PE named
``setup.exe`` once ``exe`` is allowed), never the same content under another name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from scanners.internal.checks import DISK_IMAGE_EXTENSIONS, EXECUTABLE_FORMATS, CheckHit
from scanners.internal.items import Item
from scanners.mime.filetype import exec_kind

MAX_FILENAME = 256

# Extensions that claim a harmless type: decoys in double-barrelled names, and the claim an
# executable hiding under a harmless name makes.
HARMLESS_EXTENSIONS = frozenset((
    "txt", "text", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "odt", "ods", "odp",
    "csv", "xml", "htm", "html", "jpg", "jpeg", "gif", "png", "bmp", "tif", "tiff", "webp", "ico",
    "mp3", "mp4", "wav", "avi", "mpg", "mpeg", "mov", "wma", "wmv", "ogg", "zip", "rar", "eml",
))
# Declared types that are honest about executable content.
_HONEST_SCRIPT_TYPES = re.compile(r"text/x-(sh|shellscript|script(\..*)?|python|perl|ruby|csh|ksh|bash|zsh)$")
_CLSID = re.compile(r"\.\s*\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}", re.I)
_BIDI = ("\u202e", "\u202d", "\u202b", "\u202a", "\u2066", "\u2067", "\u2068")
_MEDIA = ("audio/", "video/", "image/")
_DISK_IMAGES = frozenset(DISK_IMAGE_EXTENSIONS)


def normalise(name: str) -> str:
    """The name as Windows will store it: outer whitespace, trailing dots and spaces gone."""
    return name.strip().rstrip(". \t")


def extension(name: str) -> str:
    n = normalise(name)
    return n.rsplit(".", 1)[1].strip().lower() if "." in n else ""


def double_extension(name: str, dangerous: frozenset[str]) -> str | None:
    """Why the name is a double-barrelled disguise, or None."""
    if any(c in name for c in _BIDI):
        return "right-to-left override in name"
    parts = normalise(name).split(".")
    if len(parts) < 3:
        return None
    final = parts[-1].strip().lower()
    if final not in dangerous:
        return None
    middle = parts[-2]
    if middle.strip().lower() in HARMLESS_EXTENSIONS:
        return f".{middle.strip().lower()} before .{final}"
    if middle != middle.rstrip() and middle.strip():
        return f"padding before .{final}"
    return None


def _names(item: Item) -> list[str]:
    seen: list[str] = []
    for n in item.all_names():
        if n not in seen:
            seen.append(n)
    return seen


def _show(name: str, limit: int = 80) -> str:
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_checks(item: Item, dangerous: frozenset[str]) -> Iterable[CheckHit]:
    """``dangerous``: the banned extensions; disk images are added as the last extension of
    a double-barrelled name (they are containers, not banned by themselves)."""
    names = _names(item)
    if not names:
        return
    dangerous = dangerous | _DISK_IMAGES
    path = item.path
    long = next((n for n in names if len(n) > MAX_FILENAME), None)
    if long is not None:
        yield CheckHit("filename-too-long", path, f"filename of {len(long)} characters")
    distinct = {normalise(n).casefold() for n in names}
    if len(distinct) > 1:
        yield CheckHit("filename-mismatch", path, " vs ".join(repr(_show(n, 60)) for n in names[:4]))
    for n in names:
        why = double_extension(n, dangerous)
        if why:
            yield CheckHit("double-extension", path, f"{_show(n)}: {why}")
            break
    for n in names:
        if _CLSID.search(n):
            yield CheckHit("clsid-extension", path, _show(n))
            break
    declared = (item.declared_type or "").lower()
    if declared.startswith(_MEDIA):
        for n in names:
            if extension(n) in dangerous:
                yield CheckHit("executable-media-type", path, f"{declared} named {_show(n)}")
                break


def banned_checks(item: Item, banned: frozenset[str], allowed: frozenset[str]) -> Iterable[CheckHit]:
    """``banned-extension`` when a declared name's last extension is banned and not allowed;
    ``executable-content`` when the content is an executable format that is not allowed,
    unless every name it carries has an allowed extension."""
    names = _names(item)
    exts = [extension(n) for n in names]
    for n, ext in zip(names, exts, strict=True):
        if ext in banned and ext not in allowed:
            yield CheckHit("banned-extension", item.path, f"{_show(n)}: .{ext} is banned")
            break
    kind = exec_kind(item.head)
    if kind not in EXECUTABLE_FORMATS or kind in allowed:
        return
    if names and all(ext in allowed for ext in exts):
        return
    named = f" named {_show(names[0])}" if names else ""
    yield CheckHit("executable-content", item.path, f"{kind} executable{named}")


def content_checks(item: Item) -> Iterable[CheckHit]:
    kind = exec_kind(item.head)
    if kind is None:
        return
    if kind == "script" and not (item.attachment or item.filename):
        return  # a body that starts with '#!/' is text someone pasted, not something a client runs
    declared = (item.declared_type or "").lower()
    honest = declared.startswith("application/") or (
        kind == "script" and _HONEST_SCRIPT_TYPES.match(declared) is not None
    )
    if declared and not honest:
        yield CheckHit("executable-disguised", item.path, f"{kind} content declared {declared}")
        return
    for n in _names(item):
        if extension(n) in HARMLESS_EXTENSIONS:
            yield CheckHit("executable-disguised", item.path, f"{kind} content named {_show(n)}")
            return
