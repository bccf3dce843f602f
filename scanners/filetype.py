"""Content sniffing by magic bytes: what a part *is*, whatever it claims to be."""

from __future__ import annotations

_MAGIC: tuple[tuple[bytes, str], ...] = (
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
    """The detected media type, or None when nothing distinctive is seen."""
    head = data[:16]
    for magic, mtype in _MAGIC:
        if head.startswith(magic):
            if mtype == "application/x-dosexec" and not _is_pe(data):
                continue
            return mtype
    return None


def _is_pe(data: bytes) -> bool:
    """MZ alone is two letters; a real PE has its 'PE\\0\\0' where e_lfanew points."""
    if len(data) < 0x40:
        return False
    off = int.from_bytes(data[0x3C:0x40], "little")
    return 0 < off < len(data) - 4 and data[off : off + 4] == b"PE\0\0"
