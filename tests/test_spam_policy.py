"""Spam thresholds -> one ScanResult, and the header rewrites it asks for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanners.result import Disposition, Verdict
from scanners.rewrite import rewrite_headers
from scanners.spam_policy import REJECT_REPLY, SPAM_HEADERS, SpamPolicy, SpamScore, spam_result

MSG = b"From: a@example.com\nSubject: hello\nX-Spam-Status: No, forged\n\tby the sender\n\nbody\nSubject: x\n"


def test_ham_is_tagged_no_and_left_alone() -> None:
    r = spam_result("spamd", "4.0.1", SpamScore(-0.1, 5.0, False, ("NO_RELAYS",)), SpamPolicy(subject_prefix="[SPAM]"))
    assert r.verdict == Verdict.CLEAN and r.disposition == Disposition.NONE
    assert dict(r.add_headers) == {
        "X-Spam-Status": "No, score=-0.1 required=5.0 tests=NO_RELAYS", "X-Spam-Level": "", "X-Spam-Score": "-0.1",
    }
    assert (r.spam_score, r.spam_required) == (-0.1, 5.0)
    assert r.transform is not None
    out = r.transform(MSG)
    assert b"Subject: hello\n" in out and b"forged" not in out and out.endswith(b"\n\nbody\nSubject: x\n")


def test_spam_gets_flag_stars_and_subject_prefix() -> None:
    r = spam_result("spamd", "4.0.1", SpamScore(7.3, 5.0, True, ("A", "B")), SpamPolicy(subject_prefix="[SPAM]"))
    assert r.verdict == Verdict.SPAM and r.disposition == Disposition.NONE and r.score == 7.3
    headers = dict(r.add_headers)
    assert headers["X-Spam-Status"] == "Yes, score=7.3 required=5.0 tests=A,B"
    assert headers["X-Spam-Level"] == "*******" and headers["X-Spam-Flag"] == "YES"
    assert r.transform is not None and b"Subject: [SPAM] hello\n" in r.transform(MSG)


def test_highest_threshold_reached_wins() -> None:
    policy = SpamPolicy(quarantine_score=8, reject_score=15, drop_score=30)
    expect = {4.0: Disposition.NONE, 9.0: Disposition.QUARANTINE, 20.0: Disposition.REJECT, 1000.0: Disposition.DROP}
    for score, disposition in expect.items():
        r = spam_result("spamd", "v", SpamScore(score, 5.0, score >= 5), policy)
        assert r.disposition == disposition, score
    r = spam_result("spamd", "v", SpamScore(20.0, 5.0, True), policy)
    assert r.reply == REJECT_REPLY and r.reply.startswith("D")


def test_site_required_score_overrides_the_engine() -> None:
    r = spam_result("spamd", "v", SpamScore(4.0, 5.0, False), SpamPolicy(required_score=3.5))
    assert r.verdict == Verdict.SPAM and "required=3.5" in r.detail
    # quarantining below the spam line still files it as spam (the spam/ maildir)
    r = spam_result("spamd", "v", SpamScore(2.0, 5.0, False), SpamPolicy(quarantine_score=1.0))
    assert r.verdict == Verdict.SPAM and r.disposition == Disposition.QUARANTINE


def test_tag_score_and_engine_actions() -> None:
    r = spam_result("rspamd", "3.4", SpamScore(1.0, 15.0, False), SpamPolicy(tag_score=2.0))
    assert r.add_headers == () and r.transform is None
    r = spam_result("rspamd", "3.4", SpamScore(3.0, 15.0, False, forced=Disposition.TEMPFAIL), SpamPolicy())
    assert r.disposition == Disposition.TEMPFAIL and r.reply and r.reply.startswith("Z")


fields = st.lists(
    st.sampled_from([
        [b"Subject: hi"], [b"X-Spam-Status: Yes,", b"\ttests=A"], [b"x-spam-level: ***"], [b"To: b@example.org"],
        [b"Received: from x", b"\tby y"], [b"Subject:"], [b"X-Spam-Flag:YES"], [b"X-Spam-Statusx: kept"],
    ]),
    min_size=1, max_size=8,
)


@given(fields, st.binary(max_size=200), st.sampled_from([b"\n", b"\r\n"]))
def test_rewrite_drops_exactly_the_named_fields_and_keeps_the_body(
    header: list[list[bytes]], body: bytes, eol: bytes
) -> None:
    raw = b"".join(line + eol for field in header for line in field) + eol + body
    kept = [f for f in header if f[0].split(b":")[0].lower() not in {n.lower().encode() for n in SPAM_HEADERS}]
    assert rewrite_headers(raw, SPAM_HEADERS) == b"".join(line + eol for f in kept for line in f) + eol + body


@given(fields, st.binary(max_size=50), st.sampled_from([b"\n", b"\r\n"]))
def test_subject_prefix_goes_on_the_first_subject_only(header: list[list[bytes]], body: bytes, eol: bytes) -> None:
    raw = b"".join(line + eol for field in header for line in field) + eol + body
    out_head = rewrite_headers(raw, frozenset(), "[SPAM]").partition(eol + eol)[0]
    subjects = [line for line in out_head.split(eol) if line.lower().startswith(b"subject:")]
    assert subjects[0].startswith(b"Subject: [SPAM]")
    assert all(b"[SPAM]" not in s for s in subjects[1:])


@given(st.binary(max_size=400), st.sampled_from(["", "[SPAM]"]))
def test_rewrite_is_total(raw: bytes, prefix: str) -> None:
    out = rewrite_headers(raw, SPAM_HEADERS, prefix)
    assert isinstance(out, bytes)
    if not prefix:
        assert len(out) <= len(raw)
