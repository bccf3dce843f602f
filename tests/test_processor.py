"""The processor without sockets: scanner hook, verdicts, added headers, transforms, journal."""

from __future__ import annotations

import hashlib
import time
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from ingest.processor import HeadersSettings, Processor, ProcessorOptions, ProcessorSettings, make_request
from qscan.testing.standin import recorded, write_standin
from scanners.base import ScanContext
from scanners.result import Disposition, ScanResult, Verdict

MSG = b"From: a@example.com\nSubject: hi\n\nbody\n"
ENV = build_envelope(b"a@example.com", [b"b@example.org"])


class FakeScanner:
    name = "fake"
    version = "9"

    def __init__(self, results: list[ScanResult] | Exception) -> None:
        self.results = results

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        if isinstance(self.results, Exception):
            raise self.results
        return self.results


@pytest.fixture
def make(tmp_path: Path):  # type: ignore[no-untyped-def]
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")

    def factory(*scanners: FakeScanner) -> tuple[Processor, Journal]:
        journal = Journal(tmp_path / "j.db")
        opts = ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin))
        return Processor(opts, journal, list(scanners)), journal

    return factory


def scanned(journal: Journal) -> list[MessageScanned]:
    return [e for e in (from_json(x.body, x.raw) for x in journal.read(0, 100)) if isinstance(e, MessageScanned)]


def test_clean_message_is_queued_with_diagnostics(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, journal = make(FakeScanner([]))
    out = proc.process(make_request(MSG, ENV))
    assert (out.code, out.text) == (0, None)
    [(msg, env)] = recorded(tmp_path / "rec")
    assert env == ENV and msg.endswith(MSG) and msg.startswith(b"X-Qmail-Scanner-Diagnostics:")
    assert b"fake: 9." in msg.replace(b"\n\t", b" ")
    [ev] = scanned(journal)
    assert ev.raw_message == msg and ev.action == "deliver"
    # what every stored copy must hash to, hashed where the bytes were in hand
    assert ev.raw_sha256 == hashlib.sha256(msg).hexdigest() != ev.sha256


def test_scanner_headers_and_transform(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = ScanResult(
        scanner="fake", verdict=Verdict.SPAM, score=7.5, disposition=Disposition.DELIVER,
        add_headers=(("X-Spam-Status", "Yes, score=7.5\r\nBcc: evil@example.com"), ("Bad Name", "x")),
        transform=lambda raw: raw.replace(b"Subject: hi", b"Subject: [SPAM] hi"),
    )
    proc, journal = make(FakeScanner([result]))
    assert proc.process(make_request(MSG, ENV)).code == 0
    [(msg, _)] = recorded(tmp_path / "rec")
    assert b"Subject: [SPAM] hi" in msg
    assert b"X-Spam-Status: Yes, score=7.5 Bcc: evil@example.com\n" in msg  # CR/LF never reach a header
    assert b"Bad Name" not in msg
    [ev] = scanned(journal)
    assert ev.category == "spam" and ev.action == "deliver"


@pytest.mark.parametrize(
    ("disposition", "code", "text"),
    [
        (Disposition.REJECT, 82, "Dblocked (#5.7.1)"),
        (Disposition.TEMPFAIL, 82, "Zlater (#4.7.1)"),
        (Disposition.QUARANTINE, 0, None),
        (Disposition.DROP, 0, None),
    ],
)
def test_dispositions(make, tmp_path: Path, disposition: Disposition, code: int, text: str | None) -> None:  # type: ignore[no-untyped-def]
    reply = text if disposition in (Disposition.REJECT, Disposition.TEMPFAIL) else None
    result = ScanResult(scanner="fake", verdict=Verdict.POLICY, name="rule-1", disposition=disposition, reply=reply)
    proc, journal = make(FakeScanner([result]))
    out = proc.process(make_request(MSG, ENV))
    assert (out.code, out.text) == (code, text)
    assert recorded(tmp_path / "rec") == []  # nothing reached qmail-queue
    [ev] = scanned(journal)
    assert ev.action == disposition.value and ev.reason == "rule-1" and ev.category == "policy"
    assert ev.raw_message  # the message is kept in the journal: quarantine/drop lose nothing


def test_virus_outranks_policy(make) -> None:  # type: ignore[no-untyped-def]
    proc, journal = make(FakeScanner([
        ScanResult(scanner="internal", verdict=Verdict.POLICY, name="exe", disposition=Disposition.QUARANTINE),
        ScanResult(scanner="clamd", verdict=Verdict.VIRUS, name="Eicar-Test", disposition=Disposition.QUARANTINE),
    ]))
    proc.process(make_request(MSG, ENV))
    [ev] = scanned(journal)
    assert ev.category == "virus" and ev.reason == "Eicar-Test"


def test_crashing_scanner_quarantines_and_records(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A scanner that raises on a message raises again on every retry: a temporary failure would
    # keep the message out forever. It is accepted into quarantine with the reason recorded.
    proc, journal = make(FakeScanner(RuntimeError("boom")))
    out = proc.process(make_request(MSG, ENV))
    assert (out.code, out.text) == (0, None)
    [ev] = scanned(journal)
    assert (ev.action, ev.reason) == ("quarantine", "internal-error")
    assert ev.findings[0].error == "RuntimeError: boom"
    assert recorded(tmp_path / "rec") == []


def test_unparseable_garbage_is_still_handled(make) -> None:  # type: ignore[no-untyped-def]
    proc, journal = make()
    garbage = b"\xff\xfe\x00" * 1000 + b"\n\n--x\nContent-Type: multipart/mixed; boundary=\n"
    out = proc.process(make_request(garbage, ENV))
    assert out.code in (0, 82)
    assert len(scanned(journal)) == 1


def test_unchanged_message_keeps_the_received_hash(tmp_path: Path) -> None:
    # No header added, no transform: what is queued is what was received, hashed once.
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    opts = ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin), headers=HeadersSettings(diagnostics=False))
    assert Processor(opts, journal, []).process(make_request(MSG, ENV)).code == 0
    [(msg, _)] = recorded(tmp_path / "rec")
    [ev] = scanned(journal)
    assert msg == MSG and ev.raw_sha256 == ev.sha256 == hashlib.sha256(MSG).hexdigest()


class SharedResultScanner:
    """Hands out the same result object on every call (a cached verdict) and changes its version
    between calls, as rspamd's does when the server reports a new one; the first call is slow."""

    name = "shared"

    def __init__(self) -> None:
        self.result = ScanResult(scanner="shared", name="seen", detail="same object")
        self.calls = 0
        self.version = "1"

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        self.calls += 1
        self.version = str(self.calls)
        if self.calls == 1:
            time.sleep(0.2)
        return [self.result]


def test_a_result_handed_out_twice_is_recorded_afresh(make) -> None:  # type: ignore[no-untyped-def]
    scanner = SharedResultScanner()
    proc, journal = make(scanner)
    for _ in range(2):
        assert proc.process(make_request(MSG, ENV)).code == 0
    first, second = (ev.findings[0] for ev in scanned(journal))
    assert first.version == "1" and first.duration_ms >= 200
    # what the processor measured the second time, not what it wrote into the first result
    assert second.version == "2" and second.duration_ms < 200
    assert scanner.result == ScanResult(scanner="shared", name="seen", detail="same object")


def test_results_are_frozen() -> None:
    result = ScanResult(scanner="fake", add_headers=(("X-A", "1"),))
    with pytest.raises(FrozenInstanceError):
        result.score = 1.0  # type: ignore[misc]
    assert replace(result, score=1.0).score == 1.0 and result.score == 0.0


@pytest.mark.parametrize(
    ("score", "required", "verdict", "status", "event_score"),
    [
        (15.04, 5.0, Verdict.SPAM, b"SA:1(15.0/5.0):", 15.0),
        (-0.05, 5.0, Verdict.CLEAN, b"SA:0(-0.1/5.0):", -0.1),  # rounds as the X-Spam-Score header does
        (2.25, None, Verdict.CLEAN, b"SA:0(2.2/?):", 2.2),
    ],
)
def test_spam_score_in_the_diagnostics_and_the_event(  # type: ignore[no-untyped-def]
    make, tmp_path: Path, score: float, required: float | None, verdict: Verdict, status: bytes,
    event_score: float,
) -> None:
    result = ScanResult(scanner="spamd", verdict=verdict, score=score, spam_score=score,
                        spam_required=required)
    proc, journal = make(FakeScanner([result]))
    assert proc.process(make_request(MSG, ENV)).code == 0
    [(msg, _)] = recorded(tmp_path / "rec")
    assert status in msg.replace(b"\n\t", b" ")
    [ev] = scanned(journal)
    assert ev.spam_score == event_score


def test_a_failed_spam_scan_gives_no_score(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    failed = ScanResult(scanner="spamd", error="refused", spam_score=9.0, spam_required=5.0)
    proc, journal = make(FakeScanner([failed]))
    assert proc.process(make_request(MSG, ENV)).code == 0
    [(msg, _)] = recorded(tmp_path / "rec")
    assert b"SA:" not in msg
    [ev] = scanned(journal)
    assert ev.spam_score is None
