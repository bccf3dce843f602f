"""Sans-I/O codec for the qscan-queue <-> daemon protocol (``QSCAN/1``).

Every frame is ``type (1 byte) | length (4 bytes, big-endian) | payload``.
Client to daemon, in this order::

    H  b"QSCAN/1"                      hello, exactly once, first
    A  b"NAME=value"                   one per passed environment variable (0..64, 16 KiB in all)
    M  message bytes                   any number of non-empty chunks (<= 1 MiB each), fd 0 as read
    V  envelope bytes                  exactly once, fd 1 as read (<= 1 MiB, validated)
    Q  b""                             end of request

Daemon to client, once::

    R  b"<exit code>" [b"\\n" b"D<text>" | b"Z<text>"]

The daemon answers only after the message was durably handled; a connection
that closes without an ``R`` frame means "temporary failure" to the client.

Only the standard library may be imported here: ``qscan-queue`` uses it.
"""

from __future__ import annotations

import struct

PROTOCOL = b"QSCAN/1"
HEADER = struct.Struct(">cI")
MAX_CHUNK = 1 << 20
MAX_CONTROL = 64 * 1024  # any non-M frame
MAX_ATTRS = 64  # attribute frames per request (repeated names count)
MAX_ATTR_BYTES = 16 * 1024  # all attribute payloads of a request together

HELLO = b"H"
ATTR = b"A"
MESSAGE = b"M"
ENVELOPE = b"V"
END = b"Q"
RESULT = b"R"
KNOWN = frozenset([HELLO, ATTR, MESSAGE, ENVELOPE, END, RESULT])


class ProtocolError(ValueError):
    """The peer sent something the protocol does not allow."""


class EnvelopeTooLarge(ProtocolError):
    """The envelope is over MAX_CHUNK: a permanent condition (the same envelope will not shrink
    on a retry), answered with a permanent failure rather than a dropped connection."""


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def encode_result(code: int, text: str | None = None) -> bytes:
    body = str(int(code)).encode()
    if text:
        body += b"\n" + text.encode("utf-8", "replace")
    return encode(RESULT, body)


def decode_result(payload: bytes) -> tuple[int, str | None]:
    head, sep, text = payload.partition(b"\n")
    try:
        code = int(head)
    except ValueError as exc:
        raise ProtocolError("bad result code") from exc
    if not 0 <= code <= 255:
        raise ProtocolError("result code out of range")
    return code, (text.decode("utf-8", "replace") if sep else None)


class FrameDecoder:
    """Incremental decoder: feed bytes, get complete ``(kind, payload)`` frames."""

    def __init__(self, max_chunk: int = MAX_CHUNK) -> None:
        self._buf = bytearray()
        self._max_chunk = max_chunk

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out: list[tuple[bytes, bytes]] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while n - pos >= 5:
            kind, length = HEADER.unpack_from(buf, pos)
            if kind not in KNOWN:
                raise ProtocolError(f"unknown frame type {kind!r}")
            limit = self._max_chunk if kind in (MESSAGE, ENVELOPE) else MAX_CONTROL
            if length > limit:
                if kind == ENVELOPE:
                    raise EnvelopeTooLarge(f"envelope too large ({length} bytes, at most {limit})")
                raise ProtocolError(f"frame {kind!r} too large ({length} bytes)")
            if n - pos - 5 < length:
                break
            out.append((kind, bytes(buf[pos + 5 : pos + 5 + length])))
            pos += 5 + length
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


class RequestAssembler:
    """Validates frame order on the daemon side and collects one request."""

    def __init__(self, max_message: int, keep: bool = True) -> None:
        """``keep=False``: only count and check the message chunks; the caller stores them."""
        self.max_message = max_message
        self.keep = keep
        self.attrs: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.oversized = False
        self.envelope: bytes | None = None
        self.done = False
        self._hello = False
        self._attr_frames = 0
        self._attr_bytes = 0

    def add(self, kind: bytes, payload: bytes) -> None:
        if self.done:
            raise ProtocolError("frame after end of request")
        if not self._hello:
            if kind != HELLO or payload != PROTOCOL:
                raise ProtocolError("expected hello QSCAN/1")
            self._hello = True
            return
        if kind == ATTR:
            if self.chunks or self.envelope is not None:
                raise ProtocolError("attribute after message data")
            self._attr_frames += 1
            self._attr_bytes += len(payload)
            if self._attr_frames > MAX_ATTRS:
                raise ProtocolError("too many attributes")
            if self._attr_bytes > MAX_ATTR_BYTES:
                raise ProtocolError(f"attributes over {MAX_ATTR_BYTES} bytes")
            name, sep, value = payload.partition(b"=")
            if not sep or not name:
                raise ProtocolError("attribute without NAME=")
            self.attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
        elif kind == MESSAGE:
            if self.envelope is not None:
                raise ProtocolError("message data after envelope")
            if not payload:  # no client sends one; each would cost the receiver for nothing
                raise ProtocolError("empty message frame")
            self.size += len(payload)
            if self.size > self.max_message:
                self.oversized = True  # keep draining, keep nothing
                self.chunks.clear()
            elif self.keep:
                self.chunks.append(payload)
        elif kind == ENVELOPE:
            if self.envelope is not None:
                raise ProtocolError("second envelope")
            self.envelope = payload
        elif kind == END:
            if self.envelope is None:
                raise ProtocolError("end without envelope")
            self.done = True
        else:
            raise ProtocolError(f"unexpected frame {kind!r}")

    def message(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = [data]  # keep one copy, not two
        return data
