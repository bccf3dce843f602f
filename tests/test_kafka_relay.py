"""The relay: journal -> a real Kafka-protocol broker, acknowledged, ordered per message."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from compliance.journal_chain import RelayedRecord, walk_records
from ingest.event import from_json, to_json
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic, make_producer, partition_for
from ingest.log import Stop
from qscan.cli import cli
from qscan.testing.daemon import running_daemon
from qscan.testing.kafka_broker import Broker, consume_all
from tests.factories import make_event, make_queue_failed

pytestmark = pytest.mark.integration


def settings(broker: Broker, **kw: object) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=[broker.bootstrap], topic="qscan.events", partitions=4,
                         request_timeout_ms=5000, **kw)  # type: ignore[arg-type]


def fill(journal: Journal, n: int, raw_size: int = 200) -> list:  # type: ignore[type-arg]
    events = []
    for i in range(n):
        ev = make_event(subject=f"m{i}", raw=b"Subject: x\n\n" + b"y" * raw_size)
        journal.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)
        events.append(ev)
    return events


def test_relay_delivers_every_event_with_key_headers_and_partition(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker)
    assert init_topic(s) == ["created topic qscan.events with 4 partitions"]
    assert init_topic(s) == [f"topic qscan.events exists with 4 partitions, max.message.bytes {s.max_request_size}"]
    journal = Journal(tmp_path / "j.db")
    events = fill(journal, 30)
    failed = make_queue_failed(events[3])
    journal.append(failed.event_id, failed.type, to_json(failed))
    relay = Relay(journal, dataclasses.replace(s, relay_batch=7), "mx1.example.com")
    assert relay.run(Stop(), once=True) == 31
    assert relay.position() == journal.head() and relay.lag() == (0, 0.0)
    recs = consume_all(broker.bootstrap, "qscan.events", 31)
    assert len(recs) == 31
    by_id = {r.key.decode(): r for r in recs}
    for ev in events:
        r = by_id[ev.event_id]
        headers = dict(r.headers)
        assert headers.pop("journal_link")  # ingest.journal_link: walked below
        assert headers == {"schema_version": b"1", "event_type": b"message.scanned",
                           "source_host": b"mx1.example.com"}
        assert r.partition == partition_for(ev.event_id, 4)
        decoded = from_json(r.value)
        assert decoded.raw_message == ev.raw_message and decoded.event_id == ev.event_id
    # the compensating event follows its message into the message's partition, after it
    r = by_id[failed.event_id]
    assert r.partition == by_id[events[3].event_id].partition
    assert r.offset > by_id[events[3].event_id].offset
    # the consumer host can walk the relaying host's journal chain from the records alone
    walk = walk_records("mx1.example.com", [
        RelayedRecord(r.key.decode(), dict(r.headers)["event_type"].decode(), r.value,
                      dict(r.headers)["journal_link"], f"{r.partition}@{r.offset}") for r in recs])
    assert walk.findings == [] and walk.head == (31, journal.read(30, 1)[0].chain)


def test_broker_down_never_stops_mail_and_relay_catches_up(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker)
    init_topic(s)
    with running_daemon(tmp_path / "d") as h:
        journal = Journal(h.journal)
        relay = Relay(journal, s, "mx1", max_backoff=0.5)
        stop = Stop()
        t = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        t.start()
        assert h.send(b"Subject: one\n\nbody\n").code == 0
        deadline = time.monotonic() + 20
        while relay.position() < journal.head() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.position() == journal.head() == 1
        broker.stop()  # Kafka goes away: mail must still be accepted
        for i in range(5):
            assert h.send(f"Subject: during outage {i}\n\nbody\n".encode()).code == 0
        deadline = time.monotonic() + 20
        while relay.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert relay.position() == 1 and relay.failures > 0
        assert relay.lag()[0] == 5
        broker.start()  # a fresh broker (memory storage: empty, no topic); no operator action:
        deadline = time.monotonic() + 30
        while relay.position() < journal.head() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.requested = True
        t.join(10)
        assert relay.position() == journal.head() == 6
        # the relay created the topic with the configured partitions and sent again what the
        # lost topic had held ("one"), so nothing is missing
        assert relay.created == 1 and relay.resent == 1
        recs = consume_all(broker.bootstrap, "qscan.events", 6)
        subjects = sorted(from_json(r.value).headers.subject or "" for r in recs)
        assert subjects == sorted([f"during outage {i}" for i in range(5)] + ["one"])
        assert {r.partition for r in recs} <= set(range(s.partitions))


def test_two_hosts_relay_into_one_topic(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker)
    init_topic(s)
    a, b = Journal(tmp_path / "a.db"), Journal(tmp_path / "b.db")
    ea, eb = fill(a, 10), fill(b, 12)
    Relay(a, s, "mx1").run(Stop(), once=True)
    Relay(b, s, "mx2").run(Stop(), once=True)
    recs = consume_all(broker.bootstrap, "qscan.events", 22)
    assert sorted(r.key.decode() for r in recs) == sorted(e.event_id for e in ea + eb)
    hosts = [dict(r.headers)["source_host"] for r in recs]
    assert hosts.count(b"mx1") == 10 and hosts.count(b"mx2") == 12


def test_twenty_megabyte_message_through_the_topic(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker, max_message_size=25 * 1024 * 1024)
    init_topic(s)
    journal = Journal(tmp_path / "j.db")
    [ev] = fill(journal, 1, raw_size=20 * 1024 * 1024)
    Relay(journal, s, "mx1").run(Stop(), once=True)
    [rec] = consume_all(broker.bootstrap, "qscan.events", 1, timeout=30)
    assert from_json(rec.value).raw_message == ev.raw_message


def test_cli_kafka_init_relay_and_status(broker: Broker, tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\n'
                   'partitions = 3\n[journal]\ndisk_budget_mb = 1000\n')
    runner = CliRunner()
    res = runner.invoke(cli, ["-c", str(cfg), "kafka", "init"])
    assert res.exit_code == 0 and "created topic qscan.events with 3 partitions" in res.output
    fill(Journal(tmp_path / "journal.db"), 4)
    res = runner.invoke(cli, ["-c", str(cfg), "relay", "--once"])
    assert res.exit_code == 0, res.output
    assert "relayed 4 events; lag 0 events" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "journal", "status", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["positions"]["relay"]["lag"] == 0
    # with Kafka configured, the journal prunes behind the relay alone
    cfg.write_text(cfg.read_text().replace("[journal]\n", "[journal]\nretain_days = 0\n")
                   + '[consumers]\nsource = "kafka"\n')
    res = runner.invoke(cli, ["-c", str(cfg), "journal", "prune"])
    assert res.exit_code == 0 and "pruned 4 events" in res.output


def test_journal_over_budget_fails_loudly(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[journal]\ndisk_budget_mb = 0.01\n')
    fill(Journal(tmp_path / "journal.db"), 50, raw_size=2000)
    res = CliRunner().invoke(cli, ["-c", str(cfg), "journal", "status"])
    assert res.exit_code == 3 and "over its disk budget" in res.output


def test_relay_unreachable_broker_cli_exit(tmp_path: Path) -> None:
    from qscan.testing.kafka_broker import free_port

    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[log.kafka]\nbootstrap_servers = ["127.0.0.1:{free_port()}"]\n'
                   'request_timeout_ms = 2000\n')
    res = CliRunner().invoke(cli, ["-c", str(cfg), "kafka", "init"])
    assert res.exit_code == 1 and "cannot reach Kafka" in res.output


def test_qscan_run_starts_the_relay(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker)
    init_topic(s)
    with running_daemon(tmp_path) as h:
        h.stop()
        h.config.write_text(h.config.read_text() + f'\n[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\npartitions = 4\n')
        proc = subprocess.Popen([sys.executable, "-m", "qscan", "-c", str(h.config), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not h._connectable() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert h.send(b"Subject: via run\n\nbody\n").code == 0
            recs = consume_all(broker.bootstrap, "qscan.events", 1, timeout=30)
            assert [from_json(r.value).headers.subject for r in recs] == ["via run"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_dropping_a_producer_with_unacknowledged_records_really_closes_it(
    broker: Broker, tmp_path: Path
) -> None:
    # kafka-python's close(timeout=0) flushes first and gives up with records in flight,
    # leaving the producer open for its __del__ to time out later, anywhere.
    s = settings(broker)
    init_topic(s)
    relay = Relay(Journal(tmp_path / "j.db"), s, "mx1")
    producer = make_producer(s)
    for i in range(200):
        producer.send(s.topic, value=b"x" * 100_000, key=str(i).encode())
    relay._producer = producer
    relay._drop_producer()  # the broken-producer path: at once
    assert relay._producer is None
    assert producer._closed
    producer._sender.join(5)
    assert not producer._sender.is_alive()
