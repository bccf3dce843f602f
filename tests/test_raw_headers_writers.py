"""Raw 8-bit header bytes, through every writer: SQL (SQLite and PostgreSQL), maildirs, the
summary line, notifications. The events come from the real processor, on mail as it arrives
(RFC 6532 UTF-8, latin-1 from old clients, junk and control bytes, in headers, parameters and
file names), so what is tested is what the daemon writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from archive.consumer import ArchiveSink
from compliance.notify.audience import Audience, Kind, Notice
from compliance.notify.render import Renderer
from compliance.summaries import SummarySink
from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json, to_json
from ingest.journal import Journal
from ingest.log import LogRecord
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from ingest.summary_line import format_summary
from qscan.testing.standin import write_standin

ENV = build_envelope(b"a@example.com", [b"b@example.org"])
VALUES = ["Grüße aus Köln — 日本語".encode(), b"caf\xe9 cr\xe8me br\xfbl\xe9e", b"\xff\xfe\x80\x00\x01\x1b[31mred",
          b"=?utf-8?q?ok?= \xc3"]


def raw_mail(value: bytes, i: int) -> bytes:
    return (b"From: J\xf6rg <joerg@example.com>\nTo: b@example.org\nCc: " + value + b"\n"
            b"Subject: " + value + b"\nDate: " + value + b"\nMessage-ID: <" + value + b"@x>\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B" + str(i).encode() + b"\n\n"
            b"--B" + str(i).encode() + b"\nContent-Type: text/plain; charset=\"" + value + b"\"\n\nhello\n"
            b"--B" + str(i).encode() + b"\nContent-Type: application/octet-stream; name=\"" + value + b".txt\"\n"
            b"Content-Disposition: attachment; filename=\"" + value + b".txt\"\n\nAAAA\n--B"
            + str(i).encode() + b"--\n")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> list[MessageScanned]:
    tmp = tmp_path_factory.mktemp("raw8")
    journal = Journal(tmp / "j.db")
    p = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=write_standin(tmp / "qq", tmp / "rec"))),
                  journal, [])
    for i, value in enumerate(VALUES):
        assert p.process(make_request(raw_mail(value, i), ENV)).code == 0
    out = []
    for rec in journal.read(0, 100):
        ev = from_json(rec.body, rec.raw)
        assert isinstance(ev, MessageScanned)
        out.append(ev)
    assert len(out) == len(VALUES)
    return out


def test_json_and_summary_line(scanned: list[MessageScanned]) -> None:
    for ev, value in zip(scanned, VALUES, strict=True):
        to_json(ev).decode("utf-8")
        line = format_summary(ev)
        line.encode("utf-8")
        assert "\n" not in line and "\x1b" not in line and "\x00" not in line
        assert ev.headers.raw_value("Subject") == value


def test_sql_summaries(scanned: list[MessageScanned], migrated_url: str) -> None:
    sink = SummarySink(migrated_url)
    try:
        sink.apply([LogRecord(i + 1, ev) for i, ev in enumerate(scanned)], len(scanned))
    finally:
        sink.close()
    engine = create_engine(migrated_url)
    try:
        with engine.connect() as conn:
            subjects = [r[0] for r in conn.execute(text("SELECT subject FROM messages ORDER BY event_id"))]
    finally:
        engine.dispose()
    assert len(subjects) == len(VALUES)
    assert "Grüße aus Köln — 日本語" in subjects
    assert all("\x00" not in s for s in subjects)


def test_archive_and_quarantine_maildirs(scanned: list[MessageScanned], tmp_path: Path) -> None:
    sink = ArchiveSink(tmp_path / "archive", tmp_path / "quarantine")
    sink.apply([LogRecord(i + 1, ev) for i, ev in enumerate(scanned)], len(scanned))
    files = sorted((tmp_path / "archive").rglob("new/*"))
    assert len(files) == len(VALUES)
    for f in files:
        data = f.read_bytes()
        assert b"*** qscan Envelope Details Begin ***" in data


def test_notifications_render(scanned: list[MessageScanned]) -> None:
    r = Renderer(host="mx.example")
    for ev in scanned:
        for audience in (Audience.SENDER, Audience.ADMIN):
            out = r.render(ev, Notice("x@example.org", audience, Kind.POLICY, "de"))
            out.text.encode("utf-8")
            assert "\n" not in out.subject and "\r" not in out.subject
