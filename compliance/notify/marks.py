"""What a message's own header says about who may be told of it (sans-I/O).

The event's header summary has From/To/Subject but not the headers that mark
list, bulk and automatic mail, so the notify consumer reads the header block of
the raw message — only the header block, and only for the few events that may
produce a notice. Everything here takes bytes and returns values; the journal
lookup lives in sink.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_HEADER_BLOCK = 256 * 1024
# Mailing-list managers (Mailman, ezmlm, Sympa, listserv) and bulk senders set these.
LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailing-List")
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
# Set on every notification qscan sends: a notice about a notice would loop.
NOTIFICATION_HEADER = "X-qscan-Notification"

_END = re.compile(rb"\r?\n\r?\n")
_COMMENT = re.compile(r"\([^()]*\)")


def header_block(raw: bytes, limit: int = MAX_HEADER_BLOCK) -> bytes:
    """The header block of ``raw`` (up to the first empty line), at most ``limit`` bytes."""
    head = raw[:limit]
    m = _END.search(head)
    return head[: m.start()] + b"\n" if m else head


def _token(value: str) -> str:
    """The first word of a structured value, comments and parameters removed, lowercased."""
    for _ in range(5):  # nested comments, bounded
        value = _COMMENT.sub(" ", value)
    return value.split(";", 1)[0].strip().lower().split(" ", 1)[0] if value.strip() else ""


@dataclass(frozen=True, slots=True)
class MailMarks:
    """The markers that decide whether the sender of a message may be answered."""

    list_headers: tuple[str, ...] = ()
    precedence: str = ""
    auto_submitted: str | None = None
    notification: bool = False

    @property
    def is_list(self) -> bool:
        return bool(self.list_headers)

    @property
    def is_bulk(self) -> bool:
        return self.precedence in BULK_PRECEDENCE

    @property
    def is_automatic(self) -> bool:
        """RFC 3834: any Auto-Submitted value but ``no`` (an empty one too) means no reply."""
        return self.auto_submitted is not None and self.auto_submitted != "no"

    def silence_reason(self) -> str | None:
        """Why the sender must not be answered, or None."""
        if self.notification:
            return f"a qscan notification ({NOTIFICATION_HEADER})"
        if self.is_list:
            return f"mailing-list mail ({self.list_headers[0]})"
        if self.is_bulk:
            return f"bulk mail (Precedence: {self.precedence})"
        if self.is_automatic:
            return f"automatic mail (Auto-Submitted: {self.auto_submitted or '(empty)'})"
        return None


def read_marks(block: bytes) -> MailMarks:
    """Parse a header block (any bytes: malformed headers are read as far as they go)."""
    msg = BytesHeaderParser(policy=compat32).parsebytes(block)
    present = {str(k).lower() for k in msg}

    def first(name: str) -> str | None:
        value = msg.get(name)
        return None if value is None else str(value)

    auto = first("Auto-Submitted")
    return MailMarks(
        list_headers=tuple(h for h in LIST_HEADERS if h.lower() in present),
        precedence=_token(first("Precedence") or ""),
        auto_submitted=None if auto is None else _token(auto),
        notification=NOTIFICATION_HEADER.lower() in present,
    )
