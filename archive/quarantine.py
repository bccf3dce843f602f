"""Quarantined copies as the release and show commands need them (sans-I/O; ``read_copy``, the
no-follow read shared with the archive, is ``archive.copies.read_copy``).

A release hands qmail-queue the message exactly as it was first queued - the
stored copy without its envelope block, proven by its SHA-256 - with one header
on top saying that it was released, by whom and why::

    X-Qmail-Scanner-Diagnostics: released from quarantine/spam by alice@mx1.example.com
        on 02 Dec 2026 14:00:00 -0000 (release 0193..., message 0192...); reason: false positive

The sender and recipients come from the copy's envelope block (what qmail
handed over), unless the administrator names the recipients (``--to``).
Everything in the header is cleaned of control and line-break characters: a
reason typed on the command line cannot add a header line either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from archive.copies import check_copy, message_of, read_copy, split_copy
from archive.envelope_block import clean, line_ending
from compliance.copystore import CopyError, MessageFacts
from compliance.quarantine import Prepared, Stamp
from ingest.headers import fold, rfc2822_date
from scanners.text import one_line

RELEASE_HEADER = "X-Qmail-Scanner-Diagnostics"
MAX_ADDRESS = 320
# local@domain: no whitespace, controls, NUL or brackets; the domain a dotted name
# or an address literal. qmail-queue itself accepts nearly anything, so this is
# where a mistyped --to is caught before mail goes out.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"\\@]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])")


def check_address(value: str) -> str:
    """A --to address as qmail wants it (no angle brackets); ValueError when unusable."""
    address = value.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    if not address or len(address) > MAX_ADDRESS or address.startswith("-") \
            or not address.isascii() or _ADDRESS.fullmatch(address) is None:
        raise ValueError(f"not a usable recipient address (local@domain): {value!r}")
    return address


def release_header(stamp: Stamp, eol: bytes = b"\n") -> bytes:
    """The header line(s) added on top of a released message, folded, in ``eol`` endings."""
    reason = clean(one_line(stamp.reason, 300)) or "-"
    value = (f"released from quarantine/{clean(one_line(stamp.folder, 32))} by "
             f"{clean(one_line(stamp.actor, 100))} on {rfc2822_date(stamp.time.timestamp())} "
             f"(release {one_line(stamp.release_id, 36)}, message {one_line(stamp.ref_event_id, 36)}); "
             f"reason: {reason}")
    return fold(RELEASE_HEADER, value, eol)


def prepare_release(data: bytes, facts: MessageFacts, stamp: Stamp,
                    to: Sequence[str] | None = None) -> Prepared:
    """The message and envelope to queue from a stored copy (``CopyError`` if it is not intact)."""
    problem = check_copy(data, facts)
    if problem:
        raise CopyError(f"the quarantined copy of {facts.event_id} does not match its record "
                        f"({problem}): not released; run `qscan verify`")
    parsed = split_copy(data)
    message = message_of(data, facts.raw_sha256)
    sender = parsed.envelope_from or ""
    recipients = [check_address(a) for a in to] if to else list(parsed.envelope_to)
    if not recipients:
        raise CopyError(f"the quarantined copy of {facts.event_id} names no recipients: "
                        "give them with --to")
    return Prepared(release_header(stamp, line_ending(message)) + message, sender, recipients)


# Control characters a hostile header could use to drive the operator's terminal (ESC, BEL,
# backspace, C1 controls...): shown as \xNN instead. Tab stays.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def header_lines(message: bytes) -> list[str]:
    """The header section as text lines (continuations kept), for display only: control
    characters are escaped, so printing them is safe on a terminal."""
    eol = line_ending(message)
    head, _, _ = message.partition(eol + eol)
    return [_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", line)
            for line in head.decode("utf-8", "replace").split(eol.decode())]


__all__ = ["check_address", "header_lines", "prepare_release", "read_copy", "release_header"]
