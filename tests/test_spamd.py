"""The spamd scanner against a real spamd (Debian spamd) running SpamAssassin's shipped rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.envelope import build_envelope
from ingest.journal import Journal
from ingest.mime import walk_parts
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from qscan.testing.servers import GTUBE, Server, binary, spamd_server
from qscan.testing.standin import recorded, write_standin
from scanners.base import ScanContext
from scanners.mime.parse import parse
from scanners.result import Disposition, Verdict
from scanners.spam_policy import SpamPolicy
from scanners.spamd import SpamdScanner, SpamdSettings
from tests.conftest import require

pytestmark = pytest.mark.integration

HEAD = (
    b"From: Alice <alice@example.com>\nTo: bob@example.org\nMessage-ID: <m1.20261125@example.com>\n"
    b"Date: Wed, 25 Nov 2026 10:00:00 +0000\n"
)
SPAM = HEAD + b"Subject: buy now\n\n" + GTUBE + b"\n"
HAM = HEAD + b"Subject: lunch\n\nShall we have lunch on Thursday? The usual place at noon.\n\nAlice\n"


@pytest.fixture(scope="module")
def spamd() -> Iterator[Server]:
    require("spamd (Debian spamd + spamassassin)", binary("spamd") is not None)
    with spamd_server() as server:
        yield server


def scanner(server: Server, policy: SpamPolicy | None = None, **kw: object) -> SpamdScanner:
    thresholds = dataclasses.asdict(policy) if policy else {}  # SpamdSettings extends SpamPolicy
    opts = {"host": "127.0.0.1", "port": server.port, "timeout": 20.0, **thresholds, **kw}
    return SpamdScanner(SpamdSettings(**opts))  # type: ignore[arg-type]


def context(raw: bytes, relay: bool = False) -> ScanContext:
    msg = parse(raw)
    _, parts, _ = walk_parts(msg)
    return ScanContext(raw=raw, message=msg, parts=parts, sender="alice@example.com",
                       recipients=["bob@example.org"], client_ip="192.0.2.1", relay=relay,
                       size=len(raw), max_size=10**8)


def test_gtube_is_spam_and_tagged(spamd: Server) -> None:
    s = scanner(spamd)
    [r] = s.scan(context(SPAM))
    assert r.verdict == Verdict.SPAM and r.error is None and r.score >= 999
    assert r.disposition == Disposition.NONE  # tagging only unless a threshold is configured
    status = dict(r.add_headers)["X-Spam-Status"]
    assert status.startswith(f"Yes, score={r.score:.1f} required=5.0 tests=") and "GTUBE" in status
    assert dict(r.add_headers)["X-Spam-Level"] == "*" * 50
    assert s.version.startswith("4.") and r.version == s.version  # from X-Spam-Checker-Version


def test_plain_message_is_ham(spamd: Server) -> None:
    [r] = scanner(spamd).scan(context(HAM))
    assert r.verdict == Verdict.CLEAN and r.error is None and r.score < 5
    assert dict(r.add_headers)["X-Spam-Status"].startswith("No, score=")
    assert r.spam_required == 5.0 and r.spam_score == r.score


def test_report_mode_gives_rule_points(spamd: Server) -> None:
    [r] = scanner(spamd, command="REPORT").scan(context(SPAM))
    assert "GTUBE=1000" in r.detail and r.verdict == Verdict.SPAM


@pytest.mark.parametrize(
    ("policy", "disposition"),
    [
        (SpamPolicy(quarantine_score=10), Disposition.QUARANTINE),
        (SpamPolicy(quarantine_score=10, reject_score=500), Disposition.REJECT),
        (SpamPolicy(quarantine_score=10, reject_score=500, drop_score=900), Disposition.DROP),
        (SpamPolicy(drop_score=5000), Disposition.NONE),
    ],
)
def test_thresholds(spamd: Server, policy: SpamPolicy, disposition: Disposition) -> None:
    [r] = scanner(spamd, policy).scan(context(SPAM))
    assert r.disposition == disposition and r.verdict == Verdict.SPAM


def test_relay_clients_and_big_mail_are_skipped(spamd: Server) -> None:
    [r] = scanner(spamd).scan(context(SPAM, relay=True))
    assert (r.name, r.detail, r.verdict, r.add_headers) == ("skipped", "relay client", Verdict.CLEAN, ())
    [r] = scanner(spamd, skip_relay=False).scan(context(SPAM, relay=True))
    assert r.verdict == Verdict.SPAM
    [r] = scanner(spamd, max_size=100).scan(context(SPAM))
    assert r.name == "skipped" and "max_size" in r.detail


def test_spamd_stopped_applies_the_failure_policy() -> None:
    require("spamd (Debian spamd + spamassassin)", binary("spamd") is not None)
    with spamd_server() as own:
        passing, tempfail = scanner(own), scanner(own, failure_policy="tempfail")
        assert passing.scan(context(SPAM))[0].verdict == Verdict.SPAM
        own.stop()
        [r] = passing.scan(context(SPAM))
        # never "clean, not spam": the error is recorded, no X-Spam headers claim a score
        assert r.error and r.disposition == Disposition.NONE and r.add_headers == () and r.name == "scan-failed"
        assert r.spam_score is None and r.spam_required is None
        [r] = tempfail.scan(context(SPAM))
        assert r.disposition == Disposition.TEMPFAIL and r.reply and r.reply.startswith("Z")


def test_processor_headers_subject_and_event_score(spamd: Server, tmp_path: Path) -> None:
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    s = scanner(spamd, SpamPolicy(subject_prefix="[SPAM]"))
    proc = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), Journal(tmp_path / "j.db"), [s])
    env = build_envelope(b"alice@example.com", [b"bob@example.org"])
    spam_in = SPAM.replace(b"Subject: buy now\n", b"Subject: buy now\nX-Spam-Status: No, forged\n")
    out = proc.process(make_request(spam_in, env, {"TCPREMOTEIP": "192.0.2.1"}))
    assert out.code == 0 and out.event is not None
    assert out.event.category == "spam" and out.event.spam_score is not None and out.event.spam_score >= 999
    [(queued, _)] = recorded(tmp_path / "rec")
    unfolded = queued.replace(b"\n\t", b" ")
    assert b"Subject: [SPAM] buy now\n" in queued and b"forged" not in queued
    assert b"X-Spam-Status: Yes, score=" in queued and b"X-Spam-Score: " in queued
    assert f"SA:1({out.event.spam_score:.1f}/5.0):".encode() in unfolded
    assert f"spamd: {s.version}.".encode() in unfolded
