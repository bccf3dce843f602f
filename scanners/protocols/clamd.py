"""clamd's ``z``-command protocol (``zINSTREAM``, ``zVERSION``), sans-I/O.

``z`` commands end with a NUL and so do clamd's replies, which makes the reply
boundary unambiguous whatever a signature or a file name contains. INSTREAM
sends the data as chunks, each prefixed with its length as a 4-byte big-endian
integer, and a zero length ends the stream. Replies look like::

    stream: OK
    stream: Win.Test.EICAR_HDB-1 FOUND
    stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND   (ExtendedDetectionInfo)
    INSTREAM size limit exceeded. ERROR
    stream: Can't allocate memory ERROR

Signature names are parsed generically (anything before `` FOUND``), so third-party
and unofficial databases (``.UNOFFICIAL`` suffixes, ``Heuristics.*``) need no code.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from scanners.protocols import ProtocolError

CHUNK_SIZE = 64 * 1024
MAX_REPLY = 64 * 1024  # clamd's replies are one line; anything longer is not clamd
_END = b"\0\0\0\0"
_SESSION_ID = re.compile(r"^\d+: ")
_EXTENDED = re.compile(r"^(?P<name>.+)\((?P<hash>[0-9a-fA-F]{32,128}):(?P<size>\d+)\)$")
_VERSION = re.compile(r"^ClamAV (?P<engine>[^/\s]+)(?:/(?P<db>\d+)(?:/(?P<date>.*))?)?$")


def command(name: str) -> bytes:
    """A NUL-terminated ``z`` command, e.g. ``command("VERSION") == b"zVERSION\\0"``."""
    if not name.isascii() or not name.isalpha():
        raise ValueError(f"not a clamd command: {name!r}")
    return b"z" + name.encode("ascii") + b"\0"


def instream(data: bytes, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The byte frames of one INSTREAM scan of ``data``: command, chunks, end marker."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    yield command("INSTREAM")
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        chunk = view[start : start + chunk_size]
        yield struct.pack(">I", len(chunk)) + chunk
    yield _END


@dataclass(frozen=True, slots=True)
class Clean:
    pass


@dataclass(frozen=True, slots=True)
class Found:
    name: str
    hash: str | None = None  # with ExtendedDetectionInfo
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """clamd answered ``... ERROR``: it could not scan what it was given."""

    message: str
    size_limit: bool = False  # ``INSTREAM size limit exceeded``: StreamMaxLength is smaller


Reply = Clean | Found | Failed


def _text(reply: bytes) -> str:
    text = reply.rstrip(b"\0").rstrip(b"\r\n").decode("utf-8", "replace")
    return _SESSION_ID.sub("", text, count=1)


def _subject_removed(body: str) -> str:
    """Drop the ``stream: `` (or ``/path: ``) subject; signature names hold no ``": "``."""
    _, sep, rest = body.rpartition(": ")
    return rest if sep else body


def parse_reply(reply: bytes) -> Reply:
    """One scan reply (with or without its NUL)."""
    text = _text(reply)
    if text.endswith(" FOUND"):
        found = _subject_removed(text[: -len(" FOUND")]).strip()
        if not found:
            raise ProtocolError(f"FOUND without a signature name: {text[:200]!r}")
        m = _EXTENDED.match(found)
        if m:
            return Found(m["name"], m["hash"].lower(), int(m["size"]))
        return Found(found)
    if text.endswith(" ERROR"):
        message = text[: -len(" ERROR")].strip()
        if message.startswith("stream: "):
            message = message[len("stream: ") :]
        return Failed(message, "size limit exceeded" in message.lower())
    if text == "stream: OK" or (text.endswith(": OK") and "\n" not in text):
        return Clean()
    raise ProtocolError(f"unexpected clamd reply: {text[:200]!r}")


@dataclass(frozen=True, slots=True)
class Version:
    engine: str
    database: str | None = None  # the signature database version (daily.cvd), absent without one
    database_date: str | None = None

    @property
    def short(self) -> str:
        """Qmail-Scanner's ``clamdscan: 1.4.6/27000.`` form for the diagnostics header."""
        return f"{self.engine}/{self.database}" if self.database else self.engine


def parse_version(reply: bytes) -> Version:
    """``ClamAV 1.4.6/27000/Tue Nov 24 09:30:02 2026`` (the database part is optional)."""
    text = _text(reply)
    m = _VERSION.match(text)
    if not m:
        raise ProtocolError(f"unexpected VERSION reply: {text[:200]!r}")
    return Version(m["engine"], m["db"], (m["date"] or None) if m["db"] else None)


class ReplyReader:
    """Collects bytes from the socket until clamd's NUL-terminated reply is complete."""

    def __init__(self, limit: int = MAX_REPLY) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> bytes | None:
        """The complete reply (without its NUL) once it has arrived, else None."""
        self._buf += data
        end = self._buf.find(b"\0")
        if end >= 0:
            return bytes(self._buf[:end])
        if len(self._buf) > self._limit:
            raise ProtocolError("clamd reply too long")
        return None

    def eof(self) -> bytes:
        """clamd closed the connection: what it sent is the reply, if it sent anything."""
        if not self._buf.strip():
            raise ProtocolError("clamd closed the connection without a reply")
        return bytes(self._buf)
