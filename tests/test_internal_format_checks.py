"""The internal scanner's MIME format checks: one hostile message per check, and harmless mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.mime import walk_parts
from qscan.testing.corpus import default_corpus_dir
from scanners.internal.checks import CHECKS
from scanners.internal.format_checks import RENAME_PREFIX, rename_repeated
from scanners.internal.policy import InternalSettings
from scanners.internal.rawmime import strip_comments, walk_headers
from scanners.internal.scanner import InternalScanner
from scanners.mime.parse import parse
from scanners.result import Disposition, Verdict
from tests.internal_corpus import CLEAN_CASES, FORMAT_CASES, HEAD, TEXT_PART, context, multipart

ROOT = Path(__file__).resolve().parent.parent
SCANNER = InternalScanner()


@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
def test_each_hostile_message_trips_its_check(case: str) -> None:
    raw, check = FORMAT_CASES[case]
    report = SCANNER.inspect(context(raw))
    assert check in {h.check for h in report.hits}, [h.check for h in report.hits]
    results = SCANNER.results(report)
    assert any(r.name == check for r in results)
    category, default_action, _ = CHECKS[check]
    decisive = [r for r in results if r.disposition != Disposition.NONE]
    if default_action == "quarantine":
        assert decisive and decisive[-1].name == check
        assert decisive[-1].disposition == Disposition.QUARANTINE
        assert decisive[-1].verdict == Verdict(category)
    else:  # recorded only: a finding, no action
        assert not decisive
        assert all(r.verdict == Verdict.CLEAN for r in results)


@pytest.mark.parametrize("case", sorted(CLEAN_CASES))
def test_harmless_mail_trips_nothing(case: str) -> None:
    report = SCANNER.inspect(context(CLEAN_CASES[case]))
    assert report.hits == []
    assert SCANNER.results(report) == []


def test_demo_corpus_only_the_invoice_exe_is_caught() -> None:
    caught = {}
    for path in sorted(default_corpus_dir().glob("*.eml")):
        results = SCANNER.scan(context(path.read_bytes()))
        if results:
            caught[path.name] = [(r.name, r.verdict.value, r.disposition.value) for r in results]
    # its .exe is banned too (recorded: the more specific double extension decides)
    assert caught == {"20-invoice-exe.eml": [("banned-extension", "clean", "none"),
                                             ("double-extension", "policy", "quarantine")]}


def test_every_check_can_be_switched_off() -> None:
    raw, check = FORMAT_CASES["double-extension"]
    others = {"banned-extension": "off"}  # invoice.pdf.exe is a banned name as well
    off = InternalScanner(InternalSettings(checks={check: "off", **others}))
    assert off.scan(context(raw)) == []
    record = InternalScanner(InternalSettings(checks={check: "record", **others}))
    [r] = record.scan(context(raw))
    assert r.name == check and r.disposition == Disposition.NONE and r.verdict == Verdict.CLEAN


def test_check_action_can_reject_with_reply() -> None:
    raw, check = FORMAT_CASES["clsid"]
    scanner = InternalScanner(InternalSettings(checks={check: "reject"}))
    [r] = scanner.scan(context(raw))
    assert r.disposition == Disposition.REJECT and r.reply and r.reply.startswith("D")
    assert "#5.7.1" in r.reply


def test_ignore_eol_keeps_bare_cr_quiet_but_not_nul() -> None:
    lenient = InternalScanner(InternalSettings(ignore_eol=True))
    raw, _ = FORMAT_CASES["control-bare-cr"]
    assert "header-control-chars" not in {h.check for h in lenient.inspect(context(raw)).hits}
    raw, _ = FORMAT_CASES["control-nul"]
    assert "header-control-chars" in {h.check for h in lenient.inspect(context(raw)).hits}


def test_repeated_header_is_renamed_and_everything_else_is_byte_exact() -> None:
    raw, _ = FORMAT_CASES["repeated-content-type"]
    results = SCANNER.scan(context(raw))
    [carrier] = [r for r in results if r.transform is not None]
    assert carrier.name == "repeated-mime-header"
    out = carrier.transform(raw)
    assert out.count(RENAME_PREFIX) == 1
    assert b"\n" + RENAME_PREFIX + b'Content-Type: application/octet-stream; name="x.dat"\n' in out
    assert out.replace(RENAME_PREFIX, b"", 1) == raw
    # the rewritten message has no repeated header left, and renaming again changes nothing
    assert rename_repeated(out) == out
    # the first Content-Type is the one every reader now sees
    part = parse(out).get_payload()[1]
    assert part.get_content_type() == "text/plain"


def test_repeated_top_level_content_type_renamed_on_crlf_mail() -> None:
    raw = (HEAD + b"Content-Type: text/plain\nContent-Type: text/html\n\n<b>x</b>\n").replace(b"\n", b"\r\n")
    out = rename_repeated(raw)
    assert out == raw.replace(b"\r\nContent-Type: text/html", b"\r\n" + RENAME_PREFIX + b"Content-Type: text/html")


def test_raw_walk_paths_match_the_event_part_list() -> None:
    inner = multipart(TEXT_PART, b"Content-Type: text/html\n\n<p>x</p>\n", boundary=b"=_in")
    raw = multipart(
        TEXT_PART,
        b"Content-Type: message/rfc822\n\n" + inner,
        b'Content-Type: multipart/alternative; boundary="=_alt"\n\n--=_alt\n' + TEXT_PART + b"--=_alt--\n",
    )
    parts, _scan, _defects = walk_parts(parse(raw))
    leaf_paths = [p.path for p in parts]
    assert leaf_paths == ["1", "2/1/1", "2/1/2", "3/1"]
    blocks = [b.path for b in walk_headers(raw).blocks]
    assert blocks == ["0", "1", "2", "2/1", "2/1/1", "2/1/2", "3", "3/1"]
    assert set(leaf_paths) <= set(blocks)


def test_strip_comments_leaves_quoted_strings() -> None:
    assert strip_comments(b'text/(x)plain; name="a(1).pdf" (c (nested))') == b'text/plain; name="a(1).pdf" '


def _boom(raw: bytes) -> None:
    raise RuntimeError("simulated bug")


@pytest.mark.parametrize("action,disposition,reply", [
    ("quarantine", Disposition.QUARANTINE, None),
    ("reject", Disposition.REJECT, "Dmessage could not be scanned (#5.7.1)"),
    ("tempfail", Disposition.TEMPFAIL, "Zmessage could not be scanned, try again later (#4.3.0)"),
    ("deliver", Disposition.DELIVER, None),
])
def test_internal_error_becomes_a_malformed_finding(monkeypatch: pytest.MonkeyPatch, action: str,
                                                    disposition: Disposition, reply: str | None) -> None:
    monkeypatch.setattr("scanners.internal.scanner.walk_headers", _boom)
    scanner = InternalScanner(InternalSettings(error_action=action))
    [r] = scanner.scan(context(CLEAN_CASES["plain"]))
    assert (r.name, r.verdict, r.disposition, r.reply) == ("internal-error", Verdict.MALFORMED, disposition, reply)
    assert r.error == "RuntimeError: simulated bug"


def test_internal_error_keeps_the_message_through_the_processor(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from ingest.envelope import build_envelope
    from ingest.event import MessageScanned, from_json
    from ingest.journal import Journal
    from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
    from qscan.testing.standin import write_standin

    monkeypatch.setattr("scanners.internal.scanner.walk_headers", _boom)
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    proc = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, [InternalScanner()])
    raw = CLEAN_CASES["plain"]
    out = proc.process(make_request(raw, build_envelope(b"a@example.com", [b"b@example.org"])))
    assert out.code == 0  # accepted: kept in the journal, quarantined
    [ev] = [e for e in (from_json(x.body, x.raw) for x in journal.read(0, 10)) if isinstance(e, MessageScanned)]
    assert (ev.category, ev.action, ev.reason) == ("malformed", "quarantine", "internal-error")
    assert ev.raw_message.endswith(raw)
