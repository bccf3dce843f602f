"""Time-ordered unique ids (UUIDv7, RFC 9562) for events.

Python 3.11 has no ``uuid.uuid7``; this is the RFC's method 1: a 48-bit Unix
millisecond timestamp, then a 12-bit counter seeded randomly each millisecond
(monotonic within a process), then 62 random bits.
"""

from __future__ import annotations

import os
import time
import uuid

_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms = ms
        _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF  # leave room to count up
    else:
        ms = _last_ms
        _counter += 1
        if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            ms = _last_ms
            _counter = 0
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_time(u: uuid.UUID | str) -> float:
    """The Unix time (seconds) embedded in a UUIDv7."""
    value = uuid.UUID(str(u)).int
    return (value >> 80) / 1000.0
