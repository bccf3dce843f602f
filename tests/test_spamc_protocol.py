"""The spamc/spamd protocol core: requests, responses however they arrive, rule lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanners.protocols import ProtocolError
from scanners.protocols.spamc import (
    ResponseReader,
    build_request,
    checker_version,
    parse_response,
    report_rules,
    symbols,
)

rules = st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,30}", fullmatch=True), max_size=20)
scores = st.floats(min_value=-999, max_value=9999, allow_nan=False).map(lambda f: round(f, 1))

REPORT = (
    b'Spam detection software, running on the system "vm",\nhas identified this incoming email as '
    b"possible spam.\n\nContent analysis details:   (1000.0 points, 5.0 required)\n\n"
    b" pts rule name              description\n"
    b"---- ---------------------- --------------------------------------------------\n"
    b"-0.0 NO_RECEIVED            Informational: message has no Received headers\n"
    b"1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
    b" 2.5 URIBL_X                Contains an URL listed in the X blocklist\n"
    b"                            [URIs: example.com]\n\n"
)


@given(st.binary(max_size=2000), st.sampled_from(["SYMBOLS", "REPORT", "CHECK"]), st.text(max_size=40))
def test_request_has_exact_length_and_no_injected_header(message: bytes, cmd: str, user: str) -> None:
    req = build_request(cmd, message, user)
    head, _, body = req.partition(b"\r\n\r\n")
    assert body == message
    lines = head.split(b"\r\n")
    assert lines[0] == f"{cmd} SPAMC/1.5".encode() and f"Content-length: {len(message)}".encode() in lines
    assert all(line.split(b":")[0] in (b"Content-length", b"User") for line in lines[1:])


def wire(flag: bool, score: float, req: float, body: bytes, crlf: bool = True) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    return (
        b"SPAMD/1.1 0 EX_OK" + nl + b"Content-length: %d" % len(body) + nl
        + f"Spam: {flag} ; {score} / {req}".encode() + nl + nl + body
    )


@given(st.booleans(), scores, scores, rules, st.lists(st.integers(1, 50), max_size=10), st.booleans())
def test_response_however_split(
    flag: bool, score: float, req: float, names: list[str], cuts: list[int], crlf: bool
) -> None:
    data = wire(flag, score, req, ",".join(names).encode(), crlf)
    reader, got, pos = ResponseReader(), None, 0
    for cut in [*cuts, len(data)]:
        got = reader.feed(data[pos : pos + cut])
        pos += cut
        if got is not None:
            break
    assert got is not None and got.ok
    assert got.spam == (flag, score, req)
    assert symbols(got.body) == names


def test_errors_and_bare_status_lines() -> None:
    err = parse_response(b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n")
    assert err.code == 76 and not err.ok and "Bad header" in err.message
    assert parse_response(b"SPAMD/1.5 0 PONG\r\n").message == "PONG"
    for bad in (b"", b"HTTP/1.1 200 OK\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\n\r\nshort"):
        with pytest.raises(ProtocolError):
            parse_response(bad)
    with pytest.raises(ProtocolError):
        assert parse_response(b"SPAMD/1.1 0 EX_OK\r\nSpam: maybe\r\n\r\n").spam is not None


@given(st.binary(max_size=400))
def test_any_response_parses_or_is_a_protocol_error(data: bytes) -> None:
    try:
        resp = parse_response(data)
        resp.spam  # noqa: B018 - the header parse is what is exercised
    except ProtocolError:
        return


def test_report_rules_and_version() -> None:
    assert report_rules(REPORT) == [("NO_RECEIVED", -0.0), ("GTUBE", 1000.0), ("URIBL_X", 2.5)]
    assert report_rules(b"no table here") == []
    headers = b"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\nX-Spam-Flag: YES\n"
    assert checker_version(headers) == "4.0.1" and checker_version(b"Subject: x\n") is None
