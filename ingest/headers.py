"""Headers qscan adds to mail it hands to qmail-queue.

Everything interpolated into a header is sanitised: control characters (CR and
LF above all) from mail or the environment never reach a generated header, and
lines are folded below 78 characters where spaces allow.
"""

from __future__ import annotations

import time

from scanners.text import one_line


def line_ending(raw: bytes) -> bytes:
    """The message's own line ending: qmail's LF unless the message uses CRLF."""
    nl = raw.find(b"\n")
    return b"\r\n" if nl > 0 and raw[nl - 1 : nl] == b"\r" else b"\n"


def fold(name: str, value: str, eol: bytes = b"\n", width: int = 78) -> bytes:
    """``Name: value`` folded at spaces with tab continuation lines."""
    words = value.split(" ")
    lines: list[str] = []
    current = name + ":"
    for word in words:
        if not word:
            continue
        if len(current) + 1 + len(word) > width and current.strip() and current != name + ":":
            lines.append(current)
            current = "\t" + word
        else:
            current += " " + word
    lines.append(current)
    return eol.join(s.encode("utf-8", "replace") for s in lines) + eol


def rfc2822_date(ts: float) -> str:
    return time.strftime("%d %b %Y %H:%M:%S -0000", time.gmtime(ts))


def diagnostics_value(
    *,
    client_ip: str | None,
    client_host: str | None,
    helo: str | None,
    hostname: str,
    sender: str,
    uid: int,
    product: str,
    versions: list[tuple[str, str]],
    verdict: str,
    relay: bool,
    spam: str | None,
    elapsed: float,
    when: float,
) -> str:
    """Qmail-Scanner 2.11's diagnostics text, e.g.

    ``from mail.example.net (HELO mail) (192.0.2.10) by mx1 (envelope-sender <a@b>, uid 7791)
    with qscan-0.1.0 (size: 1. Clear:RC:0(192.0.2.10):. Processed in 0.012 secs); DATE``
    """
    parts = []
    if client_ip:
        parts.append("from " + (one_line(client_host, 100) or "unknown"))
        if helo:
            parts.append(f"(HELO {one_line(helo, 100)})")
        parts.append(f"({one_line(client_ip, 64)})")
    else:
        parts.append("from localhost (local)")
    parts.append(f"by {one_line(hostname, 100)}")
    parts.append(f"(envelope-sender <{one_line(sender, 200)}>, uid {uid})")
    scanners = " ".join(f"{one_line(n, 40)}: {one_line(v, 40)}." for n, v in versions)
    status = f"{verdict}:RC:{1 if relay else 0}({one_line(client_ip, 64) or '127.0.0.1'}):"
    if spam:
        status += f"SA:{spam}:"
    inner = " ".join(x for x in (scanners, status + ".", f"Processed in {elapsed:.3f} secs") if x)
    parts.append(f"with {product} ({inner});")
    parts.append(rfc2822_date(when))
    return " ".join(parts)
