"""rspamd's ``/checkv2`` HTTP protocol, sans-I/O: request headers and the JSON reply.

The message is POSTed as the body; the SMTP context travels in headers (``IP``,
``Helo``, ``From``, one ``Rcpt`` per recipient, ``Queue-Id``, ``User`` for an
authenticated sender). The reply is JSON::

    {"is_skipped": false, "score": 15.0, "required_score": 15.0, "action": "reject",
     "symbols": {"GTUBE": {"name": "GTUBE", "score": 0.0}}, "messages": {...},
     "subject": "[SPAM] original"}                     (for "rewrite subject")

Header values come from mail and the environment, so they are sanitised here:
no CR/LF or other control character ever reaches the HTTP stream.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from scanners.protocols import ProtocolError
from scanners.text import one_line

PATH = "/checkv2"
ACTIONS = frozenset({
    "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject",
    "discard", "quarantine",
})
SPAM_ACTIONS = frozenset({"add header", "rewrite subject", "reject", "discard", "quarantine"})
_SERVER = re.compile(r"rspamd/(?P<ver>[0-9][0-9A-Za-z.\-+]*)")
MAX_RCPT = 1000


def _value(text: str | bytes | None, limit: int = 998) -> bytes:
    value = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
    return one_line(value).encode("utf-8", "surrogateescape")[:limit]


def request_headers(
    *,
    ip: str | None = None,
    helo: str | None = None,
    sender: str | bytes | None = None,
    recipients: Sequence[str | bytes] = (),
    queue_id: str | None = None,
    user: str | None = None,
    hostname: str | None = None,
    password: str | None = None,
) -> list[tuple[str, bytes]]:
    """Headers for ``POST /checkv2``, one ``Rcpt`` per recipient, values sanitised."""
    out: list[tuple[str, bytes]] = []
    single: tuple[tuple[str, str | None], ...] = (
        ("IP", ip), ("Helo", helo), ("Queue-Id", queue_id), ("User", user),
        ("MTA-Name", hostname), ("Password", password),
    )
    for name, value in single:
        v = _value(value)
        if v:
            out.append((name, v))
    if sender is not None:
        # the null sender (bounces) is spelled <> so rspamd sees an empty MAIL FROM
        out.append(("From", _value(sender) or b"<>"))
    for rcpt in list(recipients)[:MAX_RCPT]:
        v = _value(rcpt)
        if v:
            out.append(("Rcpt", v))
    return out


@dataclass(frozen=True, slots=True)
class Reply:
    action: str
    score: float
    required_score: float
    symbols: dict[str, float] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    subject: str | None = None
    skipped: bool = False

    @property
    def spam(self) -> bool:
        """rspamd's own opinion: an action that marks or refuses the message."""
        return self.action in SPAM_ACTIONS


def _number(obj: dict[str, object], key: str) -> float:
    value = obj.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"rspamd reply: {key} is not a number: {value!r}"[:200])
    return float(value)


def parse_reply(status: int, body: bytes) -> Reply:
    """The ``/checkv2`` answer; any other status or shape is a protocol error."""
    if status != 200:
        raise ProtocolError(f"rspamd answered HTTP {status}: {body[:200]!r}")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"rspamd reply is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("rspamd reply is not a JSON object")
    if "error" in obj and "action" not in obj:
        raise ProtocolError(f"rspamd error: {str(obj['error'])[:200]}")
    action = obj.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise ProtocolError(f"rspamd reply: unknown action {action!r}"[:200])
    symbols: dict[str, float] = {}
    raw_symbols = obj.get("symbols") or {}
    if not isinstance(raw_symbols, dict):
        raise ProtocolError("rspamd reply: symbols is not an object")
    for name, sym in raw_symbols.items():
        score = sym.get("score", 0.0) if isinstance(sym, dict) else 0.0
        ok = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
        symbols[str(name)] = float(score) if ok else 0.0
    messages = obj.get("messages") or {}
    subject = obj.get("subject")
    return Reply(
        action=action,
        score=_number(obj, "score"),
        required_score=_number(obj, "required_score"),
        symbols=symbols,
        messages={str(k): str(v) for k, v in messages.items()} if isinstance(messages, dict) else {},
        subject=subject if isinstance(subject, str) else None,
        skipped=obj.get("is_skipped") is True,
    )


def server_version(server_header: str | None) -> str | None:
    """rspamd names itself in every reply: ``Server: rspamd/3.4``."""
    m = _SERVER.search(server_header or "")
    return m["ver"] if m else None
