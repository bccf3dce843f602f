"""End to end through a real daemon: the internal scanner quarantines, rejects, renames, lists members."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from qscan.testing.corpus import default_corpus_dir
from qscan.testing.daemon import Harness, running_daemon
from tests.internal_corpus import FORMAT_CASES, TEXT_PART, attachment, multipart, zip_bytes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
RULES = """\
[[rule]]
id = "no-scr"
description = "screen savers are not accepted"
action = "reject"
filename = ["*.scr"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("internal")
    (root / "policy.toml").write_text(RULES)
    with running_daemon(root, extra=f'[internal]\nrules = "{root / "policy.toml"}"\n') as h:
        yield h


def last_scanned(h: Harness) -> MessageScanned:
    with Journal(h.journal) as j:
        events = [from_json(e.body, e.raw) for e in j.read(0, 100000)]
    return [e for e in events if isinstance(e, MessageScanned)][-1]


def test_invoice_pdf_exe_is_quarantined_as_policy(daemon: Harness) -> None:
    before = len(daemon.recorded())
    raw = (default_corpus_dir() / "20-invoice-exe.eml").read_bytes()
    res = daemon.send(raw, sender=b"billing@example.net", TCPREMOTEIP="203.0.113.99")
    assert res.code == 0, res  # accepted: the message is kept in the journal for quarantine
    assert len(daemon.recorded()) == before  # ... and not handed to qmail-queue
    ev = last_scanned(daemon)
    assert (ev.category, ev.action, ev.reason) == ("policy", "quarantine", "double-extension")
    # the banned .exe is recorded beside it; the more specific double extension decides
    banned, finding = [f for f in ev.findings if f.scanner == "internal"]
    assert (banned.name, banned.verdict) == ("banned-extension", "clean")
    assert (finding.name, finding.detail) == ("double-extension", "2: invoice.pdf.exe: .pdf before .exe")
    part = next(p for p in ev.parts if p.path == "2")
    assert part.filename == "invoice.pdf.exe" and part.detected_type == "application/x-dosexec"


def test_archive_members_are_in_the_event_part_list(daemon: Harness) -> None:
    raw = multipart(TEXT_PART, attachment("files.zip", zip_bytes({"docs/a.txt": b"hello\n", "b.csv": b"1,2\n"}),
                                          b"application/zip"))
    res = daemon.send(raw)
    assert res.code == 0
    ev = last_scanned(daemon)
    assert ev.action == "deliver" and ev.category == "clean"
    assert [p.path for p in ev.parts] == ["1", "2", "2/files.zip!/docs/a.txt", "2/files.zip!/b.csv"]
    member = ev.parts[2]
    assert member.filename == "a.txt" and member.size == 6 and member.detected_type == "text/plain"


def test_rule_from_the_rules_file_rejects_with_its_text(daemon: Harness) -> None:
    raw = multipart(TEXT_PART, attachment("fun.scr", b"not really"))
    res = daemon.send(raw)
    assert res.code == 82 and res.fd6 == "Dscreen savers are not accepted (#5.7.1)"
    ev = last_scanned(daemon)
    assert (ev.action, ev.reason, ev.category) == ("reject", "no-scr", "policy")


def test_repeated_header_is_renamed_in_what_is_queued(daemon: Harness) -> None:
    before = len(daemon.recorded())
    raw, _ = FORMAT_CASES["repeated-content-type"]
    res = daemon.send(raw)
    assert res.code == 0
    queued, _env = daemon.recorded()[before]
    assert b'\nX-qscan-Renamed-Content-Type: application/octet-stream; name="x.dat"\n' in queued
    ev = last_scanned(daemon)
    assert ev.action == "deliver"
    assert any(f.name == "repeated-mime-header" for f in ev.findings)
