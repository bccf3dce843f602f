"""A fast MIME parse that builds exactly the tree the stdlib feedparser builds.

``email``'s feedparser hands every line of every body to Python code (a line queue,
a stack of end-of-part predicates, a regex match per line): about a thousand lines for
an average message with an attachment, and about half the scan daemon's CPU. Here the
boundary lines of a multipart are found by a substring search over its whole body (C
speed), each checked against feedparser's boundary pattern, and only the header blocks
go through the stdlib's own header routine. Every message object, header, defect,
payload string, preamble and epilogue is the one feedparser produces;
``tests/test_mime_split.py`` holds the two parsers to that on the corpora and on
generated hostile input.

It only takes the shapes it reproduces exactly and returns None for anything else, so
the caller parses that message with feedparser itself (see ``scanners.mime.parse.parse``):

- a bare CR line ending anywhere (feedparser splits lines on CR, LF and CRLF; the
  regexes here know LF and CRLF);
- a header block ended by something other than a blank line
  (MissingHeaderBodySeparatorDefect), or whose last line is a "From " line (feedparser
  hands that line to the body);
- a multipart without a boundary, without its first boundary line, without its closing
  boundary line, with two boundary lines in a row, or nested deeper than MAX_DEPTH;
- multipart/digest (its parts default to message/rfc822) and message/delivery-status
  (header blocks, not a message).

Why the split is faithful: feedparser ends a part at any line that matches the boundary
of the part's multipart *or of any enclosing multipart*. Splitting outer bodies first
means a part's text never holds an enclosing boundary line, and a boundary line is what
feedparser's own pattern accepts, looked for at line starts instead of line by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email import errors
from email.feedparser import FeedParser
from email.message import Message
from email.parser import Parser
from email.policy import Policy
from typing import Any

MAX_DEPTH = 64

# feedparser.headerRE, matched at a line start.
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")
_BARE_CR = re.compile(r"\r(?!\n)")


class _NotExact(Exception):
    """This message has a shape the fast path does not reproduce: use feedparser."""


def parse_text(text: str, policy: Policy) -> Message | None:
    """The message feedparser would build from ``text``, or None: then ask feedparser."""
    if "\r" in text and _BARE_CR.search(text):
        return None
    try:
        msg, _ = _message(text, 0, len(text), policy, 0)
    except _NotExact:
        return None
    return msg


def _split_headers(text: str, pos: int, end: int) -> tuple[list[str], int]:
    """(the header lines, where the body starts) of text[pos:end]: feedparser's header loop."""
    lines: list[str] = []
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        if not _HEADER_LINE.match(text, pos, end):
            if text.startswith("\n", pos, end) or text.startswith("\r\n", pos, end):
                return lines, line_end  # the blank separator line is consumed
            raise _NotExact  # MissingHeaderBodySeparatorDefect: the line starts the body
        lines.append(text[pos:line_end])
        pos = line_end
    return lines, end


# feedparser's own header routine (not a copy of it), so every header and header defect
# is identical; building a whole FeedParser per header block cost four times as much.
# A Python without it gets the public parser (same result, slower).
_FEED_HEADERS: Callable[[Any, list[str]], None] | None = getattr(FeedParser, "_parse_headers", None)


class _HeaderSink:
    """The two things FeedParser._parse_headers uses: the policy and the message in hand."""

    def __init__(self, policy: Policy, msg: Message) -> None:
        self.policy = policy
        self._cur = msg


def _headers(lines: list[str], policy: Policy) -> Message:
    if len(lines) > 1 and lines[-1].startswith("From "):
        raise _NotExact  # feedparser hands a last "From " line back to the body
    if _FEED_HEADERS is None or policy.message_factory is None:
        return Parser(policy=policy).parsestr("".join(lines), headersonly=True)
    msg: Message = policy.message_factory(policy=policy)
    _FEED_HEADERS(_HeaderSink(policy, msg), lines)
    return msg


def _message(text: str, start: int, end: int, policy: Policy, depth: int, trim: bool = False
             ) -> tuple[Message, Message]:
    """The message in text[start:end], and the message whose trailing line end belongs to
    the next boundary (feedparser's ``_last``: the message itself for a leaf or a
    multipart, the innermost last message for message/*). ``trim``: that line end is the
    boundary's; a leaf's payload is sliced without it (one copy of an attachment's text,
    not two), a multipart's epilogue is left to :func:`_drop_line_end`.

    Parts are passed as offsets into the one text, never sliced out: a deeply nested
    message would otherwise hold a copy of itself per level.
    """
    if depth > MAX_DEPTH:
        raise _NotExact
    lines, body = _split_headers(text, start, end)
    msg = _headers(lines, policy)
    ctype = msg.get_content_type()
    maintype = ctype.partition("/")[0]
    if maintype == "message":
        if ctype == "message/delivery-status":
            raise _NotExact
        inner, last = _message(text, body, end, policy, depth + 1, trim)
        msg.set_payload([inner])
        return msg, last
    if maintype == "multipart":
        _multipart(msg, ctype, text, body, end, policy, depth)
        return msg, msg
    if trim:  # _without_line_end, on the offsets
        if text.endswith("\r\n", body, end):
            end -= 2
        elif text.endswith(("\n", "\r"), body, end):
            end -= 1
    msg.set_payload(text[body:end])
    return msg, msg


def _multipart(msg: Message, ctype: str, text: str, body: int, end: int, policy: Policy,
               depth: int) -> None:
    boundary = msg.get_boundary()
    if boundary is None or ctype == "multipart/digest":
        raise _NotExact
    if str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
        msg.policy.handle_defect(msg, errors.InvalidMultipartContentTransferEncodingDefect())
    found = _boundary_lines(text, body, end, "--" + boundary)
    first = next(found, None)
    if first is None or first[2]:
        raise _NotExact  # StartBoundaryNotFoundDefect
    if first[0] > body:  # the line end before a boundary belongs to the boundary
        msg.preamble = _without_line_end(text[body : first[0]])
    parts: list[Message | str] = []  # set_payload's type
    start = first[1]
    for line_start, line_end, close in found:
        if line_start == start:
            raise _NotExact  # repeated boundary lines: feedparser skips them all
        part, last = _message(text, start, line_start, policy, depth + 1, trim=True)
        _drop_line_end(last)
        parts.append(part)
        if close:
            msg.set_payload(parts)
            msg.epilogue = text[line_end:end]
            return
        start = line_end
    raise _NotExact  # CloseBoundaryNotFoundDefect


# The rest of feedparser's boundaryre after "--" boundary: "--" for the close, blanks,
# the line end (or the end of the part).
_BOUNDARY_TAIL = re.compile(r"(--)?[ \t]*(?:\r\n|\n|\Z)")


def _boundary_lines(text: str, body: int, end: int, sep: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is the close) of each boundary line in text[body:end], in order.

    Candidates are found with str.find (a C substring search: a regex anchored at every
    line start costs ~10x more on a large base64 body), then checked with the regex.
    """
    if text.startswith(sep, body, end):
        pos = body
    else:
        pos = text.find("\n" + sep, body, end) + 1
        if not pos:
            return
    while True:
        line = _BOUNDARY_TAIL.match(text, pos + len(sep), end)
        if line:
            yield pos, line.end(), line.group(1) is not None
        pos = text.find("\n" + sep, pos, end) + 1  # the LF before the next candidate line
        if not pos:
            return


def _without_line_end(text: str) -> str:
    """``text`` less one final CRLF, CR or LF (feedparser's NLCRE_eol)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\n", "\r")):
        return text[:-1]
    return text


def _drop_line_end(last: Message) -> None:
    """The line end before a boundary, off a multipart's epilogue (a leaf's payload was sliced
    without it: ``_message(trim=True)``)."""
    if last.get_content_maintype() == "multipart":
        if last.epilogue == "":
            last.epilogue = None
        elif last.epilogue is not None:
            last.epilogue = _without_line_end(last.epilogue)
