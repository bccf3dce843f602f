"""A deterministic, seeded benchmark corpus (nothing downloaded).

About 2,000 messages: 60% plain text 2-8 KB, 20% multipart/alternative text+HTML
20-60 KB, 15% with one 100-500 KB attachment (PDF-like or ZIP), 5% with
attachments a policy must block (invoice.pdf.exe, .scr, .vbs, an .exe inside a
ZIP), plus one 25 MB message and one deeply nested archive. Same seed, same
bytes: figures from different runs and machines compare.
"""

from __future__ import annotations

import base64
import io
import random
import zipfile
from dataclasses import dataclass

from ingest.envelope import build_envelope

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "report",
    "quarterly",
    "invoice",
    "meeting",
    "schedule",
    "project",
    "budget",
    "review",
    "customer",
    "account",
    "order",
    "shipment",
    "delivery",
    "contract",
    "attached",
    "please",
    "regards",
    "thanks",
    "update",
    "status",
    "team",
]
ZIP_TIME = (2026, 11, 25, 10, 0, 0)


@dataclass(frozen=True, slots=True)
class BenchMessage:
    kind: str
    data: bytes
    envelope: bytes
    env: dict[str, str]


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    line: list[str] = []
    while n < size:
        w = rng.choice(WORDS)
        line.append(w)
        n += len(w) + 1
        if len(line) >= 12:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\n".join(out) + "\n"


def _b64(data: bytes) -> str:
    enc = base64.b64encode(data).decode()
    return "\n".join(enc[i : i + 76] for i in range(0, len(enc), 76)) + "\n"


def _headers(rng: random.Random, i: int, subject: str, ctype: str) -> tuple[str, str, list[str]]:
    sender = f"user{rng.randrange(500)}@sender{rng.randrange(40)}.example"
    rcpts = [f"staff{rng.randrange(300)}@example.org" for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    head = (
        f"Received: from mail{rng.randrange(99)}.example.net (HELO mail) "
        f"(198.51.100.{rng.randrange(1, 254)})\n"
        f"  by mx1.example.org with SMTP; 25 Nov 2026 10:00:00 -0000\n"
        f"From: <{sender}>\nTo: {', '.join('<' + r + '>' for r in rcpts)}\n"
        f"Subject: {subject} {i}\nDate: Wed, 25 Nov 2026 10:{i % 60:02d}:00 +0000\n"
        f"Message-ID: <bench-{i}@sender.example>\nMIME-Version: 1.0\nContent-Type: {ctype}\n"
    )
    return head, sender, rcpts


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, ZIP_TIME), data)
    return buf.getvalue()


def _pdf_like(rng: random.Random, size: int) -> bytes:
    body = rng.randbytes(size - 64)
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + body + b"\n%%EOF\n"


def _pe(rng: random.Random, size: int) -> bytes:
    head = bytearray(b"MZ" + bytes(0x3A) + (0x80).to_bytes(4, "little") + bytes(0x40))
    head += b"PE\0\0"
    return bytes(head) + rng.randbytes(max(0, size - len(head)))


def _with_attachment(
    rng: random.Random, i: int, subject: str, name: str, ctype: str, payload: bytes
) -> tuple[str, str, list[str]]:
    b = f"=_bench_{i}"
    head, sender, rcpts = _headers(rng, i, subject, f'multipart/mixed; boundary="{b}"')
    body = (
        f"\n--{b}\nContent-Type: text/plain; charset=us-ascii\n\n{_text(rng, 800)}"
        f'--{b}\nContent-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
        f'Content-Disposition: attachment; filename="{name}"\n\n{_b64(payload)}--{b}--\n'
    )
    return head + body, sender, rcpts


def _make(rng: random.Random, i: int, kind: str) -> tuple[str, str, list[str]]:
    if kind == "plain":
        head, s, r = _headers(rng, i, "Plain note", "text/plain; charset=us-ascii")
        return head + "\n" + _text(rng, rng.randrange(2000, 8000)), s, r
    if kind == "alternative":
        b = f"=_alt_{i}"
        head, s, r = _headers(rng, i, "Newsletter", f'multipart/alternative; boundary="{b}"')
        size = rng.randrange(20000, 60000)
        text = _text(rng, size // 3)
        html = (
            "<html><body>"
            + "".join(f"<p>{p}</p>\n" for p in _text(rng, size // 2).splitlines())
            + "</body></html>\n"
        )
        return (
            head
            + (
                f"\n--{b}\nContent-Type: text/plain; charset=utf-8\n\n{text}"
                f"--{b}\nContent-Type: text/html; charset=utf-8\n\n{html}--{b}--\n"
            ),
            s,
            r,
        )
    if kind == "attachment":
        size = rng.randrange(100_000, 500_000)
        if rng.random() < 0.5:
            return _with_attachment(
                rng, i, "Report", f"report-{i}.pdf", "application/pdf", _pdf_like(rng, size)
            )
        payload = _zip(
            [(f"data-{i}.csv", _text(rng, size).encode()), (f"notes-{i}.txt", _text(rng, 3000).encode())]
        )
        return _with_attachment(rng, i, "Archive", f"files-{i}.zip", "application/zip", payload)
    if kind == "blocked":
        choice = i % 4
        if choice == 0:
            return _with_attachment(
                rng, i, "Invoice", "invoice.pdf.exe", "application/octet-stream", _pe(rng, 40_000)
            )
        if choice == 1:
            return _with_attachment(
                rng, i, "Screensaver", "funny.scr", "application/octet-stream", _pe(rng, 30_000)
            )
        if choice == 2:
            vbs = b'Set s = CreateObject("WScript.Shell")\ns.Run "calc.exe"\n' * 20
            return _with_attachment(rng, i, "Script", "update.vbs", "text/plain", vbs)
        return _with_attachment(
            rng, i, "Zipped", f"setup-{i}.zip", "application/zip", _zip([("setup.exe", _pe(rng, 50_000))])
        )
    raise ValueError(kind)


def _nested_zip(depth: int) -> bytes:
    data = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$qscan-nested-payload" * 10
    name = "innermost.txt"
    for level in range(depth):
        data = _zip([(name, data)])
        name = f"level{depth - level}.zip"
    return data


def generate(
    count: int = 2000, seed: int = 20261125, big_mb: int = 25, nested_depth: int = 20
) -> list[BenchMessage]:
    rng = random.Random(seed)
    kinds = ["plain"] * 60 + ["alternative"] * 20 + ["attachment"] * 15 + ["blocked"] * 5
    out: list[BenchMessage] = []
    for i in range(count):
        kind = kinds[i % 100]
        text, sender, rcpts = _make(rng, i, kind)
        env = {"TCPREMOTEIP": f"198.51.100.{rng.randrange(1, 254)}", "TCPREMOTEHOST": "mail.example.net"}
        out.append(
            BenchMessage(
                kind, text.encode(), build_envelope(sender.encode(), [r.encode() for r in rcpts]), env
            )
        )
    rng.shuffle(out)
    # the two outliers go at the end so the steady-state figures are read without them
    big = rng.randbytes(big_mb * 1024 * 1024 * 3 // 4)
    text, sender, rcpts = _with_attachment(
        rng, count, "Huge", "disk-image.bin", "application/octet-stream", big
    )
    out.append(
        BenchMessage("huge", text.encode(), build_envelope(sender.encode(), [r.encode() for r in rcpts]), {})
    )
    text, sender, rcpts = _with_attachment(
        rng, count + 1, "Nested", "nested.zip", "application/zip", _nested_zip(nested_depth)
    )
    out.append(
        BenchMessage(
            "nested", text.encode(), build_envelope(sender.encode(), [r.encode() for r in rcpts]), {}
        )
    )
    return out
