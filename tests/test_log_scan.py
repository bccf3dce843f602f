"""The log API's read-only scan: every record kept, oldest first, a record that does not decode
reported in its place, other event types passed over undecoded, and nobody's position moved."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.event import HoldCreated, to_json
from ingest.journal import Journal
from ingest.log import JournalReader, LogRecord, PassedOver, Undecodable
from qscan.testing.kafka_broker import Broker
from tests.factories import make_event

MESSAGES = frozenset({"message.scanned"})


def hold() -> HoldCreated:
    return HoldCreated(event_id="h-1", time=datetime(2026, 11, 1, tzinfo=UTC), host="mx1",
                       matter="m", custodians=["alice@example.com"], reason="r", actor="legal")


def test_journal_scan_reads_everything_and_moves_no_position(tmp_path: Path) -> None:
    first, last = make_event(), make_event(sender="carol@example.com")
    with Journal(tmp_path / "j.db") as j:
        j.append(first.event_id, first.type, to_json(first, with_raw=False), first.raw_message)
        j.append("h-1", "hold.created", to_json(hold()))
        j.append("bad", "message.scanned", b'{"type": "message.scanned", "event_id": 7}')
        j.append(last.event_id, last.type, to_json(last, with_raw=False), last.raw_message)
        j.set_position("archive", 1)
    with Journal(tmp_path / "j.db", readonly=True) as j:
        reader = JournalReader(j)
        assert reader.count() == 4
        items = list(reader.scan(types=MESSAGES, batch=2))  # batches of 2: the scan pages on
        assert [type(i) for i in items] == [LogRecord, PassedOver, Undecodable, LogRecord]
        assert [i.event.event_id for i in items if isinstance(i, LogRecord)] == [first.event_id, last.event_id]
        assert items[1] == PassedOver(2)
        bad = items[2]
        assert isinstance(bad, Undecodable) and bad.where == "journal #3"
        assert bad.reason.startswith("event not decoded: ")
        # without raw: the scan leaves the messages in the journal, raw() fetches one
        assert not any(i.event.raw_message for i in items if isinstance(i, LogRecord))
        assert reader.raw(first.event_id) == first.raw_message
        assert reader.raw("no-such-event") is None
        # every type decoded when none is named
        assert [type(i) for i in reader.scan()] == [LogRecord, LogRecord, Undecodable, LogRecord]
        assert j.positions() == {"archive": 1}


@pytest.mark.integration
def test_kafka_scan_reads_every_record_of_the_topic(broker: Broker) -> None:
    from ingest.kafka_log import KafkaSettings, init_topic
    from ingest.kafka_source import scan_topic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    settings = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=1, request_timeout_ms=5000)
    init_topic(settings)
    event = make_event()
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap])
    for value in (to_json(event), to_json(hold()), b"not json", to_json(make_event())):
        producer.send(settings.topic, value=value, partition=0)
    producer.flush()
    producer.close()

    items = list(scan_topic(settings, types=MESSAGES, idle_timeout=20, name="test-scan"))
    assert [type(i) for i in items] == [LogRecord, PassedOver, Undecodable, LogRecord]
    first = items[0]
    assert isinstance(first, LogRecord) and first.position == 0
    assert first.event.event_id == event.event_id and first.event.raw_message == event.raw_message
    assert items[1] == PassedOver(1)
    assert isinstance(items[2], Undecodable) and items[2].where == f"{settings.topic}/0@2"
