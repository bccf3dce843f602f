"""Sans-I/O parser for the qmail-queue envelope (what qmail hands over on fd 1).

Format: ``F<sender>\\0`` then ``T<recipient>\\0`` per recipient, then one more ``\\0``.
The sender may be empty (bounces). Anything else - EOF before the final NUL, a
recipient without ``T``, no recipients, bytes after the terminator - is an
envelope format error (qmail-queue exit 91).

Only the standard library may be imported here: ``qscan-queue`` uses it.
"""

from __future__ import annotations

MAX_ADDRESS = 1000  # qmail itself has no hard limit; 1000 is far beyond RFC 5321's 256


class EnvelopeError(ValueError):
    """The envelope bytes do not follow the qmail-queue format."""


class EnvelopeTruncated(EnvelopeError):
    """EOF before the final NUL: the writer aborted (qmail-queue's exit 91, temporary to qmail).
    Every other format error is in a complete envelope and fails the same way on every retry."""


class AddressTooLong(EnvelopeError):
    """An address exceeds MAX_ADDRESS bytes (qmail-queue exit 11)."""


class Envelope:
    """A parsed envelope. ``raw`` is kept byte-exact for the real qmail-queue."""

    __slots__ = ("raw", "recipients", "sender")

    def __init__(self, sender: bytes, recipients: list[bytes], raw: bytes) -> None:
        self.sender = sender
        self.recipients = recipients
        self.raw = raw

    def __repr__(self) -> str:
        return f"Envelope(sender={self.sender!r}, recipients={self.recipients!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Envelope) and other.raw == self.raw


def parse_envelope(data: bytes) -> Envelope:
    """Parse a complete envelope; raise EnvelopeError on any deviation."""
    if not data:
        raise EnvelopeTruncated("empty envelope")
    if not data.startswith(b"F"):
        raise EnvelopeError("envelope does not start with F")
    end = data.find(b"\0")
    if end < 0:
        raise EnvelopeTruncated("sender not NUL-terminated")
    sender = data[1:end]
    if len(sender) > MAX_ADDRESS:
        raise AddressTooLong("sender address too long")
    recipients: list[bytes] = []
    pos = end + 1
    n = len(data)
    while True:
        if pos >= n:
            raise EnvelopeTruncated("EOF before the final NUL")
        if data[pos] == 0:  # the terminator
            if pos + 1 != n:
                raise EnvelopeError("bytes after the final NUL")
            break
        if data[pos] != 0x54:  # 'T'
            raise EnvelopeError("recipient does not start with T")
        end = data.find(b"\0", pos)
        if end < 0:
            raise EnvelopeTruncated("recipient not NUL-terminated")
        rcpt = data[pos + 1 : end]
        if not rcpt:
            raise EnvelopeError("empty recipient")
        if len(rcpt) > MAX_ADDRESS:
            raise AddressTooLong("recipient address too long")
        recipients.append(rcpt)
        pos = end + 1
    if not recipients:
        raise EnvelopeError("no recipients")
    return Envelope(sender, recipients, data)


def build_envelope(sender: bytes, recipients: list[bytes]) -> bytes:
    """Serialize an envelope (used for re-injection and tests)."""
    if not recipients:
        raise EnvelopeError("no recipients")
    for addr in [sender, *recipients]:
        if b"\0" in addr:
            raise EnvelopeError("NUL inside an address")
    return b"F" + sender + b"\0" + b"".join(b"T" + r + b"\0" for r in recipients) + b"\0"
