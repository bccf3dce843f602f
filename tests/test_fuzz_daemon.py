"""Seeded mutation fuzz through a real daemon: no message temp-failed, lost or killing a worker.

Every message of the real-mail corpora (tests/test_real_mail.py) is mutated — truncated, bits
flipped, a span duplicated, 8-bit bytes inserted (half of them inside the header block, into a
header's value) — one to three times, and ``FUZZ_COUNT`` (2,000) such messages go through one
daemon: most straight over the QSCAN/1 socket protocol (docs/protocol.md) from a few threads in
this process, a sample through the real ``qscan-queue`` client. Message ``i`` depends only on the
seed and ``i`` (``QSCAN_FUZZ_SEED``, default 19; ``QSCAN_FUZZ_COUNT``), so any failure replays
alone: ``fuzzed(i)``.

What must hold, per message: an answer (no connection closed without one: the client would
temp-fail and the sender retry the same bytes forever); the answer is accepted (0) or a
permanent reject (82 + ``D``); exactly one ``message.scanned`` event in the journal for it
(its envelope sender is unique) whose action is one of the defined actions; and the daemon log
has no failed connection handler and no worker that died. A temporary failure passes only with
a documented temporary cause (``TEMPORARY_REASONS``): ``deadline``, the client's time running
out (docs/deadlines.md), which a healthy run on small mail never reaches.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from ingest.envelope import build_envelope
from ingest.event import Action
from qscan.testing import rawclient
from qscan.testing.daemon import CLIENT, Harness, running_daemon
from qscan.testing.injector import inject
from tests.conftest import require
from tests.test_real_mail import corpus, failure_cause, log_failures, scanned_events

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("QSCAN_FUZZ_SEED", "19"))
FUZZ_COUNT = int(os.environ.get("QSCAN_FUZZ_COUNT", "2000"))
CLIENT_EVERY = 40  # every 40th message goes through the real qscan-queue (50 of 2,000)
THREADS = 4
TEMPORARY_REASONS = frozenset({"deadline"})
EIGHT_BIT = [  # what old clients, spam and RFC 6532 mail put in headers
    "é".encode(), "Grüße".encode(), "日本語".encode(), "€".encode("cp1252"), "ß".encode("latin-1"),
    b"\xff\xfe", b"\xc3", b"\xe2\x82", b"\x80\x81\x82", b"\xed\xa0\x80",  # truncated, overlong, surrogate
]


@cache
def bases() -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in corpus())


def _header_end(raw: bytes) -> int:
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n")) if i >= 0]
    return min(ends) if ends else len(raw)


def _truncate(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    at = rng.randrange(len(raw) + 1)
    return raw[:at], f"truncate@{at}"


def _flip(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    if not raw:
        return raw, "flip(empty)"
    out = bytearray(raw)
    spots = [rng.randrange(len(out)) for _ in range(rng.randint(1, 8))]
    for at in spots:
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out), f"flip@{spots}"


def _duplicate(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    if not raw:
        return raw, "duplicate(empty)"
    start = rng.randrange(len(raw))
    span = raw[start:start + rng.randint(1, 4096)]
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + span + raw[at:], f"duplicate[{start}:+{len(span)}]@{at}"


def _insert_8bit(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    chunk = b"".join(rng.choice(EIGHT_BIT) for _ in range(rng.randint(1, 4)))
    end = _header_end(raw)
    colons = [i + 1 for i in range(end) if raw[i:i + 1] == b":"]
    if colons and rng.random() < 0.5:  # into a header's value (From, Subject, Message-ID ...)
        at = rng.choice(colons) + rng.randint(0, 12)
        at = min(at, end)
    else:
        at = rng.randrange(len(raw) + 1)
    return raw[:at] + chunk + raw[at:], f"8bit{chunk!r}@{at}"


MUTATIONS: tuple[Callable[[random.Random, bytes], tuple[bytes, str]], ...] = (
    _truncate, _flip, _duplicate, _insert_8bit, _insert_8bit,
)


@dataclass(frozen=True)
class Fuzzed:
    index: int
    base: str
    how: str
    raw: bytes
    sender: str
    attrs: tuple[tuple[str, str], ...]


def fuzzed(index: int) -> Fuzzed:
    """Message ``index`` of the run: a function of the seed and the index only."""
    rng = random.Random(f"{SEED}:{index}")
    files = corpus()
    pick = rng.randrange(len(files))
    raw, steps = bases()[pick], []
    for _ in range(rng.randint(1, 3)):
        raw, step = rng.choice(MUTATIONS)(rng, raw)
        steps.append(step)
    attrs: tuple[tuple[str, str], ...] = ()
    if rng.random() < 0.5:  # half as SMTP mail (inbound, some relayed), half as local mail
        attrs = (("TCPREMOTEIP", f"192.0.2.{rng.randint(1, 254)}"), ("HELO", "fuzz.example"))
        if rng.random() < 0.3:
            attrs += (("RELAYCLIENT", ""),)
    return Fuzzed(index, files[pick].name, " ".join(steps), raw, f"fuzz-{SEED}-{index}@example.com", attrs)


def send_direct(sock_path: Path, f: Fuzzed, timeout: float = 60) -> tuple[int, str | None] | None:
    """One QSCAN/1 request, as qscan-queue makes it; the answer, or None if the daemon closed
    (a hand-off is answered as the client answers it when qmail-queue accepts)."""
    return rawclient.send(sock_path, f.raw, build_envelope(f.sender.encode(), [b"bob@example.org"]),
                          dict(f.attrs), timeout)


def send_client(h: Harness, f: Fuzzed) -> tuple[int, str | None] | None:
    envelope = build_envelope(f.sender.encode(), [b"bob@example.org"])
    res = inject(CLIENT, f.raw, envelope, h.client_env(**dict(f.attrs)), timeout=60)
    return res.code, res.fd6 or None


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_daemon(tmp_path_factory.mktemp("fuzz")) as h:
        yield h


def test_mutations_are_seeded_and_touch_headers() -> None:
    require("the mail corpora (../shared/corpora, CPython's test package)", len(corpus()) >= 100)
    assert fuzzed(7) == fuzzed(7)
    sample = [fuzzed(i) for i in range(400)]
    assert len({f.raw for f in sample}) > 390
    for kind in ("truncate", "flip", "duplicate", "8bit"):
        assert sum(kind in f.how for f in sample) > 50, kind
    in_headers = 0
    for f in sample:
        head = f.raw[:_header_end(f.raw)]
        in_headers += any(b >= 0x80 for b in head)
    assert in_headers > 100


def test_fuzzed_mail_always_gets_a_defined_outcome(daemon: Harness) -> None:
    require("the mail corpora (../shared/corpora, CPython's test package)", len(corpus()) >= 100)
    messages = [fuzzed(i) for i in range(FUZZ_COUNT)]

    def one(f: Fuzzed) -> tuple[Fuzzed, tuple[int, str | None] | None]:
        if f.index % CLIENT_EVERY == 0:
            return f, send_client(daemon, f)
        return f, send_direct(daemon.socket, f)

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(one, messages))

    events: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for ev in scanned_events(daemon.journal):
        events.setdefault(ev.envelope.sender, []).append(ev.action)
        reasons[ev.envelope.sender] = ev.reason
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for f, answer in answers:
        wrong = []
        if answer is None:
            outcomes["no answer"] += 1
            wrong.append("connection closed without an answer")
        else:
            code, text = answer
            kind = "accepted" if code == 0 else "rejected" if code == 82 and (text or "")[:1] == "D" else "temp"
            outcomes[kind] += 1
            if kind == "temp" and reasons.get(f.sender) not in TEMPORARY_REASONS:
                wrong.append(f"temporary failure {code} {text!r} (reason {reasons.get(f.sender)!r})")
        actions = events.get(f.sender, [])
        if len(actions) != 1 or actions[0] not in set(Action):
            wrong.append(f"journal actions {actions}")
        if wrong:
            via = "qscan-queue" if f.index % CLIENT_EVERY == 0 else "socket"
            problems.append(f"#{f.index} via {via} ({f.base}: {f.how}): " + "; ".join(wrong))
    crashes = Counter(failure_cause(c) for c in log_failures((daemon.root / "daemon.log").read_text(errors="replace")))
    summary = (f"seed {SEED}, {FUZZ_COUNT} messages: {dict(outcomes)}; {len(problems)} with a problem, "
               f"{sum(crashes.values())} failure(s) in the daemon log")
    if problems or crashes:
        pytest.fail("\n".join([summary, *problems[:12], "daemon log failures, by cause:",
                               *(f"  {n} x {cause}" for cause, n in crashes.most_common(10))]), pytrace=False)
