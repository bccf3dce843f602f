"""The client<->daemon frame codec: any chunking decodes the same; garbage is a ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import frames
from ingest.frames import FrameDecoder, ProtocolError, RequestAssembler


def request_bytes(message: bytes, envelope: bytes, attrs: dict[str, str]) -> bytes:
    out = [frames.encode(frames.HELLO, frames.PROTOCOL)]
    out += [frames.encode(frames.ATTR, f"{k}={v}".encode()) for k, v in attrs.items()]
    for i in range(0, len(message), 1000):
        out.append(frames.encode(frames.MESSAGE, message[i : i + 1000]))
    out += [frames.encode(frames.ENVELOPE, envelope), frames.encode(frames.END)]
    return b"".join(out)


def assemble(data: bytes, cuts: list[int], max_message: int = 1 << 20) -> RequestAssembler:
    dec = FrameDecoder()
    req = RequestAssembler(max_message)
    prev = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        for kind, payload in dec.feed(data[prev:cut]):
            req.add(kind, payload)
        prev = cut
    return req


@given(
    st.binary(max_size=5000),
    st.dictionaries(st.sampled_from(["TCPREMOTEIP", "RELAYCLIENT", "HELO"]), st.text(max_size=20)),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_any_chunking_round_trips(message: bytes, attrs: dict[str, str], cuts: list[int]) -> None:
    envelope = b"Fa@b\0Tc@d\0\0"
    req = assemble(request_bytes(message, envelope, attrs), cuts)
    assert req.done
    assert req.message() == message
    assert req.envelope == envelope
    assert req.attrs == attrs


def test_oversized_message_is_drained_not_kept() -> None:
    req = assemble(request_bytes(b"x" * 5000, b"Fa@b\0Tc@d\0\0", {}), [], max_message=1000)
    assert req.done and req.oversized and req.size == 5000 and req.message() == b""


@pytest.mark.parametrize(
    "sequence",
    [
        [(frames.MESSAGE, b"x")],  # no hello
        [(frames.HELLO, b"QSCAN/9")],
        [(frames.HELLO, frames.PROTOCOL), (frames.END, b"")],  # end without envelope
        [(frames.HELLO, frames.PROTOCOL), (frames.ENVELOPE, b"e"), (frames.MESSAGE, b"m")],
        [(frames.HELLO, frames.PROTOCOL), (frames.ENVELOPE, b"e"), (frames.ENVELOPE, b"e")],
        [(frames.HELLO, frames.PROTOCOL), (frames.MESSAGE, b"m"), (frames.ATTR, b"A=1")],
        [(frames.HELLO, frames.PROTOCOL), (frames.ATTR, b"novalue")],
        [(frames.HELLO, frames.PROTOCOL), (frames.RESULT, b"0")],
    ],
)
def test_order_violations(sequence: list[tuple[bytes, bytes]]) -> None:
    req = RequestAssembler(1000)
    with pytest.raises(ProtocolError):
        for kind, payload in sequence:
            req.add(kind, payload)


def test_unknown_and_oversized_frames() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"Z\0\0\0\0")
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"A" + (frames.MAX_CONTROL + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"M" + (frames.MAX_CHUNK + 1).to_bytes(4, "big"))


@pytest.mark.parametrize(
    ("code", "text"), [(0, None), (82, "Dvirus found (#5.7.1)"), (82, "Ztry later"), (71, None)]
)
def test_result_round_trip(code: int, text: str | None) -> None:
    [(kind, payload)] = FrameDecoder().feed(frames.encode_result(code, text))
    assert kind == frames.RESULT
    assert frames.decode_result(payload) == (code, text)


@pytest.mark.parametrize("payload", [b"", b"x", b"300", b"-1"])
def test_bad_results(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        frames.decode_result(payload)


@given(st.binary(max_size=400))
def test_garbage_is_only_ever_a_protocol_error(data: bytes) -> None:
    req = RequestAssembler(1000)
    try:
        for kind, payload in FrameDecoder().feed(data):
            req.add(kind, payload)
    except ProtocolError:
        pass
