"""The rspamd scanner against a real rspamd (Debian rspamd 3.x) with a minimal local config."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ingest.mime import walk_parts
from qscan.testing.servers import GTUBE, Server, binary, free_port, rspamd_server
from scanners.base import ScanContext
from scanners.mime.parse import parse
from scanners.result import Disposition, Verdict
from scanners.rspamd import RspamdScanner, RspamdSettings
from tests.conftest import require

pytestmark = pytest.mark.integration

HEAD = b"From: alice@example.com\nTo: bob@example.org\nMessage-ID: <r1@example.com>\n"
SPAM = HEAD + b"Subject: offer\n\n" + GTUBE + b"\n"
HAM = HEAD + b"Subject: lunch\n\nThursday at noon?\n"


@pytest.fixture(scope="module")
def rspamd() -> Iterator[Server]:
    require("rspamd (Debian rspamd)", binary("rspamd") is not None)
    with rspamd_server() as server:
        yield server


def context(raw: bytes, **kw: object) -> ScanContext:
    msg = parse(raw)
    _, parts, _ = walk_parts(msg)
    base: dict[str, object] = dict(
        raw=raw, message=msg, parts=parts, sender="alice@example.com",
        recipients=["bob@example.org", "carol@example.org"], client_ip="192.0.2.7", relay=False,
        size=len(raw), max_size=10**8, env={"SMTPHELO": "mail.example.net", "SMTPAUTHUSER": "alice"},
        queue_id="01a2-test-queue-id",
    )
    return ScanContext(**{**base, **kw})  # type: ignore[arg-type]


def scanner(server: Server, **kw: object) -> RspamdScanner:
    return RspamdScanner(RspamdSettings(**{"port": server.port, "timeout": 10.0, **kw}))  # type: ignore[arg-type]


def test_gtube_follows_rspamd_reject_action(rspamd: Server) -> None:
    s = scanner(rspamd)
    [r] = s.scan(context(SPAM))
    assert (r.verdict, r.disposition, r.error) == (Verdict.SPAM, Disposition.REJECT, None)
    assert r.reply == "Dmessage refused as spam (#5.7.1)" and "action=reject" in r.detail and "GTUBE" in r.detail
    assert s.version.startswith("3.") and r.version == s.version  # from the Server: header
    assert dict(r.add_headers)["X-Spam-Status"].startswith("Yes, score=")


def test_smtp_context_reaches_rspamd(rspamd: Server) -> None:
    scanner(rspamd).scan(context(SPAM))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in rspamd.log_text().splitlines() if "qid: <01a2-test-queue-id>" in x]
        if lines:
            break
        time.sleep(0.1)
    [line] = lines[-1:]
    assert "ip: 192.0.2.7" in line and "user: alice" in line and "from: <alice@example.com>" in line
    assert "rcpts: <bob@example.org,carol@example.org>" in line


def test_action_mapping_and_thresholds(rspamd: Server) -> None:
    [r] = scanner(rspamd, reject_action="quarantine").scan(context(SPAM))
    assert r.disposition == Disposition.QUARANTINE
    [r] = scanner(rspamd, follow_actions=False).scan(context(SPAM))
    assert (r.verdict, r.disposition) == (Verdict.SPAM, Disposition.NONE)
    [r] = scanner(rspamd, follow_actions=False, drop_score=10).scan(context(SPAM))
    assert r.disposition == Disposition.DROP


def test_ham_and_skips(rspamd: Server) -> None:
    [r] = scanner(rspamd).scan(context(HAM))
    assert (r.verdict, r.disposition, r.error) == (Verdict.CLEAN, Disposition.NONE, None)
    assert "action=no action" in r.detail and dict(r.add_headers)["X-Spam-Status"].startswith("No, ")
    [r] = scanner(rspamd).scan(context(SPAM, relay=True))
    assert r.name == "skipped"


def test_rspamd_unreachable_passes_with_the_error_recorded() -> None:
    s = RspamdScanner(RspamdSettings(port=free_port(), timeout=2.0))
    [r] = s.scan(context(SPAM))
    assert r.error and "ConnectionRefused" in r.error and r.disposition == Disposition.NONE
    assert r.add_headers == () and r.spam_score is None
    [r] = RspamdScanner(RspamdSettings(port=free_port(), failure_policy="tempfail")).scan(context(SPAM))
    assert r.disposition == Disposition.TEMPFAIL
