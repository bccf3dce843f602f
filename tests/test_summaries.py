"""The summaries consumer: rows, positions, idempotent replays, queue failures.

Every test runs on SQLite and on PostgreSQL (``migrated_url``, tests/pg.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from compliance import canonical
from compliance.summaries import SummarySink
from ingest.event import (
    Action,
    Category,
    ClientInfo,
    Finding,
    HoldCreated,
    HoldReleased,
    MessageDeleted,
    to_json,
)
from ingest.journal import Journal
from ingest.log import ConsumerSettings, JournalReader, LogRecord, run_consumer
from ingest.summary_line import format_summary
from tests.factories import make_event, make_queue_failed
from tests.pg import FreshDatabases

TABLES = {"messages": "event_id", "recipients": "id", "findings": "id"}


@pytest.fixture
def url(migrated_url: str) -> str:
    return migrated_url


@pytest.fixture
def sink(url: str) -> Iterator[SummarySink]:
    s = SummarySink(url)
    yield s
    s.close()


def records(events: list[Any], start: int = 1) -> list[LogRecord]:
    return [LogRecord(start + i, ev) for i, ev in enumerate(events)]


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY {pk}"))]
                for t, pk in TABLES.items()}


def row(engine: Engine, event_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM messages WHERE event_id = :e"), {"e": event_id})
        return dict(result.mappings().one())


def as_utc(value: Any) -> datetime:
    """A timestamp read with plain SQL: text on SQLite, an aware datetime on PostgreSQL."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def test_fresh_sink_is_at_zero(sink: SummarySink) -> None:
    assert sink.name == "summaries" and sink.needs_raw is True  # hashed, never stored
    assert sink.position() == 0


def test_message_row(sink: SummarySink) -> None:
    ev = make_event(
        sender="Alice@Example.COM", recipients=["bob@example.org", "Carol@Sub.Example.NET"],
        attachments=[("report.pdf", "application/pdf", 1234), ("x.zip", "application/zip", 9)],
        findings=[Finding(scanner="clamav", verdict=Category.CLEAN, detail="ok", duration_ms=1.5)],
        spam_score=2.5, relay=True,
    )
    sink.apply(records([ev]), 1)
    r = row(sink.engine, ev.event_id)
    assert r["sender"] == "Alice@Example.COM"
    assert r["sender_domain"] == "example.com"
    assert r["attachments"] == "report.pdf,x.zip"
    assert (r["parts_count"], r["recipients_count"]) == (3, 2)
    assert r["relay"] == 1 and r["spam_score"] == 2.5
    assert r["queue_status"] == "queued" and r["queue_exit_code"] is None
    assert r["summary"] == format_summary(ev)
    assert r["position"] == 1 and r["sha256"] == ev.sha256
    tables = dump(sink.engine)
    assert [(x[2], x[3]) for x in tables["recipients"]] == [
        ("bob@example.org", "example.org"), ("Carol@Sub.Example.NET", "sub.example.net")]
    assert [(x[2], x[3], x[6]) for x in tables["findings"]] == [("clamav", "clean", "ok")]


@pytest.mark.parametrize(("action", "status"), [
    (Action.DELIVER, "queued"), (Action.QUARANTINE, "n/a"), (Action.REJECT, "n/a"),
    (Action.TEMPFAIL, "n/a"), (Action.DROP, "n/a"),
])
def test_queue_status_follows_action(sink: SummarySink, action: Action, status: str) -> None:
    ev = make_event(action=action)
    sink.apply(records([ev]), 1)
    assert row(sink.engine, ev.event_id)["queue_status"] == status


def test_hostile_text_is_cleaned_and_bounded(sink: SummarySink) -> None:
    ev = make_event(subject="Hi\r\nBcc: victim@example.com\x1b[2J" + "x" * 5000)
    sink.apply(records([ev]), 1)
    subject = row(sink.engine, ev.event_id)["subject"]
    assert "\r" not in subject and "\n" not in subject and "\x1b" not in subject
    assert len(subject) == 998


def test_times_are_stored_in_utc(sink: SummarySink) -> None:
    when = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    ev = make_event(when=when)
    sink.apply(records([ev]), 1)
    assert as_utc(row(sink.engine, ev.event_id)["received_at"]) == datetime(2026, 11, 25, 10, 0,
                                                                            tzinfo=UTC)


def test_position_commits_with_rows(sink: SummarySink, url: str) -> None:
    sink.apply(records([make_event(), make_event()]), 2)
    assert sink.position() == 2
    sink.apply([], 5)  # an empty batch still moves the position
    assert sink.position() == 5
    other = SummarySink(url)  # a restarted consumer resumes where the rows end
    assert other.position() == 5
    other.close()


def test_replay_from_zero_changes_nothing(sink: SummarySink) -> None:
    events = [make_event(findings=[Finding(scanner="size", verdict=Category.CLEAN)])
              for _ in range(5)]
    recs = records([*events, make_queue_failed(events[2], exit_code=53)])
    sink.apply(recs[:3], 3)
    sink.apply(recs[3:], 6)
    before = dump(sink.engine)
    sink.set_position(0)
    assert sink.position() == 0
    sink.apply(recs, 6)
    assert dump(sink.engine) == before
    assert sink.position() == 6


def test_queue_failed_marks_the_message(sink: SummarySink) -> None:
    ev, other = make_event(), make_event()
    sink.apply(records([ev, other]), 2)
    sink.apply(records([make_queue_failed(ev, exit_code=53)], start=3), 3)
    assert (row(sink.engine, ev.event_id)["queue_status"],
            row(sink.engine, ev.event_id)["queue_exit_code"]) == ("failed", 53)
    assert row(sink.engine, other.event_id)["queue_status"] == "queued"


def test_queue_failed_in_the_same_batch(sink: SummarySink) -> None:
    ev = make_event()
    sink.apply(records([ev, make_queue_failed(ev, exit_code=71)]), 2)
    assert row(sink.engine, ev.event_id)["queue_exit_code"] == 71


def test_queue_failed_for_a_pruned_message_is_harmless(sink: SummarySink) -> None:
    sink.apply(records([make_queue_failed(make_event())]), 1)
    assert sink.position() == 1
    assert dump(sink.engine)["messages"] == []


def test_duplicates_in_one_batch(sink: SummarySink) -> None:
    ev = make_event(recipients=["a@example.org", "b@example.org"])
    sink.apply(records([ev, ev, make_event(), ev]), 4)
    tables = dump(sink.engine)
    assert len(tables["messages"]) == 2
    assert len(tables["recipients"]) == 3


def test_unknown_event_types_are_skipped(sink: SummarySink) -> None:
    class Release:  # a later event type this version does not project
        type = "message.released"

    sink.apply([LogRecord(1, Release())], 1)  # type: ignore[arg-type]
    assert sink.position() == 1


def test_a_thousand_events_through_the_journal(sink: SummarySink, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    events = [make_event(recipients=[f"user{i}@example.org", "list@example.net"],
                         attachments=[("a.pdf", "application/pdf", 10)] if i % 3 == 0 else None)
              for i in range(1000)]
    for ev in events:
        journal.append(ev.event_id, ev.type, to_json(ev, with_raw=False))
    failed = make_queue_failed(events[10])
    journal.append(failed.event_id, failed.type, to_json(failed))
    try:
        applied = run_consumer(JournalReader(journal), sink, ConsumerSettings(batch=200), once=True)
    finally:
        journal.close()
    assert applied == 1001
    assert sink.position() == 1001
    tables = dump(sink.engine)
    assert len(tables["messages"]) == 1000 and len(tables["recipients"]) == 2000
    assert row(sink.engine, events[10].event_id)["queue_status"] == "failed"


# Any split into batches, with any duplicates, ends in the same rows as one clean pass.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batches_and_duplicates_do_not_matter(fresh_db: FreshDatabases, data: st.DataObject) -> None:
    events = [make_event(recipients=[f"r{i}@example.org"]) for i in range(6)]
    stream = [*events, make_queue_failed(events[1], exit_code=53)]
    messy = data.draw(st.lists(st.sampled_from(stream), max_size=20)) + stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(messy)), max_size=5)))

    def project(batches: list[list[Any]]) -> dict[str, list[tuple[Any, ...]]]:
        sink = SummarySink(fresh_db())
        pos = 0
        for batch in batches:
            sink.apply(records(batch, pos + 1), pos + len(batch))
            pos += len(batch)
        out = content(sink.engine)
        sink.close()
        return out

    batches = [messy[a:b] for a, b in zip([0, *cuts], [*cuts, len(messy)], strict=True)]
    assert project(batches) == project([stream])


ORDER_DEPENDENT = {"id", "position", "chain_seq", "chain_hash"}


def content(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Row contents without what depends on the order events first arrived in."""
    out = {}
    with engine.connect() as conn:
        for table in ("messages", "recipients", "findings", "queue_failures"):
            result = conn.execute(text(f"SELECT * FROM {table}"))
            keep = [i for i, k in enumerate(result.keys()) if k not in ORDER_DEPENDENT]
            out[table] = sorted((tuple(r[i] for i in keep) for r in result), key=repr)
    return out


def test_received_at_round_trips_as_utc(sink: SummarySink) -> None:
    ev = make_event(when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    sink.apply(records([ev]), 1)
    assert as_utc(row(sink.engine, ev.event_id)["received_at"]) == datetime(2026, 1, 2, 3, 4, 5,
                                                                            tzinfo=UTC)


def test_a_failed_batch_leaves_nothing_behind(sink: SummarySink,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sink.apply(records([make_event()]), 1)
    before = dump(sink.engine)

    def broken(ev: Any) -> list[dict[str, Any]]:
        raise RuntimeError("disk full")

    monkeypatch.setattr("compliance.summaries.finding_rows", broken)
    with pytest.raises(RuntimeError):
        sink.apply(records([make_event(), make_event()], start=2), 3)
    assert dump(sink.engine) == before  # messages were inserted, then rolled back
    assert sink.position() == 1


def test_two_writers_on_one_database(url: str) -> None:
    """Writers serialise on SQLite's lock; the id check never races another insert."""
    import threading

    events = [make_event() for _ in range(400)]
    recs = records(events)
    errors: list[BaseException] = []

    def consume(name: str, order: list[LogRecord]) -> None:
        sink = SummarySink(url, name=name)
        try:
            for i in range(0, len(order), 50):
                sink.apply(order[i:i + 50], i + 50)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            sink.close()

    threads = [threading.Thread(target=consume, args=("a", recs)),
               threading.Thread(target=consume, args=("b", recs[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = SummarySink(url)
    assert len(dump(check.engine)["messages"]) == 400
    check.close()


# -- 0002: parts, DLP, quarantine entries, direction, raw hash, chain ------------
def test_parts_dlp_and_quarantine_rows(sink: SummarySink) -> None:
    ev = make_event(
        attachments=[("Invoice.PDF", "Application/PDF", 1234), ("noext", "text/plain", 3)],
        action=Action.QUARANTINE, category=Category.DLP, reason="dlp:cards",
        dlp_findings=[{"rule": "cards", "detector": "payment_card", "confidence": "high",
                       "count": 3, "action": "quarantine", "location": "body",
                       "evidence": "4111 **** **** 1111"},
                      {"name": "iban-only"}],
    )
    sink.apply(records([ev]), 1)
    parts = rows(sink.engine, "SELECT * FROM parts ORDER BY id")
    assert [(p["path"], p["content_type"], p["filename"], p["extension"]) for p in parts] == [
        ("1", "text/plain", None, None), ("2", "application/pdf", "Invoice.PDF", "pdf"),
        ("3", "text/plain", "noext", None)]
    dlp = rows(sink.engine, "SELECT * FROM dlp_findings ORDER BY id")
    assert [(d["rule"], d["detector"], d["confidence"], d["count"], d["evidence"]) for d in dlp] == [
        ("cards", "payment_card", "high", 3, "4111 **** **** 1111"), ("iban-only", "", "", 1, "")]
    (q,) = rows(sink.engine, "SELECT * FROM quarantine_entries")
    assert (q["event_id"], q["folder"], q["state"], q["reason"]) == (ev.event_id, "dlp",
                                                                     "quarantined", "dlp:cards")


@pytest.mark.parametrize(("client", "direction"), [
    (ClientInfo(ip="192.0.2.1"), "inbound"),
    (ClientInfo(ip="192.0.2.1", relay=True), "outbound"),
    (ClientInfo(local=True), "local"),
    (ClientInfo(), "local"),
])
def test_direction(sink: SummarySink, client: ClientInfo, direction: str) -> None:
    ev = make_event().model_copy(update={"client": client})
    sink.apply(records([ev]), 1)
    assert row(sink.engine, ev.event_id)["direction"] == direction


def test_headers_and_raw_hash(sink: SummarySink) -> None:
    ev = make_event(subject="Hi")
    ev = ev.model_copy(update={"headers": ev.headers.model_copy(update={"cc": "carol@example.net"})})
    oversized = make_event(raw=b"").model_copy(update={"size": 60_000_000})  # too large: no bytes kept
    sink.apply(records([ev, oversized]), 2)
    r = row(sink.engine, ev.event_id)
    assert (r["header_from"], r["header_to"], r["header_cc"]) == (
        "alice@example.com", "bob@example.org", "carol@example.net")
    assert r["header_date"] == "Wed, 25 Nov 2026 10:00:00 +0000"
    assert r["raw_sha256"] == hashlib.sha256(ev.raw_message).hexdigest()
    assert row(sink.engine, oversized.event_id)["raw_sha256"] is None


def test_raw_hash_from_the_daemon(sink: SummarySink) -> None:
    # Events carry the daemon's hash of what it queued: the row takes it as it is, and
    # older events without it are hashed from their bytes (test above).
    ev = make_event()
    ev = ev.model_copy(update={"raw_sha256": hashlib.sha256(ev.raw_message).hexdigest(),
                               "raw_message": b"not read: the hash is in the event"})
    # ... and one that is not a SHA-256 in lowercase hex is not taken: the bytes are hashed
    odd = make_event(raw_sha256="F" * 64)
    sink.apply(records([ev, odd]), 2)
    assert row(sink.engine, ev.event_id)["raw_sha256"] == ev.raw_sha256
    assert row(sink.engine, odd.event_id)["raw_sha256"] == hashlib.sha256(odd.raw_message).hexdigest()


def test_rows_are_chained_per_host(sink: SummarySink) -> None:
    a1, a2 = make_event(), make_event()
    b1 = make_event().model_copy(update={"host": "mx2.example.com"})
    fail = make_queue_failed(a1, exit_code=71)
    sink.apply(records([a1, b1, a2, fail]), 4)
    msgs = {r["event_id"]: r for r in rows(sink.engine, "SELECT * FROM messages")}
    assert [msgs[e.event_id]["chain_seq"] for e in (a1, a2, b1)] == [1, 2, 1]
    (qf,) = rows(sink.engine, "SELECT * FROM queue_failures")
    assert (qf["chain_seq"], qf["ref_event_id"], qf["exit_code"]) == (3, a1.event_id, 71)
    heads = {r["host"]: (r["seq"], r["hash"]) for r in rows(sink.engine, "SELECT * FROM chain_heads")}
    assert heads == {"mx1.example.com": (3, qf["chain_hash"]),
                     "mx2.example.com": (1, msgs[b1.event_id]["chain_hash"])}
    # the first link starts from 64 zeros; the hash is recomputable from the row
    first = msgs[a1.event_id]
    assert first["chain_hash"] != canonical.GENESIS and len(first["chain_hash"]) == 64


def test_compliance_events_are_projected_once(sink: SummarySink) -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    ev = make_event()
    hold = HoldCreated(event_id="h-1", time=now, host="admin", matter="Acme v. Us",
                       custodians=["alice@example.com"], reason="litigation", actor="root@admin")
    release = HoldReleased(event_id="r-1", time=now, host="admin", hold_id="h-1",
                           matter="Acme v. Us", reason="settled", actor="root@admin")
    deleted = MessageDeleted(event_id="d-1", time=now, host="admin", ref_event_id=ev.event_id,
                             ref_host=ev.host, actor="root@admin", reason="retention",
                             location="archive", raw_sha256=None, message_hash=None)
    stream = records([ev, hold, release, deleted])
    sink.apply(stream, 4)
    sink.apply(stream, 4)  # a replay finds everything recorded
    (h,) = rows(sink.engine, "SELECT * FROM holds")
    assert (h["matter"], h["released_by"], h["release_reason"]) == ("Acme v. Us", "root@admin",
                                                                     "settled")
    (d,) = rows(sink.engine, "SELECT * FROM deletions")
    assert (d["ref_event_id"], d["chain_seq"], d["host"]) == (ev.event_id, 2, ev.host)
    assert row(sink.engine, ev.event_id)["deleted_at"] is not None
