"""The `index` consumer on SQLite and PostgreSQL: what it indexes, replay, tombstones, limits."""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest

from compliance.discovery.consumer import IndexSink
from compliance.discovery.query import parse
from compliance.discovery.search import Searcher
from compliance.discovery.settings import DiscoverySettings
from ingest.event import MessageDeleted
from ingest.ids import uuid7
from ingest.log import LogRecord
from tests.dlp_docs import docx, mail, pdf, xlsx, zip_of
from tests.factories import make_event

SETTINGS = DiscoverySettings(max_part_size=2 * 1024 * 1024, max_text=200_000, max_time=3.0,
                             workers=1)


@pytest.fixture
def sink(migrated_url: str, tmp_path: Path) -> Iterator[IndexSink]:
    s = IndexSink(migrated_url, tmp_path / "discovery.db", SETTINGS)
    try:
        yield s
    finally:
        s.close()


def found(sink: IndexSink, query: str) -> set[str]:
    return {h.event_id for h in Searcher(sink.index).search(parse(query), page_size=1000).hits}


def deleted(ref: str) -> MessageDeleted:
    return MessageDeleted(event_id=str(uuid7()), time=datetime.now(UTC), host="mx1",
                          ref_event_id=ref, ref_host="mx1.example.com", actor="op@mx1", location="archive",
                          reason="retention")


@functools.cache
def zip_bomb() -> bytes:
    """A zip whose one member inflates to 200 MB of zeros."""
    out = BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.txt", b"0" * (200 * 1024 * 1024))
    return out.getvalue()


def test_indexes_headers_bodies_and_attachments(sink: IndexSink) -> None:
    raw = mail(body="The board approved the payment.", subject="minutes",
               html="<p>Call me about <b>Zephyr</b> tonight</p>",
               attachments=[("plan.pdf", "application/pdf", pdf(["Project Nightingale budget"])),
                            ("memo.docx", "application/octet-stream", docx(["Falcon memo text"])),
                            ("sheet.xlsx", "application/octet-stream", xlsx([["Osprey", "12"]])),
                            ("bundle.zip", "application/zip",
                             zip_of({"inner/notes.txt": "Kestrel inside the archive"}))])
    ev = make_event(subject="minutes", recipients=["carol@example.org"],
                    cc="dave@example.net", raw=raw)
    sink.apply([LogRecord(1, ev)], 1)
    assert sink.position() == 1
    for query in ("body:payment", "body:zephyr", "attachment:nightingale", "attachment:falcon",
                  "attachment:osprey", "attachment:kestrel", "attachment:plan.pdf",
                  "attachment:notes.txt", "subject:minutes", "from:alice", "to:carol",
                  '"board approved"', "nightingale NEAR/2 budget"):
        assert found(sink, query) == {ev.event_id}, query
    assert found(sink, "body:nightingale") == set()


def test_replay_is_idempotent_and_tombstones_remove(sink: IndexSink) -> None:
    a = make_event(subject="alpha contract", raw=mail(body="alpha text", subject="alpha"))
    b = make_event(subject="beta contract", raw=mail(body="beta text", subject="beta"))
    records = [LogRecord(1, a), LogRecord(2, b), LogRecord(3, deleted(a.event_id))]
    sink.apply(records, 3)
    assert found(sink, "contract") == {b.event_id}
    sink.set_position(0)  # replay: the same log gives the same index
    assert sink.position() == 0
    sink.apply(records[:2], 2)
    assert found(sink, "contract") == {a.event_id, b.event_id}
    sink.apply(records[2:], 3)
    assert found(sink, "contract") == {b.event_id}
    sink.apply(records, 3)  # a duplicate delivery of the whole batch
    result = Searcher(sink.index).search(parse("contract"))
    assert result.counts.total == 1 and sink.position() == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_content_never_stops_it(migrated_url: str, tmp_path: Path, workers: int) -> None:
    sink = IndexSink(migrated_url, tmp_path / "discovery.db", replace(SETTINGS, workers=workers))
    try:
        hostile(sink)
    finally:
        sink.close()


def hostile(sink: IndexSink) -> None:
    bomb = make_event(subject="bomb", raw=mail(body="bomb body", attachments=[
        ("bomb.zip", "application/zip", zip_bomb())]))
    huge = make_event(subject="huge", raw=mail(body="huge body", attachments=[
        ("big.txt", "text/plain", b"word " * (1024 * 1024))]))
    broken_pdf = make_event(subject="badpdf", raw=mail(body="pdf body", attachments=[
        ("broken.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(5000))]))
    garbage = make_event(subject="garbage", raw=os.urandom(20_000) + b"\n\n\xff\xfe garbled")
    nul = make_event(subject="nul\x00byte", raw=b"Subject: x\n\nnul\x00inside text\n")
    ok = make_event(subject="after", raw=mail(body="still indexed after the bad ones"))
    events = [bomb, huge, broken_pdf, garbage, nul, ok]
    sink.apply([LogRecord(i, ev) for i, ev in enumerate(events, 1)], len(events))
    assert sink.position() == len(events)
    assert found(sink, '"still indexed"') == {ok.event_id}
    assert found(sink, "body:bomb") == {bomb.event_id}
    assert found(sink, "attachment:bomb.zip") == {bomb.event_id}
    assert found(sink, "attachment:big.txt") == {huge.event_id}
    assert found(sink, "nul") == {nul.event_id}
    result = Searcher(sink.index).search(parse("body:body"))
    notes = {h.event_id: h.incomplete for h in result.hits}
    assert notes[huge.event_id] and "max_part_size" in notes[huge.event_id]
    assert notes[bomb.event_id]
    assert result.counts.incomplete >= 2


def test_oversized_event_is_indexed_by_headers(sink: IndexSink) -> None:
    ev = make_event(subject="oversized report", raw=b"").model_copy(update={"size": 99_000_000})
    sink.apply([LogRecord(1, ev)], 1)
    hits = Searcher(sink.index).search(parse("subject:oversized")).hits
    assert [h.event_id for h in hits] == [ev.event_id]
    assert hits[0].incomplete and "headers only" in hits[0].incomplete


def test_parallel_extraction_is_the_same_and_survives_a_dead_worker(
        migrated_url: str, tmp_path: Path) -> None:
    events = [make_event(subject=f"s{i}", raw=mail(body=f"body number{i}", subject=f"s{i}",
                                                   attachments=[("a.pdf", "application/pdf",
                                                                 pdf([f"pdfword{i}"]))]))
              for i in range(6)]
    one = IndexSink(migrated_url, tmp_path / "one.db", replace(SETTINGS, workers=1))
    two = IndexSink(migrated_url, tmp_path / "two.db", replace(SETTINGS, workers=2))
    try:
        assert two.documents(events) == one.documents(events)
        assert two._pool is not None
        for proc in list(two._pool._processes.values()):  # a worker crashes (SIGKILL)
            proc.kill()
            proc.join()
        two.apply([LogRecord(i, ev) for i, ev in enumerate(events, 1)], len(events))
        assert found(two, "attachment:pdfword3") == {events[3].event_id}
        hits = Searcher(two.index).search(parse("body:body")).hits
        assert len(hits) == 6 and not any(h.incomplete for h in hits)
    finally:
        one.close()
        two.close()
