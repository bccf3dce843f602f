"""The summaries consumer: rows, positions, idempotent replays, queue failures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from compliance import db
from compliance.summaries import SummarySink
from ingest.event import Action, Category, Finding, to_json
from ingest.journal import Journal
from ingest.log import JournalReader, LogRecord, run_consumer
from ingest.summary_line import format_summary
from tests.factories import make_event, make_queue_failed

TABLES = {"messages": "event_id", "recipients": "id", "findings": "id"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database, copied per test: Alembic runs once per module."""
    path = tmp_path_factory.mktemp("template") / "qscan.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def url(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "qscan.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


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


def test_fresh_sink_is_at_zero(sink: SummarySink) -> None:
    assert sink.name == "summaries" and sink.needs_raw is False
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
    assert str(row(sink.engine, ev.event_id)["received_at"]).startswith("2026-11-25 10:00:00")


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
        applied = run_consumer(JournalReader(journal), sink, batch=200, once=True)
    finally:
        journal.close()
    assert applied == 1001
    assert sink.position() == 1001
    tables = dump(sink.engine)
    assert len(tables["messages"]) == 1000 and len(tables["recipients"]) == 2000
    assert row(sink.engine, events[10].event_id)["queue_status"] == "failed"


# Any split into batches, with any duplicates, ends in the same rows as one clean pass.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batches_and_duplicates_do_not_matter(template: Path, tmp_path: Path, data: st.DataObject
                                              ) -> None:
    events = [make_event(recipients=[f"r{i}@example.org"]) for i in range(6)]
    stream = [*events, make_queue_failed(events[1], exit_code=53)]
    messy = data.draw(st.lists(st.sampled_from(stream), max_size=20)) + stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(messy)), max_size=5)))

    def project(name: str, batches: list[list[Any]]) -> dict[str, list[tuple[Any, ...]]]:
        path = tmp_path / f"{name}.db"
        path.unlink(missing_ok=True)
        shutil.copy(template, path)
        sink = SummarySink(f"sqlite:///{path}")
        pos = 0
        for batch in batches:
            sink.apply(records(batch, pos + 1), pos + len(batch))
            pos += len(batch)
        out = dump(sink.engine)
        sink.close()
        return out

    batches = [messy[a:b] for a, b in zip([0, *cuts], [*cuts, len(messy)], strict=True)]
    got, want = project("messy", batches), project("clean", [stream])
    strip_ids = {"messages": lambda r: r[:1] + r[2:], "recipients": lambda r: r[1:],
                 "findings": lambda r: r[1:]}
    # Row ids and positions depend on the order events first arrived; the content may not.
    for table, strip in strip_ids.items():
        assert sorted(map(strip, got[table])) == sorted(map(strip, want[table]))


def test_received_at_round_trips_as_utc(sink: SummarySink) -> None:
    ev = make_event(when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    sink.apply(records([ev]), 1)
    assert str(row(sink.engine, ev.event_id)["received_at"]) == "2026-01-02 03:04:05.000000"


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
