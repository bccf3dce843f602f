"""SpamAssassin's spamc/spamd protocol (``SPAMC/1.5``), sans-I/O.

A request is a command line, headers (``Content-length`` is required by spamd for
every command that carries a message; ``User`` selects per-user settings), a blank
line and the message. spamd answers::

    SPAMD/1.1 0 EX_OK
    Content-length: 55
    Spam: True ; 1000.0 / 5.0

    GTUBE,MSGID_SHORT,NO_RECEIVED

``SYMBOLS`` puts the comma-separated rule names in the body, ``REPORT`` the
human-readable report whose table lists score and rule per line, ``HEADERS`` the
headers SpamAssassin would have written (``X-Spam-Checker-Version`` carries its
version, which the protocol otherwise never says). A non-zero code is an error
(``SPAMD/1.0 76 Bad header line``). spamd closes the connection after one reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scanners.protocols import ProtocolError
from scanners.text import one_line

COMMANDS = frozenset({"CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS", "PROCESS", "PING"})
MAX_HEAD = 64 * 1024
_STATUS = re.compile(rb"^SPAMD/(?P<ver>\d+\.\d+) +(?P<code>-?\d+) *(?P<msg>.*)$")
_SPAM = re.compile(
    r"^\s*(?P<flag>True|False|Yes|No)\s*;\s*(?P<score>-?\d+(?:\.\d+)?)\s*/\s*(?P<req>-?\d+(?:\.\d+)?)\s*$",
    re.IGNORECASE,
)
_RULE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_REPORT_LINE = re.compile(r"^\s*(?P<score>-?\d+(?:\.\d+)?)\s+(?P<rule>[A-Za-z0-9_.\-]{1,128})(?:\s|$)")
_CHECKER = re.compile(
    rb"^X-Spam-Checker-Version:\s*SpamAssassin\s+(?P<ver>\S+)", re.MULTILINE | re.IGNORECASE
)


def build_request(command: str, message: bytes, user: str | None = None) -> bytes:
    """Header block plus message; ``user`` is sanitised (no CR/LF reaches spamd)."""
    command = command.upper()
    if command not in COMMANDS:
        raise ValueError(f"not a spamd command: {command!r}")
    lines = [f"{command} SPAMC/1.5"]
    if command != "PING":
        lines.append(f"Content-length: {len(message)}")
    if user:
        clean = one_line(user, 256)
        if clean:
            lines.append(f"User: {clean}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return head if command == "PING" else head + message


@dataclass(frozen=True, slots=True)
class Response:
    version: str
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def spam(self) -> tuple[bool, float, float] | None:
        """(is spam, score, required score) from the ``Spam:`` header."""
        value = self.headers.get("spam")
        if value is None:
            return None
        m = _SPAM.match(value)
        if not m:
            raise ProtocolError(f"unreadable Spam header: {value[:200]!r}")
        return m["flag"].lower() in ("true", "yes"), float(m["score"]), float(m["req"])


def _parse_head(head: bytes) -> tuple[str, int, str, dict[str, str]]:
    lines = head.split(b"\r\n") if b"\r\n" in head else head.split(b"\n")
    m = _STATUS.match(lines[0].strip())
    if not m:
        raise ProtocolError(f"not a spamd status line: {lines[0][:200]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise ProtocolError(f"bad spamd header line: {line[:200]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
    return m["ver"].decode(), int(m["code"]), m["msg"].decode("utf-8", "replace").strip(), headers


class ResponseReader:
    """Incremental parser: feed what the socket gives, get the response when complete."""

    def __init__(self, max_body: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max_body = max_body

    def _split(self) -> tuple[bytes, bytes] | None:
        for sep in (b"\r\n\r\n", b"\n\n"):
            at = self._buf.find(sep)
            if at >= 0:
                return bytes(self._buf[:at]), bytes(self._buf[at + len(sep) :])
        return None

    def feed(self, data: bytes) -> Response | None:
        self._buf += data
        split = self._split()
        if split is None:
            if len(self._buf) > MAX_HEAD:
                raise ProtocolError("spamd response head too long")
            return None
        head, body = split
        version, code, message, headers = _parse_head(head)
        length = headers.get("content-length")
        if length is None:
            return None  # no length: the body ends when spamd closes the connection
        try:
            want = int(length)
        except ValueError as exc:
            raise ProtocolError(f"bad Content-length: {length[:50]!r}") from exc
        if want < 0 or want > self._max_body:
            raise ProtocolError(f"Content-length out of range: {want}")
        if len(body) < want:
            return None
        return Response(version, code, message, headers, body[:want])

    def eof(self) -> Response:
        """spamd closed the connection; a response without Content-length ends here."""
        split = self._split()
        if split is None:
            # a bare status line (errors, PONG) has no blank line after it
            if self._buf.strip() and b"\n" not in self._buf.strip():
                version, code, message, headers = _parse_head(bytes(self._buf).strip())
                return Response(version, code, message, headers)
            raise ProtocolError("spamd closed the connection before a complete response")
        head, body = split
        version, code, message, headers = _parse_head(head)
        if "content-length" in headers:
            raise ProtocolError("spamd closed the connection before the whole body arrived")
        return Response(version, code, message, headers, body)


def parse_response(data: bytes) -> Response:
    """A whole response as read until spamd closed the connection."""
    reader = ResponseReader()
    return reader.feed(data) or reader.eof()


def symbols(body: bytes) -> list[str]:
    """Rule names from a ``SYMBOLS`` body (comma-separated)."""
    names = (s.strip() for s in body.decode("utf-8", "replace").split(","))
    return [n for n in names if _RULE_NAME.match(n)]


def report_rules(body: bytes) -> list[tuple[str, float]]:
    """(rule, points) from the table of a ``REPORT`` body, in report order."""
    text = body.decode("utf-8", "replace")
    _, sep, table = text.partition("\n---- ")
    if not sep:
        return []
    rules = []
    for line in table.splitlines()[1:]:
        m = _REPORT_LINE.match(line)
        if m:
            rules.append((m["rule"], float(m["score"])))
    return rules


def checker_version(headers_body: bytes) -> str | None:
    """SpamAssassin's version from a ``HEADERS`` body (its ``X-Spam-Checker-Version``)."""
    m = _CHECKER.search(headers_body)
    return m["ver"].decode("ascii", "replace") if m else None
