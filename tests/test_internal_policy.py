"""Policy rules: every match type, every action, ordering, linting, RE2 safety, Qmail-Scanner import."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from scanners.internal.policy import PolicyError, RuleSet, lint, load_rules, parse_rules
from scanners.internal.qs_import import import_events
from scanners.internal.safe_regex import RegexError, compile_regex
from scanners.internal.scanner import InternalScanner
from scanners.result import Disposition, ScanResult, Verdict
from tests.internal_corpus import HEAD, TEXT_PART, attachment, context, multipart, pe_bytes, zip_bytes

PDF = multipart(TEXT_PART, attachment("report.pdf", b"%PDF-1.4\n" + b"x" * 100, b"application/pdf"))
EXE_IN_ZIP = multipart(TEXT_PART, attachment("tools.zip", zip_bytes({"bin/setup.exe": pe_bytes()})))
PLAIN = HEAD + b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_ILOVEYOU?=\nContent-Type: text/plain\n\nHi.\n"


def ruleset(text: str) -> RuleSet:
    compiled, problems = parse_rules(text)
    assert [p for p in problems if p.level == "error"] == []
    return RuleSet(rule for _i, _s, rule in compiled)


def run(rules: str, raw: bytes, **ctx: object) -> list[ScanResult]:
    scanner = InternalScanner(rules=ruleset(rules))
    return scanner.scan(context(raw, **ctx))  # type: ignore[arg-type]


def decided(results: list[ScanResult]) -> ScanResult | None:
    acting = [r for r in results if r.disposition not in (Disposition.NONE,)]
    terminal = [r for r in acting if not r.add_headers]
    return terminal[-1] if terminal else None


def rule(match: str, action: str = "quarantine", rid: str = "r1", extra: str = "") -> str:
    return f'[[rule]]\nid = "{rid}"\ndescription = "test rule"\naction = "{action}"\n{extra}\n{match}\n'


MATCHES = [
    # (condition, message, context, should match)
    ('filename = ["*.PDF"]', PDF, {}, True),
    ('filename = ["*.doc"]', PDF, {}, False),
    (r'filename_regex = ['"'"r'^rep.rt\.pdf$'"'"']', PDF, {}, True),
    ('declared_type = ["application/*"]', PDF, {}, True),
    ('declared_type = ["image/*"]', PDF, {}, False),
    ('detected_type = ["application/pdf"]', PDF, {}, True),
    ('detected_type = ["application/vnd.microsoft.portable-executable", "application/x-dosexec"]',
     EXE_IN_ZIP, {}, True),
    ('filename = ["*.exe"]\nin_archive = true', EXE_IN_ZIP, {}, True),
    ('filename = ["*.exe"]\nin_archive = false', EXE_IN_ZIP, {}, False),
    ('min_size = 100\nfilename = ["*.pdf"]', PDF, {}, True),
    ('min_size = 1000\nfilename = ["*.pdf"]', PDF, {}, False),
    ('max_size = 50\nfilename = ["*.pdf"]', PDF, {}, False),
    ('encrypted = true', PDF, {}, False),
    ("header = { Subject = 'grüße iloveyou' }", PLAIN, {}, True),  # RFC 2047-decoded, case-insensitive
    ("header = { Subject = '^ILOVEYOU' }", PLAIN, {}, False),
    ("header = { X-Missing = '.' }", PLAIN, {}, False),
    ('sender = ["*@example.com"]', PLAIN, {"sender": "Alice@Example.COM"}, True),
    ('sender = ["bob@*"]', PLAIN, {}, False),
    ('sender_domain = ["example.com"]', PLAIN, {}, True),
    ('recipient = ["bob@example.org"]', PLAIN, {}, True),
    ('recipient = ["carol@example.org"]', PLAIN, {"recipients": ["dan@example.org", "carol@example.org"]}, True),
    ('recipient_domain = ["*.example.net"]', PLAIN, {"recipients": ["x@mail.example.net"]}, True),
    ('recipient_domain = ["example.net"]', PLAIN, {}, False),
    ('client_ip = ["192.0.2.0/24"]', PLAIN, {}, True),
    ('client_ip = ["198.51.100.7"]', PLAIN, {}, False),
    ('client_ip = ["2001:db8::/32"]', PLAIN, {"client_ip": "2001:db8::25"}, True),
    ('client_ip = ["192.0.2.0/24"]', PLAIN, {"client_ip": None}, False),
    ("relay = true", PLAIN, {"relay": True}, True),
    ("relay = true", PLAIN, {}, False),
    ('direction = "outbound"', PLAIN, {"relay": True}, True),
    ('direction = "inbound"', PLAIN, {"relay": True}, False),
    ('finding = ["double-extension"]', multipart(TEXT_PART, attachment("a.doc.exe", b"x")), {}, True),
    ('finding = ["double-extension"]', PDF, {}, False),
    ("message_min_size = 10", PLAIN, {}, True),
    ("message_max_size = 10", PLAIN, {}, False),
]


@pytest.mark.parametrize("i", range(len(MATCHES)))
def test_match_types(i: int) -> None:
    cond, raw, ctx, expected = MATCHES[i]
    results = run(rule(cond), raw, **ctx)
    got = decided(results)
    assert (got is not None and got.name == "r1") == expected, (cond, results)


def test_attachment_conditions_hold_for_one_and_the_same_attachment() -> None:
    # (not an .exe: the default policy would decide on that by itself)
    raw = multipart(TEXT_PART, attachment("a.pdf", b"%PDF-1.4\n", b"application/pdf"),
                    attachment("b.dat", b"data", b"application/octet-stream"))
    assert decided(run(rule('filename = ["*.pdf"]\ndeclared_type = ["application/octet-stream"]'), raw)) is None
    assert decided(run(rule('filename = ["*.dat"]\ndeclared_type = ["application/octet-stream"]'), raw))


@pytest.mark.parametrize("action,disposition", [
    ("quarantine", Disposition.QUARANTINE), ("reject", Disposition.REJECT),
    ("tempfail", Disposition.TEMPFAIL), ("drop", Disposition.DROP),
])
def test_terminal_actions(action: str, disposition: Disposition) -> None:
    [r] = run(rule('filename = ["*.pdf"]', action, extra='category = "policy"'), PDF)
    assert r.disposition == disposition and r.verdict == Verdict.POLICY and r.name == "r1"
    assert "test rule" in r.detail and "2 (report.pdf)" in r.detail
    if action == "reject":
        assert r.reply == "Dtest rule (#5.7.1)"
    elif action == "tempfail":
        assert r.reply == "Ztest rule, try again later (#4.7.1)"
    else:
        assert r.reply is None


def test_reject_with_custom_reply_and_category() -> None:
    [r] = run(rule('header = { Subject = "iloveyou" }', "reject",
                   extra='reply = "ILOVEYOU worm refused (#5.7.1)"\ncategory = "virus"'), PLAIN)
    assert r.reply == "DILOVEYOU worm refused (#5.7.1)" and r.verdict == Verdict.VIRUS


def test_tag_adds_header_and_evaluation_goes_on() -> None:
    rules = (rule('filename = ["*.pdf"]', "tag", "tag-pdf", extra='tag_header = "X-Has-PDF: yes"')
             + rule('filename = ["*.pdf"]', "quarantine", "q-pdf"))
    results = run(rules, PDF)
    assert [(r.name, r.disposition) for r in results] == [
        ("tag-pdf", Disposition.DELIVER), ("q-pdf", Disposition.QUARANTINE)]
    assert results[0].add_headers == (("X-Has-PDF", "yes"),)
    [default_tag] = run(rule('filename = ["*.pdf"]', "tag", "plain-tag"), PDF)
    assert default_tag.add_headers == (("X-qscan-Policy", "plain-tag"),)


def test_first_terminal_rule_wins() -> None:
    rules = rule('filename = ["*.pdf"]', "tempfail", "first") + rule('filename = ["*.pdf"]', "reject", "second")
    [r] = run(rules, PDF)
    assert r.name == "first"


def test_allow_stops_evaluation_and_exempts_from_check_rules() -> None:
    raw = multipart(TEXT_PART, attachment("invoice.pdf.exe", b"MZ"))
    [builtin] = [r for r in run("", raw) if r.disposition != Disposition.NONE]
    assert builtin.name == "double-extension"
    results = run(rule('sender = ["trusted@example.com"]', "allow", "trusted")
                  + rule('filename = ["*.exe"]', "reject", "no-exe"), raw, sender="trusted@example.com")
    assert [(r.name, r.verdict, r.disposition) for r in results] == [
        ("double-extension", Verdict.CLEAN, Disposition.NONE),  # still recorded
        ("banned-extension", Verdict.CLEAN, Disposition.NONE),
        ("trusted", Verdict.CLEAN, Disposition.DELIVER),
    ]


def test_a_site_rule_on_a_finding_preempts_the_check_default() -> None:
    raw = multipart(TEXT_PART, attachment("invoice.pdf.exe", b"MZ"))
    results = run(rule('finding = ["double-extension"]', "reject", "dx", extra='reply = "no thanks"'), raw)
    final = decided(results)
    assert final is not None and final.name == "dx" and final.reply == "Dno thanks"


def test_lint_reports_bad_regex_unreachable_and_schema_errors() -> None:
    text = (rule('filename = ["*.exe", "*.scr"]', rid="broad")
            + rule('filename = ["*.exe"]\nsender = ["x@example.com"]', "reject", "narrow")
            + rule("header = { Subject = '(a)\\1' }", "tag", "backref")
            + rule('client_ip = ["300.1.1.1"]', rid="badnet")
            + rule('filename = ["*.exe"]', rid="broad")
            + '[[rule]]\nid = "typo"\naction = "quarantine"\nfilname = ["*.exe"]\n'
            + rule('finding = ["no-such-check"]', rid="unknown-finding"))
    problems = [str(p) for p in lint(text, "p.toml")]
    joined = "\n".join(problems)
    assert "rule #2 (narrow): error: unreachable: rule 'broad'" in joined
    assert "rule #3 (backref): error: header Subject: bad regex" in joined
    assert "rule #4 (badnet): error: client_ip" in joined
    assert "rule #5 (broad): error: duplicate id" in joined
    assert "rule #6 (typo): error: filname: unknown key" in joined
    assert "rule #7 (unknown-finding): error: finding: unknown check" in joined
    assert lint("[[rule]\n", "p.toml")[0].message.startswith("TOML syntax error")


def test_tag_rules_do_not_shadow() -> None:
    text = rule("", "tag", "t") + rule('filename = ["*.exe"]', rid="q")
    assert lint(text) == []


def test_load_rules_refuses_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text(rule("filename_regex = ['(?<=x)y']"))
    with pytest.raises(PolicyError) as exc:
        load_rules(bad)
    assert "bad regex" in str(exc.value)
    assert len(load_rules(None)) == 0


def test_rule_regexes_are_linear_time() -> None:
    evil = compile_regex(r"(a+)+$")
    started = time.perf_counter()
    assert evil.search("a" * 50_000 + "!") is None
    assert time.perf_counter() - started < 0.5
    with pytest.raises(RegexError):
        compile_regex(r"(\w)\1")


QS_EVENTS = """\
# Qmail-Scanner quarantine-events.txt
winmail.dat\tSIZE=-1\tPolicy: Rich Text Format emails are not allowed
.vbs\t\tSIZE=-1\tPolicy: VBS files not allowed per Company security policy
happy99.exe\tSIZE=10000\tHappy99 Trojan
ILOVEYOU\tSubject:\tLove Letter Virus/Trojan
Matrix has you\tPolicy-Subject:\tPolicy: no matrix
^[a-z]{8}\\.zip$\tSIZE=-1\tPolicy: outbreak of random zips
broken line without tabs
.pif\t-1\tQS 1.x style bare size
"""


def test_quarantine_events_import() -> None:
    result = import_events(QS_EVENTS)
    assert result.skipped == ["line 8: expected value<TAB>type<TAB>description"]
    toml = result.toml()
    rules = tomllib.loads(toml)["rule"]
    by_id = {r["id"]: r for r in rules}
    assert by_id["qs-2"] == {"id": "qs-2", "description": "Policy: Rich Text Format emails are not allowed",
                             "action": "quarantine", "category": "policy", "filename": ["winmail.dat"]}
    assert by_id["qs-3"]["filename"] == ["*.vbs"]
    assert by_id["qs-4"]["min_size"] == by_id["qs-4"]["max_size"] == 10000
    assert by_id["qs-4"]["category"] == "virus"
    assert by_id["qs-5"]["header"] == {"Subject": "ILOVEYOU"}
    assert by_id["qs-6"]["header"] == {"Subject": "Matrix has you"} and by_id["qs-6"]["category"] == "policy"
    assert by_id["qs-7"]["filename_regex"] == ["^[a-z]{8}\\.zip$"]
    assert by_id["qs-9"]["filename"] == ["*.pif"]
    assert [p for p in lint(toml) if p.level == "error"] == []
    # the imported rules work
    scanner = InternalScanner(rules=ruleset(toml))
    [r] = scanner.scan(context(PLAIN))
    assert r.name == "qs-5" and r.verdict == Verdict.VIRUS and r.disposition == Disposition.QUARANTINE
    raw = multipart(TEXT_PART, attachment("abcdefgh.zip", zip_bytes({"a.txt": b"x"})))
    [r] = scanner.scan(context(raw))
    assert r.name == "qs-7" and r.verdict == Verdict.POLICY
