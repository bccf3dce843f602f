"""The one-line summary of a message: for syslog/a file and the SQL ``summary`` column.

Qmail-Scanner's log line, made parseable: space-separated ``key=value`` fields,
values with spaces double-quoted, control characters stripped, every field
bounded so one hostile message cannot flood the log.
"""

from __future__ import annotations

import re

from ingest.event import MessageScanned
from scanners.text import one_line

MAX_FIELD = 200
MAX_RECIPIENTS = 20
MAX_ATTACHMENTS = 20


def clean(value: str | None, limit: int = MAX_FIELD) -> str:
    """A summary-line field: ``one_line``, cut to ``limit`` with "..." (the log's own bound)."""
    return one_line(value, limit, ellipsis="...")


_NEEDS_QUOTES = re.compile(r'[ "\\]')


def _q(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attachment_list(event: MessageScanned) -> list[str]:
    return [clean(p.filename, 100) for p in event.parts if p.filename]


def format_summary(event: MessageScanned) -> str:
    rcpts = event.envelope.recipients
    shown = [clean(r, 100) for r in rcpts[:MAX_RECIPIENTS]]
    if len(rcpts) > MAX_RECIPIENTS:
        shown.append(f"+{len(rcpts) - MAX_RECIPIENTS}more")
    atts = [
        f"{clean(p.filename, 100)}:{p.size}" for p in event.parts if p.filename
    ][:MAX_ATTACHMENTS]
    client = event.client
    fields = [
        ("event", event.event_id),
        ("action", event.action.value),
        ("category", event.category.value),
        ("reason", clean(event.reason, 100)),
        ("client", clean(client.ip or "local", 64)),
        ("relay", "yes" if client.relay else "no"),
        ("from", "<" + clean(event.envelope.sender, 200) + ">"),
        ("to", ",".join(shown)),
        ("size", str(event.size)),
        ("subject", clean(event.headers.subject)),
        ("msgid", clean(event.headers.message_id, 200)),
        ("attachments", ",".join(atts)),
        ("time", f"{event.timings.total_ms / 1000:.3f}s"),
    ]
    if event.crypto is not None:  # absent only from the lines of events that predate it
        fields.insert(-1, ("crypto", ",".join(clean(c, 32) for c in event.crypto[:8])))
    if event.spam_score is not None:
        fields.insert(4, ("spam", f"{event.spam_score:.1f}"))
    return " ".join(f"{k}={_q(v)}" for k, v in fields)
