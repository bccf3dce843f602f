"""What a payload is: fixed signatures for decisions, libmagic for the detected type on record.

Decisions (is this executable? is it an archive to open?) use a handful of exact
signatures: they are cheap, predictable, and cannot be talked into opening a
text file as an mtree archive. libmagic (python-magic) names the detected type
that reaches the event and the rules; it is only asked about binary content
and attachments, never about a plain-text body.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

MAGIC_HEAD = 64 * 1024  # libmagic sees at most this much (ISO 9660 puts its mark at 32 KiB)
TEXT_HEAD = 8 * 1024  # ... and this much of content without NUL bytes in its first KiB
_ISO_OFFSETS = (0x8001, 0x8801, 0x9001)
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"


def _is_pe(data: bytes) -> bool:
    if len(data) < 0x40 or not data.startswith(b"MZ"):
        return False
    off = int.from_bytes(data[0x3C:0x40], "little")
    return 0 < off <= len(data) - 4 and data[off : off + 4] == b"PE\0\0"


def exec_kind(data: bytes) -> str | None:
    """'pe', 'elf', 'mach-o', 'java-class' or 'script' (shebang), else None."""
    head = data[:8]
    if head.startswith(b"MZ"):
        return "pe" if _is_pe(data) else None
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf"):
        return "mach-o"
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) == 8:
        # universal Mach-O counts its architectures here; a Java class has its version (>= 45)
        return "mach-o" if int.from_bytes(head[4:8], "big") < 30 else "java-class"
    if head.startswith(b"#!"):
        rest = data[2:64].lstrip(b" \t")
        if rest.startswith(b"/"):
            return "script"
    return None


def container_kind(data: bytes) -> str | None:
    """The archive family to open with libarchive, or 'tnef'; None for anything else."""
    head = data[:8]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:6] == b"Rar!\x1a\x07":
        return "rar"
    if head[:4] == b"MSCF":
        return "cab"
    if head[:4] == TNEF_SIGNATURE:
        return "tnef"
    if len(data) >= 262 and data[257:262] == b"ustar":
        return "tar"
    for off in _ISO_OFFSETS:
        if data[off : off + 5] == b"CD001":
            return "iso"
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            if name == "lzma" and len(data) < 13:
                return None
            return "compressed"
    return None


class _Magic:
    """One libmagic handle per process: a cookie must not cross a fork."""

    def __init__(self) -> None:
        self._pid = -1
        self._handle: Any = None
        self.broken = False

    def get(self) -> Any:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._handle = None
            try:
                import magic

                self._handle = magic.Magic(mime=True)
            except Exception:  # libmagic missing: record no detected type, decide by signatures
                if not self.broken:
                    log.exception("libmagic unavailable; detected types will be missing")
                self.broken = True
        return self._handle


_MAGIC = _Magic()


def magic_available() -> bool:
    return _MAGIC.get() is not None


def magic_type(data: bytes) -> str | None:
    """libmagic's MIME type of the first MAGIC_HEAD bytes, or None when it cannot tell."""
    handle = _MAGIC.get()
    if handle is None or not data:
        return None
    # libmagic's text heuristics cost ~1 ms per 8 KiB of plain text and learn nothing more
    # from the rest; binary formats (ISO 9660 at 32 KiB) get the whole head.
    size = MAGIC_HEAD if b"\0" in data[:1024] else TEXT_HEAD
    try:
        mtype = handle.from_buffer(data[:size])
    except Exception:
        return None
    return str(mtype) if mtype else None
