"""Raw 8-bit bytes in headers (RFC 6532 mail, broken old clients, spam) never stop a message.

Field report: one mutated message in nine made the worker raise after scanning (surrogate-escaped
header text in the event's JSON); the client temp-failed and every retry did the same, so the
message was never delivered. Every summarised header, every MIME parameter and file name may
hold any byte 0x00-0xFF: the event keeps the display text (UTF-8 decoded, replacement for what
is not UTF-8) and the raw bytes, and every writer takes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json, to_json
from ingest.journal import Journal
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from ingest.summary_line import format_summary
from qscan.testing.standin import write_standin

ENV = build_envelope(b"a@example.com", [b"b@example.org"])
HEADERS = (b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID")


@pytest.fixture
def proc(tmp_path: Path):  # type: ignore[no-untyped-def]
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    return Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, []), journal


def events(journal: Journal) -> list[MessageScanned]:
    out = []
    for rec in journal.read(0, 1000):
        ev = from_json(rec.body, rec.raw)
        if isinstance(ev, MessageScanned):
            out.append(ev)
    return out


def message(name: bytes, value: bytes) -> bytes:
    return b"From: a@example.com\nTo: b@example.org\n" + name + b": " + value + b"\n\nbody\n"


@pytest.mark.parametrize("name", HEADERS)
@pytest.mark.parametrize("value", [
    "Grüße aus Köln".encode(),  # RFC 6532: raw UTF-8
    b"caf\xe9 cr\xe8me",  # latin-1 from an old client: not UTF-8
    b"\xff\xfe\x80\x00\x01",  # junk
])
def test_raw_8bit_header_is_delivered_and_recorded(proc, name: bytes, value: bytes) -> None:  # type: ignore[no-untyped-def]
    p, journal = proc
    raw = message(name, value)
    out = p.process(make_request(raw, ENV))
    assert out.code == 0, out.text
    [ev] = events(journal)
    assert ev.action == "deliver"
    text = to_json(ev).decode()  # what every consumer reads
    assert "\\ud8" not in text and "\\udc" not in text
    field = {b"From": "from_", b"To": "to", b"Cc": "cc", b"Subject": "subject", b"Date": "date",
             b"Message-ID": "message_id"}[name]
    if name not in (b"From", b"To"):  # (the message's first From/To are plain ASCII)
        assert getattr(ev.headers, field) == value.decode("utf-8", "replace")
        # the raw bytes are kept losslessly beside the display text
        assert ev.headers.raw_value(name.decode()) == value
    format_summary(ev).encode("utf-8")  # the summary line encodes


_bytes = st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_bytes, min_size=len(HEADERS), max_size=len(HEADERS)), fname=_bytes, param=_bytes)
def test_any_bytes_in_headers_params_and_filenames(proc, values: list[bytes], fname: bytes, param: bytes) -> None:  # type: ignore[no-untyped-def]
    p, journal = proc
    head = b"".join(n + b": " + v + b"\n" for n, v in zip(HEADERS, values, strict=True))
    raw = (head + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX; x-p=\"" + param + b"\"\n\n"
           b"--XX\nContent-Type: text/plain; charset=\"" + param + b"\"\n\nhello\n"
           b"--XX\nContent-Type: application/octet-stream; name=\"" + fname + b"\"\n"
           b"Content-Disposition: attachment; filename=\"" + fname + b"\"\n\nAAAA\n--XX--\n")
    before = len(events(journal))
    out = p.process(make_request(raw, ENV))
    evs = events(journal)
    assert len(evs) == before + 1, "every message leaves an event"
    ev = evs[-1]
    assert out.code == 0 and ev.action in ("deliver", "quarantine"), (out, ev.action, ev.reason)
    to_json(ev).decode("utf-8")
    format_summary(ev).encode("utf-8")


class Boom:
    name = "boom"
    version = "1"

    def scan(self, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("a scanner bug")


def test_scanner_bug_is_a_defined_outcome_not_a_retry_loop(tmp_path: Path) -> None:
    """A scanner that raises on a message would raise on every retry: that is not temporary."""
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    p = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, [Boom()])
    out = p.process(make_request(message(b"Subject", b"x"), ENV))
    assert out.code == 0
    [ev] = events(journal)
    assert (ev.action, ev.reason) == ("quarantine", "internal-error")
    assert any(f.name == "internal-error" and f.scanner == "boom" for f in ev.findings)


def test_error_action_deliver(tmp_path: Path) -> None:
    from scanners.result import Disposition

    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    opts = ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin), unparseable_action=Disposition.DELIVER)
    p = Processor(opts, journal, [Boom()])
    out = p.process(make_request(message(b"Subject", b"x"), ENV))
    assert out.code == 0
    [ev] = events(journal)
    assert ev.action == "deliver"


def test_failure_while_building_the_event_still_records_it(proc, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Whatever raises after the message is read (here: the header summary) ends in the journal."""
    import ingest.processor as mod

    def broken(*args):  # type: ignore[no-untyped-def]
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(mod, "merge_found_parts", broken)
    p, journal = proc
    out = p.process(make_request(message(b"Subject", b"x"), ENV))
    assert out.code == 0
    [ev] = events(journal)
    assert (ev.action, ev.reason) == ("quarantine", "internal-error")
    assert ev.raw_message.endswith(message(b"Subject", b"x"))
