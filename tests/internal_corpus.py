"""Hostile and malformed test messages for the internal scanner, built in code.

One message per format check (``FORMAT_CASES``: name -> (message, check it must trip)),
plus builders for archives: nested zips, zip bombs, encrypted zips, TNEF, uuencode.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import tarfile
import zipfile

from ingest.mime import walk_parts
from scanners.base import ScanContext
from scanners.mime.parse import parse

HEAD = (b"From: alice@example.com\nTo: bob@example.org\nSubject: test\n"
        b"Message-ID: <t1@example.com>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n")
TEXT_PART = b"Content-Type: text/plain; charset=us-ascii\n\nHello.\n"


def multipart(*parts: bytes, boundary: bytes = b"=_b1", head: bytes = HEAD,
              subtype: bytes = b"mixed") -> bytes:
    out = head + b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\n\n'
    out += b"This is a multi-part message in MIME format.\n"
    for p in parts:
        out += b"--" + boundary + b"\n" + p
        if not p.endswith(b"\n"):
            out += b"\n"
    return out + b"--" + boundary + b"--\n"


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def attachment(name: str | bytes, data: bytes, ctype: bytes = b"application/octet-stream",
               extra: bytes = b"") -> bytes:
    n = name.encode() if isinstance(name, str) else name
    return (b"Content-Type: " + ctype + b'; name="' + n + b'"\nContent-Transfer-Encoding: base64\n'
            b'Content-Disposition: attachment; filename="' + n + b'"\n' + extra + b"\n" + b64(data))


def pe_bytes(size: int = 512) -> bytes:
    """A minimal PE image: MZ header whose e_lfanew points at 'PE\\0\\0'."""
    head = bytearray(b"MZ" + b"\x90" * 0x3A)
    head += struct.pack("<I", 0x40)
    head += b"PE\0\0" + b"\x4c\x01" + b"\0" * 18
    head += b"This program cannot be run in DOS mode.\r\n"
    return bytes(head).ljust(size, b"\0")


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 120


def zip_bytes(members: dict[str, bytes], compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def nested_zip(levels: int, inner: dict[str, bytes] | None = None) -> bytes:
    """``levels`` zips, each holding the next (level-N.zip), the innermost holding ``inner``."""
    data = zip_bytes(inner or {"payload.txt": b"deep inside\n"})
    for level in range(levels - 1, 0, -1):
        data = zip_bytes({f"level-{level + 1}.zip": data})
    return data


def encrypted_zip(members: dict[str, bytes]) -> bytes:
    """A zip whose members carry the 'encrypted' flag (general purpose bit 0), as a
    password-protected archive does; the content itself is stored, not enciphered."""
    data = bytearray(zip_bytes(members, zipfile.ZIP_STORED))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos >= 0:
            flags = struct.unpack_from("<H", data, pos + flag_at)[0]
            struct.pack_into("<H", data, pos + flag_at, flags | 1)
            pos = data.find(sig, pos + 4)
    return bytes(data)


def tnef_bytes(attachments: dict[str, bytes]) -> bytes:
    """A TNEF (winmail.dat) stream with the given attachments (title + data attributes)."""

    def attr(level: int, attr_id: int, attr_type: int, payload: bytes) -> bytes:
        checksum = sum(payload) & 0xFFFF
        return (bytes([level]) + struct.pack("<I", attr_id | (attr_type << 16))
                + struct.pack("<I", len(payload)) + payload + struct.pack("<H", checksum))

    out = struct.pack("<I", 0x223E9F78) + struct.pack("<H", 0x0001)
    out += attr(1, 0x9006, 0x0009, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += attr(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # attOemCodepage
    for name, data in attachments.items():
        out += attr(2, 0x9002, 0x0006, b"\0" * 14)  # attAttachRendData: a new attachment
        out += attr(2, 0x8010, 0x0001, name.encode() + b"\0")  # attAttachTitle
        out += attr(2, 0x800F, 0x0006, data)  # attAttachData
    return out


def uuencoded(name: str, data: bytes) -> bytes:
    lines = [b"begin 644 " + name.encode()]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i : i + 45]).rstrip(b"\n"))
    lines += [b"`", b"end"]
    return b"\n".join(lines) + b"\n"


def context(raw: bytes, sender: str = "alice@example.com", recipients: list[str] | None = None,
            client_ip: str | None = "192.0.2.10", relay: bool = False) -> ScanContext:
    """What the processor hands a scanner for this message."""
    msg = parse(raw)
    _meta, parts, _defects = walk_parts(msg)
    return ScanContext(raw=raw, message=msg, parts=parts, sender=sender,
                       recipients=recipients or ["bob@example.org"], client_ip=client_ip, relay=relay,
                       size=len(raw), max_size=50 * 1024 * 1024)


CLSID = "{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}"

FORMAT_CASES: dict[str, tuple[bytes, str]] = {
    "continuation-unindented-param": (multipart(
        TEXT_PART,
        b'Content-Type: application/octet-stream;\nname="evil.exe"\nContent-Transfer-Encoding: base64\n\n'
        + b64(b"data"),
    ), "broken-continuation"),
    "continuation-orphan": (multipart(
        TEXT_PART, b" continued from nothing\nContent-Type: text/plain\n\nx\n",
    ), "broken-continuation"),
    "control-bare-cr": (multipart(
        TEXT_PART, b"Content-Type: text/plain\rContent-Type: application/x-msdownload\n\nx\n",
    ), "header-control-chars"),
    "control-nul": (multipart(
        TEXT_PART, attachment("a.txt", b"x", extra=b'Content-Description: a\0b\n'),
    ), "header-control-chars"),
    "comment-in-name": (multipart(
        TEXT_PART, b"Content-T(xxx)ype: application/octet-stream\n\nx\n",
    ), "header-comment"),
    "comment-in-token": (multipart(
        TEXT_PART, b"Content-Type: application/(hide)octet-stream\n\nx\n",
    ), "header-comment"),
    "repeated-content-type": (multipart(
        TEXT_PART,
        b'Content-Type: text/plain\nContent-Type: application/octet-stream; name="x.dat"\n\nx\n',
    ), "repeated-mime-header"),
    "boundary-too-long": (multipart(TEXT_PART, boundary=b"b" * 251), "boundary-too-long"),
    "boundary-reused": (multipart(
        TEXT_PART,
        b'Content-Type: multipart/alternative; boundary="=_b1"\n\n--=_b1\n' + TEXT_PART,
    ), "boundary-reused"),
    "broken-part-header": (multipart(
        TEXT_PART, b"Content-Type: text/plain\nthis line is no header\n\nbody\n",
    ), "broken-part-header"),
    "filename-too-long": (multipart(TEXT_PART, attachment("a" * 300 + ".txt", b"x")), "filename-too-long"),
    "filename-mismatch": (multipart(
        TEXT_PART,
        b'Content-Type: application/pdf; name="report.pdf"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: attachment; filename="report.exe"\n\n' + b64(b"%PDF-1.4\n"),
    ), "filename-mismatch"),
    "filename-mismatch-rfc2231": (multipart(
        TEXT_PART,
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=\"report.pdf\"; filename*=utf-8''report.scr\n\n"
        + b64(b"%PDF-1.4\n"),
    ), "filename-mismatch"),
    "exe-as-gif": (multipart(TEXT_PART, attachment("notepad.gif", pe_bytes(), b"image/gif")),
                   "executable-disguised"),
    "exe-named-gif": (multipart(TEXT_PART, attachment("notepad.gif", pe_bytes())), "executable-disguised"),
    "elf-as-text": (multipart(TEXT_PART, attachment("notes", ELF, b"text/plain")), "executable-disguised"),
    "script-as-text": (multipart(TEXT_PART, attachment("readme.txt", b"#!/bin/sh\nrm -rf ~\n", b"text/plain")),
                       "executable-disguised"),
    "wav-exe": (multipart(TEXT_PART, attachment("wav.exe", b"RIFF....WAVE", b"audio/wav")),
                "executable-media-type"),
    "double-extension": (multipart(TEXT_PART, attachment("invoice.pdf.exe", b"MZ")), "double-extension"),
    "double-extension-padded": (multipart(TEXT_PART, attachment("photo.jpg   .scr", b"x")), "double-extension"),
    "clsid": (multipart(TEXT_PART, attachment("file.txt." + CLSID, b"x")), "clsid-extension"),
    "password-zip": (multipart(TEXT_PART, attachment("secret.zip", encrypted_zip({"a.dat": b"MZ" * 20}),
                                                     b"application/zip")), "password-protected-archive"),
    "banned-extension": (multipart(TEXT_PART, attachment("screensaver.scr", b"x")), "banned-extension"),
    "executable-content": (multipart(TEXT_PART, attachment("data.bin", pe_bytes())), "executable-content"),
    "unreadable-zip": (multipart(TEXT_PART, attachment("broken.zip", b"PK\x03\x04" + b"\xff" * 60,
                                                       b"application/zip")), "archive-unreadable"),
}

# Harmless mail that must trip nothing.
CLEAN_CASES: dict[str, bytes] = {
    "plain": HEAD + b"Content-Type: text/plain\n\nHi.\n",
    "harmless-names": multipart(
        TEXT_PART, attachment("report.2024.pdf", b"%PDF-1.4\n", b"application/pdf"),
        attachment("archive.tar.gz", tar_gz({"docs/readme.txt": b"read me\n"}), b"application/gzip"),
        attachment("notes-1.2.txt", b"version 1.2\n", b"text/plain"),
        attachment("Invoice(1).PDF", b"%PDF-1.4\n", b"application/pdf"),
    ),
    "comments-where-allowed": multipart(
        b"Content-Type: text/plain; charset=us-ascii (Plain text)\n\nx\n",
        head=HEAD.replace(b"MIME-Version: 1.0", b"MIME-Version: 1.0 (Apple Message framework v1283)"),
    ),
    "same-name-different-case": multipart(
        TEXT_PART,
        b'Content-Type: application/pdf; name="Report.PDF"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: attachment; filename="report.pdf"\n\n' + b64(b"%PDF-1.4\n"),
    ),
    "shell-script-in-body": HEAD + b"Content-Type: text/plain\n\n#!/bin/sh\necho this is how\n",
    "crlf": (HEAD + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n' + TEXT_PART
             + b"--b--\n").replace(b"\n", b"\r\n"),
}
