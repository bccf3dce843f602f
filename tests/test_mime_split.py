"""scanners.mime.split builds exactly feedparser's tree, or declines and feedparser does.

The property is differential: for any text, ``scanners.mime.parse.parse`` (fast path or fallback)
and the stdlib ``BytesParser`` give the same message objects - headers, defects, payload
strings, preambles, epilogues, default types - all the way down.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.corpus import generate
from qscan.testing.corpus import default_corpus_dir
from scanners.mime import parse as mime
from scanners.mime.split import parse_text
from tests.internal_corpus import CLEAN_CASES, FORMAT_CASES

_STDLIB = BytesParser(policy=mime.POLICY)


def tree(msg: Message) -> tuple[Any, ...]:
    payload = msg._payload  # type: ignore[attr-defined]
    return (
        type(msg).__name__,
        list(msg._headers),  # type: ignore[attr-defined]
        [(type(d).__name__, str(d)) for d in msg.defects],
        msg.preamble,
        msg.epilogue,
        msg.get_default_type(),
        [tree(p) for p in payload] if isinstance(payload, list) else payload,
    )


def assert_same(raw: bytes) -> None:
    assert tree(mime.parse(raw)) == tree(_STDLIB.parsebytes(raw))


def fast(raw: bytes) -> Message | None:
    return parse_text(raw.decode("ascii", "surrogateescape"), mime.POLICY)


def test_bench_corpus_same_tree_and_mostly_fast() -> None:
    msgs = [m for m in generate(400) if m.kind != "huge"]
    for m in msgs:
        assert_same(m.data)
    taken = sum(fast(m.data) is not None for m in msgs)
    assert taken >= 0.95 * len(msgs), f"fast path took {taken} of {len(msgs)}"


def test_internal_corpus_same_tree() -> None:
    for raw, _ in FORMAT_CASES.values():  # the malformed-MIME checks' own samples
        assert_same(raw)
    for raw in CLEAN_CASES.values():
        assert_same(raw)


MIXED = (
    b"From: a@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble line\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
    b"--inner--\r\ninner epilogue\r\n"
    b"--outer \t\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"Subject: inside\r\n\r\nforwarded body\r\n"
    b"--outer\r\n"
    b'Content-Type: application/octet-stream; name="x.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQF\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_nested_multipart_rfc822_and_whitespace_after_boundary() -> None:
    assert fast(MIXED) is not None
    assert_same(MIXED)
    msg = mime.parse(MIXED)
    assert msg.preamble == "preamble line"
    assert msg.epilogue == "epilogue\r\n"
    alt, fwd, binpart = msg.get_payload()
    assert alt.epilogue == "inner epilogue"
    assert [p.get_payload() for p in alt.get_payload()] == ["plain\r\n", "<p>html</p>"]
    assert fwd.get_payload()[0]["Subject"] == "inside"
    assert binpart.get_payload(decode=True) == bytes(range(6))


def test_declines_what_it_does_not_reproduce() -> None:
    head = b"Content-Type: multipart/mixed; boundary=b\n\n"
    cases = {
        "bare CR": b"Subject: x\r\rbody\n",
        "no boundary": b"Content-Type: multipart/mixed\n\nbody\n",
        "no start": head + b"just text\n",
        "no close": head + b"--b\n\nbody\n",
        "close first": head + b"--b--\n",
        "repeated": head + b"--b\n--b\n\nx\n--b--\n",
        "digest": b"Content-Type: multipart/digest; boundary=b\n\n--b\n\nx\n--b--\n",
        "dsn": b"Content-Type: message/delivery-status\n\nA: b\n\nC: d\n",
        "separator": b"Subject: x\nnot a header\nbody\n",
        "From last": b"Subject: x\nFrom someone\n",
    }
    for name, raw in cases.items():
        assert fast(raw) is None, name
        assert_same(raw)


def test_invalid_multipart_transfer_encoding_is_a_defect_on_both_paths() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n"
           b"--b\n\nx\n--b--\n")
    assert fast(raw) is not None
    assert_same(raw)
    assert any(type(d).__name__ == "InvalidMultipartContentTransferEncodingDefect"
               for d in mime.parse(raw).defects)


def test_deep_nesting_falls_back_not_recursion_error() -> None:
    depth = 80
    raw = b"".join(b"Content-Type: message/rfc822\n\n" for _ in range(depth)) + b"Subject: x\n\nhi\n"
    assert fast(raw) is None
    assert_same(raw)


# -- generated input -------------------------------------------------------------------
# Lines drawn from a pool that exercises every branch: headers, continuations, blank
# lines in both line-end styles, boundary lines of two nested boundaries with and without
# the close marker, trailing blanks or junk, and the shapes the fast path declines.
_POOL = [
    "Content-Type: multipart/mixed; boundary=b{e}",
    'Content-Type: multipart/alternative; boundary="c"{e}',
    "Content-Type: multipart/digest; boundary=c{e}",
    "Content-Type: message/rfc822{e}",
    "Content-Type: message/delivery-status{e}",
    "Content-Type: text/plain; charset=utf-8{e}",
    "Content-Type: multipart/related{e}",
    "Content-Transfer-Encoding: base64{e}",
    "Subject: hello{e}",
    " continued{e}",
    "From someone{e}",
    ": no name{e}",
    "{e}",
    "{e}",
    "--b{e}",
    "--b{e}",
    "--b--{e}",
    "--b \t{e}",
    "--bx{e}",
    "--b--junk{e}",
    "--c{e}",
    "--c--{e}",
    "body text{e}",
    "aGVsbG8gd29ybGQ={e}",
    "caf\udce9{e}",
    "--b",
    "--c--",
    "tail",
]


@st.composite
def soups(draw: st.DrawFn) -> bytes:
    eols = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3))
    lines = draw(st.lists(st.tuples(st.sampled_from(_POOL), st.sampled_from(eols)), max_size=40))
    text = "".join(line.format(e=eol) for line, eol in lines)
    return text.encode("ascii", "surrogateescape")


@st.composite
def structured(draw: st.DrawFn, depth: int = 0) -> str:
    """A well-formed-ish MIME tree, so the fast path is exercised beyond the pool."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    headers = draw(st.lists(st.sampled_from(["Subject: s", "X-A: 1", " folded", "From: a@b"]),
                            max_size=3))
    kind = draw(st.sampled_from(["leaf", "leaf", "multi", "rfc822"] if depth < 3 else ["leaf"]))
    head = "".join(h + eol for h in headers)
    if kind == "leaf":
        body = draw(st.text(st.sampled_from("ab -\t\r\n"), max_size=30))
        return head + eol + body
    if kind == "rfc822":
        return head + "Content-Type: message/rfc822" + eol + eol + draw(structured(depth + 1))
    boundary = draw(st.sampled_from(["b", "c", "=_x", "b c"]))
    parts = draw(st.lists(structured(depth + 1), min_size=1, max_size=3))
    blanks = draw(st.sampled_from(["", " ", "\t "]))
    out = head + f'Content-Type: multipart/mixed; boundary="{boundary}"' + eol + eol
    out += draw(st.sampled_from(["", "preamble" + eol, eol]))
    for part in parts:
        out += f"--{boundary}{blanks}{eol}{part}{eol}"
    out += f"--{boundary}--" + draw(st.sampled_from(["", eol, eol + "epi" + eol, "  " + eol]))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(soups())
def test_generated_line_soup_same_tree(raw: bytes) -> None:
    assert_same(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structured())
def test_generated_trees_same_tree(text: str) -> None:
    assert_same(text.encode("ascii", "surrogateescape"))


def test_public_header_parser_fallback_gives_the_same_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from scanners.mime import split as mime_split

    monkeypatch.setattr(mime_split, "_FEED_HEADERS", None)  # a Python without the private routine
    for raw in (MIXED, *(m.data for m in generate(60) if m.kind != "huge")):
        assert fast(raw) is not None
        assert_same(raw)


def test_nested_parts_are_not_copied_per_level() -> None:
    import tracemalloc

    raw = b"Subject: deep\n\n" + b"x" * 1_000_000 + b"\n"
    for level in range(60):
        b = b"b%d" % level
        raw = (b"Content-Type: multipart/mixed; boundary=" + b + b"\n\n--" + b + b"\n"
               + raw + b"\n--" + b + b"--\n")
    assert fast(raw) is not None
    tracemalloc.start()
    try:
        mime.parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(raw), peak  # a copy of the body per level would be ~60x


def test_demo_corpus_and_cpython_email_samples_same_tree() -> None:
    import email
    from pathlib import Path

    files = sorted(default_corpus_dir().glob("*.eml"))
    assert len(files) >= 20
    # CPython's own email test messages (odd structures collected over the years), where the
    # interpreter ships its test package; the demo corpus above is always there.
    stdlib = Path(email.__file__).resolve().parent.parent / "test" / "test_email" / "data"
    files += sorted(stdlib.glob("msg_*.txt"))
    for f in files:
        assert_same(f.read_bytes())
