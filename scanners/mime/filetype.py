"""What a payload is: fixed signatures for decisions, libmagic for the detected type on record.

Decisions (is this executable? is it an archive to open?) use a handful of exact
signatures: they are cheap, predictable, and cannot be talked into opening a
text file as an mtree archive. libmagic (python-magic) names the detected type
that the internal scanner's items and rules see; it is only asked about binary
content and attachments, never about a plain-text body. :func:`sniff` is the
cheap signature table behind each MIME leaf's ``detected_type`` in the event.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

MAGIC_HEAD = 64 * 1024  # libmagic sees at most this much (ISO 9660 puts its mark at 32 KiB)
TEXT_HEAD = 8 * 1024  # ... and this much of content without NUL bytes in its first KiB
_VD_OFFSETS = (0x8001, 0x8801, 0x9001, 0x9801)  # ISO 9660 / UDF volume descriptors, 2 KiB apart
_UDF_MARKS = (b"BEA01", b"NSR02", b"NSR03")
_TAR_CHECKSUM = slice(148, 156)
TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"


def _is_pe(data: bytes) -> bool:
    """MZ alone is two letters; a real PE has its 'PE\\0\\0' where e_lfanew (at 0x3C) points."""
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


_SNIFFED: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-dosexec"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xca\xfe\xba\xbe", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"{\\rtf", "application/rtf"),
    (b"BEGIN:VCALENDAR", "text/calendar"),
)


def sniff(data: bytes) -> str | None:
    """The media type its leading bytes name (a MIME leaf's ``detected_type`` in the event),
    or None when nothing distinctive is seen. ``MZ`` counts only for a real PE image."""
    head = data[:16]
    for magic, mtype in _SNIFFED:
        if head.startswith(magic):
            if mtype == "application/x-dosexec" and not _is_pe(data):
                continue
            return mtype
    return None


def container_kind(data: bytes) -> str | None:
    """What a payload is by the signature at its start (or at ISO 9660's fixed offsets).

    An archive family to open with libarchive ('zip', '7z', 'rar', 'cab', 'tar', 'iso',
    'compressed' for a gzip/bzip2/xz/lzma/zstd stream), 'tnef', or one of the
    :data:`UNOPENABLE` image kinds qscan recognises but cannot look inside; None for
    anything else. Only ``data[:MAGIC_HEAD]`` is looked at, so a member's head will do.
    """
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
    if is_tar(data):
        return "tar"
    marks = [data[off : off + 5] for off in _VD_OFFSETS]
    if b"CD001" in marks:
        return "iso"
    if any(m in _UDF_MARKS for m in marks):
        return "udf"
    if head == b"vhdxfile":
        return "vhdx"
    if head == b"conectix":  # a dynamic VHD starts with a copy of its footer
        return "vhd"
    if _compressed(data):
        return "compressed"
    if _disk_image(data):
        return "disk-image"
    return None


# Kinds recognised by signature that nothing in qscan can open (libarchive reads no UDF,
# VHD/VHDX, DMG or FAT/NTFS file system): a finding, never a silent pass.
UNOPENABLE: Final = frozenset({"udf", "vhd", "vhdx", "dmg", "disk-image"})

SFX_WINDOW = 1024 * 1024  # how far into a part a 7z, RAR or CAB signature is looked for
_EOCD_WINDOW = 22 + 0xFFFF  # a zip's end record sits within its comment's reach of the end
_MAX_CANDIDATES = 256  # false signatures examined per kind before the part is called unscannable


@dataclass(frozen=True, slots=True)
class Located:
    """A container inside a payload: its kind and where it starts (0: the payload itself;
    a zip behind a prefix is opened whole, as libarchive's zip reader finds its end record)."""

    kind: str
    offset: int = 0


# Names under which a recipient's archiver (7-Zip, WinRAR: they look past a prefix for the
# signature) opens a file: only these, and executables, are searched for an embedded
# 7z/RAR/CAB signature. A search costs ~1 ms per MiB and signature; a '.pdf' opens in a PDF
# reader, which would never reach a RAR behind junk.
_SEARCHED_EXTENSIONS: Final = frozenset({
    "7z", "rar", "cab", "zip", "jar", "iso", "img", "arj", "lzh", "ace", "r00", "001", "z", "gz", "tar",
    "exe", "dll", "scr", "com", "msi", "bin", "dat",
})


def locate_container(data: bytes, name: str | None = None) -> Located | None:
    """A container anywhere a reader would find it: at the start (``container_kind``), a zip
    whose end-of-central-directory record closes the payload whatever precedes it (SFX stubs,
    junk prefixes), a VHD or DMG footer, and in executables and parts named as archives
    (``name``), a 7z/RAR/CAB signature within the first ``SFX_WINDOW`` bytes (SFX stubs,
    junk or zero prefixes). Embedded signatures count only when the structure around them
    checks out (CRC, header fields), so a stray ``MSCF`` is not an archive. Too many false
    candidates is itself suspicious: kind :data:`UNOPENABLE_SEARCH`."""
    kind = container_kind(data)
    if kind is not None:
        return Located(kind)
    if len(data) < 32:
        return None
    if zip_at_end(data):
        return Located("zip")
    tail = data[-512:]
    if len(data) >= 1024 and tail[:8] == b"conectix":
        return Located("vhd")
    if len(data) >= 1024 and tail[:4] == b"koly":
        return Located("dmg")
    if data[:2] == b"MZ" or (name is not None and name.rsplit(".", 1)[-1].lower() in _SEARCHED_EXTENSIONS):
        return _search_prefix(data)
    return None


UNOPENABLE_SEARCH: Final = "too-many-signatures"


def _search_prefix(data: bytes) -> Located | None:
    window = memoryview(data)[: SFX_WINDOW + 64]
    best: Located | None = None
    for sig, kind, valid in _EMBEDDED:
        start = 1
        for _ in range(_MAX_CANDIDATES):
            pos = data.find(sig, start, SFX_WINDOW)
            if pos < 0:
                break
            if valid(window, pos):
                if best is None or pos < best.offset:
                    best = Located(kind, pos)
                break
            start = pos + 1
        else:
            return Located(UNOPENABLE_SEARCH, 0)
    return best


def _valid_7z(buf: memoryview, pos: int) -> bool:
    head = bytes(buf[pos : pos + 32])
    crc = int.from_bytes(head[8:12], "little")
    return len(head) == 32 and head[6] == 0 and zlib.crc32(head[12:32]) == crc


def _valid_rar(buf: memoryview, pos: int) -> bool:
    head = bytes(buf[pos : pos + 10])
    if head[6:8] == b"\x01\x00":  # RAR 5
        return True
    return head[6:7] == b"\x00" and len(head) == 10 and head[9] == 0x73  # RAR 4: the main header follows


def _valid_cab(buf: memoryview, pos: int) -> bool:
    head = bytes(buf[pos : pos + 36])
    if len(head) < 36:
        return False
    reserved1, size, reserved2, files_at, reserved3 = struct.unpack_from("<IIIII", head, 4)
    minor, major, folders = head[24], head[25], int.from_bytes(head[26:28], "little")
    return (reserved1 == reserved2 == reserved3 == 0 and major == 1 and minor == 3 and folders > 0
            and 36 <= files_at < size)


_EMBEDDED: tuple[tuple[bytes, str, Callable[[memoryview, int], bool]], ...] = (
    (b"7z\xbc\xaf\x27\x1c", "7z", _valid_7z),
    (b"Rar!\x1a\x07", "rar", _valid_rar),
    (b"MSCF\0\0\0\0", "cab", _valid_cab),
)


def zip_at_end(data: bytes, whole: bool = True) -> bool:
    """A zip's end-of-central-directory record near the end of ``data``, with its central
    directory where the record says (so a stray 'PK\\5\\6' is not a zip). ``whole=False``:
    ``data`` is only the last bytes of a payload; the record must then close it exactly, and
    a central directory reaching before those bytes cannot be checked."""
    start = max(0, len(data) - _EOCD_WINDOW)
    pos = data.rfind(b"PK\x05\x06", start)
    while pos >= 0:
        if pos + 22 <= len(data):
            disk, cd_disk, here, total, cd_size, _at, comment = struct.unpack_from("<HHHHIIH", data, pos + 4)
            end = pos + 22 + comment
            if (end <= len(data) if whole else end == len(data)) and total > 0 and here <= total:
                if cd_size == 0xFFFFFFFF or total == 0xFFFF:  # zip64: the locator precedes the record
                    return pos >= 20 and data[pos - 20 : pos - 16] == b"PK\x06\x07"
                cd_start = pos - cd_size
                if disk == cd_disk == 0 and (
                        data[cd_start : cd_start + 4] == b"PK\x01\x02" if cd_start >= 0 else not whole):
                    return True
        pos = data.rfind(b"PK\x05\x06", start, pos)
    return False


def is_tar(data: bytes) -> bool:
    """A tar header first: POSIX/GNU 'ustar' magic, or an old (v7) header whose checksum is
    right. A block of zeros is not a tar (it is how a tar *ends*, and how an ISO begins)."""
    if len(data) < 512:
        return False
    if data[257:262] == b"ustar":
        return True
    field_ = data[_TAR_CHECKSUM].strip(b" \0")
    if not field_ or not data[0] or any(c not in b"01234567" for c in field_):
        return False
    block = data[:512]
    return int(field_, 8) == sum(block) - sum(block[_TAR_CHECKSUM]) + 8 * 32


def _compressed(data: bytes) -> bool:
    """A gzip, bzip2, xz, lzma ('alone') or zstd stream by its header, checked past the magic."""
    head = data[:16]
    if head[:3] == b"\x1f\x8b\x08":
        return len(head) >= 10 and head[3] & 0xE0 == 0
    if head[:3] == b"BZh":
        return len(head) >= 10 and 0x31 <= head[3] <= 0x39 and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")
    if head[:6] == b"\xfd7zXZ\x00":
        return True
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return len(head) >= 5 and head[4] & 0x08 == 0  # the frame header's reserved bit
    if head[:1] == b"\x5d" and len(head) >= 13:
        # lzma 'alone': a dictionary of 2^n or 2^n + 2^(n-1) bytes, a size that is known or -1
        dictionary = int.from_bytes(head[1:5], "little")
        size = int.from_bytes(head[5:13], "little")
        if dictionary < 4096 or (size != 2**64 - 1 and size > 2**40):
            return False
        top = 1 << (dictionary.bit_length() - 1)
        return dictionary in (top, top + (top >> 1))
    return False


def _disk_image(data: bytes) -> bool:
    """A raw disk or floppy image: a boot sector (0x55AA at 510) with a FAT/NTFS/exFAT
    boot record, or a partition table whose entries are sane."""
    if len(data) < 1024 or data[510:512] != b"\x55\xaa":
        return False
    if data[3:11] in (b"NTFS    ", b"EXFAT   ") or data[54:59] == b"FAT12" or data[54:59] == b"FAT16" \
            or data[82:87] == b"FAT32":
        return True
    entries = [data[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    return all(e[0] in (0, 0x80) for e in entries) and any(e[4] for e in entries)


MAGIC_CACHE_SIZE = 1024  # libmagic answers kept per process (keys: 32-byte SHA-256 digests)


class _Magic:
    """One libmagic handle per process: a cookie must not cross a fork. With it, the answers it
    gave, by the SHA-256 of the bytes it was given (a bounded LRU): libmagic's answer is a
    function of those bytes alone, and on text it costs 0.6-3 ms (glibc's regex engine running
    the magic database's text tests), so a payload met again (a logo, a signature, a document
    forwarded around, the same attachment in several messages a worker scans) is asked once."""

    def __init__(self) -> None:
        self._pid = -1
        self._handle: Any = None
        self.broken = False
        self.answers: OrderedDict[bytes, str | None] = OrderedDict()
        self.calls = 0  # libmagic consulted (for the tests and the bench)

    def get(self) -> Any:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._handle = None
            self.answers = OrderedDict()
            try:
                import magic

                self._handle = magic.Magic(mime=True)
            except Exception:  # libmagic missing: record no detected type, decide by signatures
                if not self.broken:
                    log.exception("libmagic unavailable; detected types will be missing")
                self.broken = True
        return self._handle

    def answer(self, handle: Any, given: bytes) -> str | None:
        key = hashlib.sha256(given).digest()
        if key in self.answers:
            self.answers.move_to_end(key)
            return self.answers[key]
        self.calls += 1
        mtype = handle.from_buffer(given)  # an error is not remembered: asked again next time
        result = str(mtype) if mtype else None
        self.answers[key] = result
        if len(self.answers) > MAGIC_CACHE_SIZE:
            self.answers.popitem(last=False)
        return result


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
        return _MAGIC.answer(handle, data[:size])
    except Exception:
        return None
