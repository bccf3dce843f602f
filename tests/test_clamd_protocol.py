"""clamd's z-protocol core: INSTREAM framing, reply and version parsing, incremental reading."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanners.protocols import ProtocolError
from scanners.protocols.clamd import (
    Clean,
    Failed,
    Found,
    ReplyReader,
    Version,
    command,
    instream,
    parse_reply,
    parse_version,
)

# signature names: clamd's alphabet (no spaces, no ": "), e.g. Win.Test.EICAR_HDB-1, Heuristics.Zip
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,60}", fullmatch=True)


def unframe(frames: list[bytes]) -> bytes:
    assert frames[0] == b"zINSTREAM\0" and frames[-1] == b"\0\0\0\0"
    out = b""
    for frame in frames[1:-1]:
        (n,) = struct.unpack(">I", frame[:4])
        assert n == len(frame) - 4 and n > 0
        out += frame[4:]
    return out


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700))
def test_instream_frames_reassemble_to_the_data(data: bytes, chunk: int) -> None:
    frames = list(instream(data, chunk))
    assert unframe(frames) == data
    assert all(len(f) - 4 <= chunk for f in frames[1:-1])


def test_commands_are_nul_terminated() -> None:
    assert command("VERSION") == b"zVERSION\0"
    with pytest.raises(ValueError):
        command("VERSION\0zSHUTDOWN")


@given(names)
def test_found_names_are_parsed_generically(name: str) -> None:
    assert parse_reply(f"stream: {name} FOUND\0".encode()) == Found(name)
    assert parse_reply(f"1: stream: {name} FOUND".encode()) == Found(name)  # IDSESSION prefix
    assert parse_reply(f"/tmp/x y/z: {name} FOUND\0".encode()) == Found(name)


@given(names, st.from_regex(r"[0-9a-f]{32}|[0-9a-f]{64}", fullmatch=True), st.integers(0, 10**9))
def test_extended_detection_info(name: str, digest: str, size: int) -> None:
    assert parse_reply(f"stream: {name}({digest}:{size}) FOUND\0".encode()) == Found(name, digest, size)


def test_clean_errors_and_size_limit() -> None:
    assert parse_reply(b"stream: OK\0") == Clean()
    assert parse_reply(b"INSTREAM size limit exceeded. ERROR\0") == Failed(
        "INSTREAM size limit exceeded.", size_limit=True
    )
    assert parse_reply(b"stream: Can't allocate memory ERROR\0") == Failed("Can't allocate memory")
    for bad in (b"UNKNOWN COMMAND\0", b"", b"stream:  FOUND\0", b"PONG\0"):
        with pytest.raises(ProtocolError):
            parse_reply(bad)


@given(st.binary(max_size=300))
def test_any_reply_parses_or_is_a_protocol_error(data: bytes) -> None:
    try:
        reply = parse_reply(data)
    except ProtocolError:
        return
    assert isinstance(reply, Clean | Found | Failed)


def test_version() -> None:
    assert parse_version(b"ClamAV 1.4.6\0") == Version("1.4.6")
    v = parse_version(b"ClamAV 1.4.6/27471/Tue Nov 24 09:30:02 2026\0")
    assert v == Version("1.4.6", "27471", "Tue Nov 24 09:30:02 2026") and v.short == "1.4.6/27471"
    with pytest.raises(ProtocolError):
        parse_version(b"SpamAssassin 4.0\0")


@given(names, st.lists(st.integers(1, 20), min_size=1, max_size=10))
def test_reader_returns_the_reply_however_it_is_split(name: str, cuts: list[int]) -> None:
    wire = f"stream: {name} FOUND\0".encode()
    reader, got, pos = ReplyReader(), None, 0
    for cut in [*cuts, len(wire)]:
        piece, pos = wire[pos : pos + cut], pos + cut
        got = reader.feed(piece)
        if got is not None:
            break
    assert got is not None and parse_reply(got) == Found(name)


def test_reader_limits_and_eof() -> None:
    reader = ReplyReader(limit=10)
    with pytest.raises(ProtocolError):
        reader.feed(b"x" * 11)
    with pytest.raises(ProtocolError):
        ReplyReader().eof()
    reader = ReplyReader()
    assert reader.feed(b"INSTREAM size limit exceeded. ERROR") is None
    assert parse_reply(reader.eof()) == Failed("INSTREAM size limit exceeded.", size_limit=True)
