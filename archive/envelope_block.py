"""The envelope block appended to archived and quarantined copies.

Headers cannot carry the envelope (Bcc recipients, the real bounce sender),
and an auditor reading a maildir has no event log at hand, so the envelope
travels with the file, at the bottom where it does not disturb the message's
own headers or signatures::

    *** qscan Envelope Details Begin ***
    X-Envelope-From: <sender@example.com>
    X-Envelope-To: <rcpt1@example.org>
    X-qscan-Client: 192.0.2.10 host.example.com relay=no
    X-qscan-Event-ID: 0192f1c0-...
    X-qscan-Received: 2026-11-25T10:00:00Z
    *** qscan Envelope Details End ***

Every value here came from a remote party at some point, so control
characters (CR and LF above all) are removed: a crafted address must not be
able to add a line. A message body may itself contain a fake block; tools that
read the block back must take the *last* one, which is always ours.
"""

from __future__ import annotations

import re
import unicodedata

from ingest.event import MessageScanned, utc

BEGIN = "*** qscan Envelope Details Begin ***"
END = "*** qscan Envelope Details End ***"

# Fast path for the usual ASCII value; the Unicode pass below also catches
# NEL, LINE/PARAGRAPH SEPARATOR and other characters some tools treat as breaks.
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BREAKS_AND_CONTROLS = frozenset({"Cc", "Cs", "Zl", "Zp"})


def clean(value: str) -> str:
    """Drop every character that could end or split a line."""
    value = _ASCII_CONTROL.sub("", value)
    if value.isascii():
        return value
    return "".join(c for c in value if unicodedata.category(c) not in _BREAKS_AND_CONTROLS)


def _token(value: str | None, default: str) -> str:
    """One space-free word: the client line is split on spaces by readers."""
    if not value:
        return default
    word = "".join(clean(value).split())
    return word or default


def line_ending(raw: bytes) -> bytes:
    """CRLF if the message's first line ends that way, else LF (qmail's own)."""
    nl = raw.find(b"\n")
    if nl > 0 and raw[nl - 1 : nl] == b"\r":
        return b"\r\n"
    return b"\n"


def envelope_block(event: MessageScanned, eol: bytes | None = None) -> bytes:
    """The block alone, in the message's line ending unless ``eol`` is given."""
    if eol is None:
        eol = line_ending(event.raw_message)
    client = event.client
    lines = [
        BEGIN,
        f"X-Envelope-From: <{clean(event.envelope.sender)}>",
        *(f"X-Envelope-To: <{clean(r)}>" for r in event.envelope.recipients),
        "X-qscan-Client: {} {} relay={}".format(
            _token(client.ip, "local"), _token(client.host, "-"), "yes" if client.relay else "no"
        ),
        f"X-qscan-Event-ID: {_token(event.event_id, '-')}",
        f"X-qscan-Received: {utc(event.time):%Y-%m-%dT%H:%M:%SZ}",
        END,
    ]
    return eol.join(line.encode("utf-8", "replace") for line in lines) + eol


def archived_message(event: MessageScanned) -> bytes:
    """The message as handed to qmail-queue, then the block on a line of its own."""
    raw = event.raw_message
    eol = line_ending(raw)
    sep = eol if raw and not raw.endswith(b"\n") else b""
    return raw + sep + envelope_block(event, eol)
