"""The qmail-queue envelope parser: strict, total, never surprised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.envelope import (
    MAX_ADDRESS,
    AddressTooLong,
    EnvelopeError,
    build_envelope,
    parse_envelope,
)


def test_parse_simple() -> None:
    env = parse_envelope(b"Falice@example.com\0Tbob@example.org\0Tcarol@example.org\0\0")
    assert env.sender == b"alice@example.com"
    assert env.recipients == [b"bob@example.org", b"carol@example.org"]


def test_empty_sender_is_a_bounce() -> None:
    env = parse_envelope(b"F\0Tpostmaster@example.org\0\0")
    assert env.sender == b""
    assert env.recipients == [b"postmaster@example.org"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"F",
        b"Fa@b\0",  # EOF before the final NUL, no recipients
        b"Fa@b\0Tc@d\0",  # missing final NUL
        b"Fa@b\0Tc@d",  # recipient not terminated
        b"Fa@b\0\0",  # no recipients
        b"Fa@b\0Xc@d\0\0",  # recipient without T
        b"Fa@b\0c@d\0\0",
        b"Fa@b\0T\0\0",  # empty recipient
        b"Fa@b\0Tc@d\0\0junk",  # bytes after the terminator
        b"Ta@b\0\0",  # no F
        b"a@b\0Tc@d\0\0",
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(data)


def test_address_too_long() -> None:
    with pytest.raises(AddressTooLong):
        parse_envelope(b"F" + b"a" * (MAX_ADDRESS + 1) + b"\0Tb@c\0\0")
    with pytest.raises(AddressTooLong):
        parse_envelope(b"Fa@b\0T" + b"c" * (MAX_ADDRESS + 1) + b"\0\0")


address = st.binary(max_size=80).filter(lambda b: b"\0" not in b)


@given(address, st.lists(address.filter(bool), min_size=1, max_size=20))
def test_round_trip(sender: bytes, recipients: list[bytes]) -> None:
    raw = build_envelope(sender, recipients)
    env = parse_envelope(raw)
    assert env.sender == sender
    assert env.recipients == recipients
    assert env.raw == raw


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        env = parse_envelope(data)
    except EnvelopeError:
        return
    assert env.recipients
    assert build_envelope(env.sender, env.recipients) == data


@given(st.lists(st.sampled_from([b"F", b"T", b"\0", b"a@b", b"x"]), max_size=30))
def test_token_soup(tokens: list[bytes]) -> None:
    data = b"".join(tokens)
    try:
        parse_envelope(data)
    except EnvelopeError:
        pass
