"""rspamd's /checkv2 core: sanitised request headers and the JSON reply."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanners.protocols import ProtocolError
from scanners.protocols.rspamd import ACTIONS, parse_reply, request_headers, server_version


@given(st.text(max_size=80), st.text(max_size=80), st.lists(st.text(max_size=60), max_size=5))
def test_headers_never_carry_control_characters(helo: str, sender: str, rcpts: list[str]) -> None:
    headers = request_headers(ip="192.0.2.1", helo=helo, sender=sender, recipients=rcpts, queue_id="q1")
    for name, value in headers:
        assert not any(b < 0x20 or b == 0x7F for b in value), (name, value)
    assert ("IP", b"192.0.2.1") in headers and ("Queue-Id", b"q1") in headers
    assert [n for n, _ in headers].count("From") == 1
    assert [n for n, _ in headers].count("Rcpt") <= len(rcpts)


def test_one_rcpt_header_per_recipient_and_null_sender() -> None:
    headers = request_headers(sender="", recipients=["a@example.org", "b@example.org"], helo=None)
    assert headers == [("From", b"<>"), ("Rcpt", b"a@example.org"), ("Rcpt", b"b@example.org")]


@given(
    st.sampled_from(sorted(ACTIONS)),
    st.floats(-100, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
    st.dictionaries(st.from_regex(r"[A-Z_]{1,20}", fullmatch=True), st.floats(-10, 10, allow_nan=False)),
)
def test_reply_round_trip(action: str, score: float, required: float, symbols: dict[str, float]) -> None:
    body = json.dumps({
        "is_skipped": False, "score": score, "required_score": required, "action": action,
        "symbols": {k: {"name": k, "score": v} for k, v in symbols.items()}, "messages": {},
    }).encode()
    reply = parse_reply(200, body)
    assert (reply.action, reply.score, reply.required_score, reply.symbols) == (action, score, required, symbols)
    assert reply.spam == (action in ("add header", "rewrite subject", "reject", "discard", "quarantine"))


def test_bad_replies() -> None:
    for status, body in (
        (500, b'{"error": "boom"}'), (200, b"not json"), (200, b"[]"), (200, b'{"error": "no message"}'),
        (200, b'{"action": "explode", "score": 1}'), (200, b'{"action": "reject", "score": "high"}'),
        (200, b'{"action": "reject", "score": 1, "symbols": [1]}'),
    ):
        with pytest.raises(ProtocolError):
            parse_reply(status, body)


@given(st.binary(max_size=300))
def test_any_body_parses_or_is_a_protocol_error(body: bytes) -> None:
    try:
        parse_reply(200, body)
    except ProtocolError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3)))
def test_any_json_parses_or_is_a_protocol_error(obj: object) -> None:
    try:
        parse_reply(200, json.dumps(obj).encode())
    except ProtocolError:
        pass


def test_server_version() -> None:
    assert server_version("rspamd/3.4") == "3.4" and server_version(None) is None
