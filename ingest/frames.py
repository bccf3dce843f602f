"""Sans-I/O codec for the qscan-queue <-> daemon protocol (``QSCAN/1``).

Every frame is ``type (1 byte) | length (4 bytes, big-endian) | payload``.
Client to daemon, in this order::

    H  b"QSCAN/1"                      hello, exactly once, first
    A  b"NAME=value"                   one per passed environment variable (0..64, 16 KiB in all)
    M  message bytes                   any number of non-empty chunks (<= 1 MiB each), fd 0 as read
    V  envelope bytes                  exactly once, fd 1 as read (<= 1 MiB, validated)
    Q  b""                             end of request

Daemon to client, once, one of::

    R  b"<exit code>" [b"\\n" b"D<text>" | b"Z<text>"]     the final answer
    X  b"<size> <timeout ms>" + one descriptor (SCM_RIGHTS)  "queue this": the final message,
                                                          ``size`` bytes in a memfd

After an ``X`` the client runs the real qmail-queue itself (message from the
descriptor on fd 0, its own envelope on fd 1) and reports, once::

    S  b"<qmail-queue's exit code>" [b"\\n" <its fd 6 text>]

The daemon answers only after the message was durably handled (its event is in
the journal); a connection that closes without an ``R`` or ``X`` frame means
"temporary failure" to the client. docs/protocol.md has the whole contract.

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
HANDOFF = b"X"  # daemon -> client: queue the message in the descriptor that comes with it
STATUS = b"S"  # client -> daemon, after X: what qmail-queue answered
KNOWN = frozenset([HELLO, ATTR, MESSAGE, ENVELOPE, END, RESULT, HANDOFF, STATUS])
MAX_HANDOFF_TIMEOUT_MS = 10**10  # the largest qmail-queue timeout an X frame may carry (115 days)


class ProtocolError(ValueError):
    """The peer sent something the protocol does not allow."""


class EnvelopeTooLarge(ProtocolError):
    """The envelope is over MAX_CHUNK: a permanent condition (the same envelope will not shrink
    on a retry), answered with a permanent failure rather than a dropped connection."""


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def encode_result(code: int, text: str | None = None, errors: str = "replace") -> bytes:
    body = str(int(code)).encode()
    if text:
        body += b"\n" + text.encode("utf-8", errors)
    return encode(RESULT, body)


def decode_result(payload: bytes, errors: str = "replace") -> tuple[int, str | None]:
    """``(code, text)`` of an ``R`` (or ``S``) body. The code is 1-3 ASCII digits, 0-255, and
    nothing else (the native client reads it the same way). ``errors="surrogateescape"``
    keeps the text's bytes as they came (the clients write them to fd 6 unchanged)."""
    head, sep, text = payload.partition(b"\n")
    if not head or len(head) > 3 or not head.isdigit() or not head.isascii():
        raise ProtocolError("bad result code")
    code = int(head)
    if code > 255:
        raise ProtocolError("result code out of range")
    return code, (text.decode("utf-8", errors) if sep else None)


def encode_handoff(size: int, timeout: float) -> bytes:
    """The ``X`` frame: the final message is ``size`` bytes in the descriptor sent with it; the
    client gives qmail-queue ``timeout`` seconds (at least 1 ms) before it kills it."""
    ms = min(max(1, int(timeout * 1000)), MAX_HANDOFF_TIMEOUT_MS)
    return encode(HANDOFF, b"%d %d" % (size, ms))


def _digits(b: bytes, most: int) -> int:
    if not b or len(b) > most or not b.isdigit() or not b.isascii():
        raise ProtocolError("bad number in hand-off")
    return int(b)


def decode_handoff(payload: bytes) -> tuple[int, float]:
    """(message size, qmail-queue timeout in seconds) of an ``X`` frame; strict."""
    size, sep, ms = payload.partition(b" ")
    if not sep:
        raise ProtocolError("hand-off without timeout")
    n, t = _digits(size, 19), _digits(ms, 11)
    if t < 1 or t > MAX_HANDOFF_TIMEOUT_MS:
        raise ProtocolError("hand-off timeout out of range")
    return n, t / 1000


def encode_status(code: int, text: str | None = None) -> bytes:
    """The ``S`` frame: qmail-queue's exit code and its fd 6 text (as a result frame's body)."""
    return STATUS + encode_result(code, text, "surrogateescape")[1:]


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
