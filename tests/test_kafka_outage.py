"""The Kafka path keeps the journal's promises through a broker that loses its data.

A real Tansu broker with memory storage: a restart is a broker that lost every topic and
record. The relay finds that on its own (topic gone, another topic id, records gone) and
sends again from the journal; no client creates the topic with the broker's defaults;
consumers wait out a broker that is down when their partitions are assigned; and
``qscan verify`` compares the journal with SQL whatever log the consumers read.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import pytest

from ingest.event import to_json
from ingest.journal import Journal
from ingest.kafka_log import RELAY_NAME, KafkaSettings, Relay, init_topic
from ingest.kafka_source import KafkaSource, scan_topic, waiting_ids
from ingest.log import Stop
from qscan.config import parse_config
from qscan.testing.kafka_broker import Broker
from qscan.wiring.kafka_anchor import make_anchor_store
from qscan.wiring.pipeline import kafka_settings, make_sink
from tests.factories import make_event
from tests.test_kafka_recovery import recreate_topic

pytestmark = pytest.mark.integration


def setup(broker: Broker, tmp_path: Path, partitions: int = 3) -> tuple[Path, KafkaSettings]:
    from compliance.db import upgrade

    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nhostname = "mx1"\n[log.kafka]\n'
                   f'bootstrap_servers = ["{broker.bootstrap}"]\npartitions = {partitions}\n'
                   'request_timeout_ms = 5000\n[consumers]\nsource = "kafka"\n')
    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    return cfg, KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=partitions,
                              request_timeout_ms=5000)


def append(journal: Path, n: int, start: int = 0) -> list[str]:
    evs = [make_event(subject=f"m{i}", recipients=[f"r{i}@example.org"]) for i in range(start, start + n)]
    with Journal(journal) as j:
        j.append_many((ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message) for ev in evs)
    return [ev.event_id for ev in evs]


def source(cfg_path: Path, name: str, **kw: object) -> KafkaSource:
    cfg = parse_config(cfg_path.read_text(), cfg_path)
    return KafkaSource(kafka_settings(cfg), name, lambda key: make_sink(cfg, name, key),
                       anchors=make_anchor_store(cfg, name), session_timeout_ms=6000,
                       heartbeat_interval_ms=1000, max_poll_interval_ms=15000, **kw)  # type: ignore[arg-type]


def sql_ids(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT event_id FROM messages")]
    finally:
        con.close()


def archived(root: Path) -> set[str]:
    return {p.name.split(".")[1] for p in (root / "archive" / "new").glob("*")}


def qscan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=180)


def topics(s: KafkaSettings) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_verify_compares_the_journal_with_sql_when_consumers_read_kafka(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    init_topic(s)
    ids = append(tmp_path / "journal.db", 30)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, s, "mx1").run(Stop(), once=True)
    source(cfg, "summaries", partitions=[0]).run(Stop(), once=True)  # partitions 1, 2 still waiting
    source(cfg, "archive", partitions=[0, 1, 2]).run(Stop(), once=True)
    in_sql = set(sql_ids(tmp_path / "qscan.db"))
    assert 0 < len(in_sql) < 30
    r = qscan(cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr  # the rest waits in the topic: lag, not loss
    assert f"{30 - len(in_sql)} relayed events still waiting in the topic" in r.stderr
    assert f"{len(in_sql)} journal events checked" in r.stderr

    recreate_topic(s)  # the broker lost what the consumer had not read yet
    r = qscan(cfg, "verify", "--no-files")
    assert r.returncode == 1, r.stdout + r.stderr
    missing = {line.split()[2].rstrip(":") for line in r.stdout.splitlines()
               if line.startswith("missing-row: messages")}
    assert missing == set(ids) - in_sql

    # the relay notices on its own and sends again; the consumer reads the new topic from its start
    with Journal(tmp_path / "journal.db") as j:
        relay = Relay(j, s, "mx1")
        assert relay.run(Stop(), once=True) == 30 and relay.resent == 30
    src = source(cfg, "summaries", partitions=[0, 1, 2])
    src.run(Stop(), once=True)
    assert sorted(sql_ids(tmp_path / "qscan.db")) == sorted(ids)
    r = qscan(cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_client_creates_the_topic(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    # consumers (static and group), the read-only scan, verify's topic read and status: none
    # creates the topic (a broker's default count would scatter a message's events)
    assert source(cfg, "summaries", partitions=[0, 1, 2]).run(Stop(), once=True, idle_timeout=2) == 0
    group = source(cfg, "archive")
    stop = Stop()
    t = threading.Thread(target=group.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(3)
    assert list(scan_topic(s, idle_timeout=1)) == []
    with pytest.raises(LookupError):
        waiting_ids(s, {})
    r = qscan(cfg, "status", "--no-scanners", "--json", "--probe-timeout", "2")
    assert '"error": "topic qscan.events does not exist (qscan kafka init)"' in r.stdout
    assert s.topic not in topics(s)
    # the relay creates it, with the configured partitions, and the running group consumer
    # picks it up without a restart
    ids = append(tmp_path / "journal.db", 12)
    with Journal(tmp_path / "journal.db") as j:
        relay = Relay(j, s, "mx1")
        assert relay.run(Stop(), once=True) == 12 and relay.created == 1
    r = qscan(cfg, "kafka", "init")
    assert r.returncode == 0 and "exists with 3 partitions" in r.stdout, r.stdout + r.stderr
    deadline = time.monotonic() + 60
    while len(archived(tmp_path)) < 12 and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.requested = True
    t.join(30)
    assert archived(tmp_path) == set(ids)


def test_consumer_waits_out_a_broker_down_at_assignment(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    init_topic(s)
    ids = append(tmp_path / "journal.db", 20)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, s, "mx1").run(Stop(), once=True)
    source(cfg, "summaries", partitions=[0, 1, 2]).run(Stop(), once=True)
    broker.stop()
    # started while the broker is down: the check of its stored offsets cannot be made
    src = source(cfg, "summaries", partitions=[0, 1, 2])
    stop = Stop()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            src.run(stop)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(4)
    assert t.is_alive() and not errors
    broker.start()  # empty: the relay sends everything again, the consumer reads the new topic
    more = append(tmp_path / "journal.db", 10, start=20)
    with Journal(tmp_path / "journal.db") as j:
        relay = Relay(j, s, "mx1")
        relay.run(Stop(), once=True)
        assert relay.created == 1 and relay.resent == 20
    deadline = time.monotonic() + 60
    while len(sql_ids(tmp_path / "qscan.db")) < 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.requested = True
    t.join(30)
    assert not errors
    assert sorted(sql_ids(tmp_path / "qscan.db")) == sorted(ids + more)


def test_broker_restart_mid_run_journal_sql_and_archive_agree(broker: Broker, tmp_path: Path) -> None:
    """Mail keeps coming, the broker restarts empty halfway: no event is lost, no operator acts."""
    cfg, s = setup(broker, tmp_path)
    init_topic(s)
    journal_path = tmp_path / "journal.db"
    Journal(journal_path).close()
    stop = Stop()
    errors: list[BaseException] = []
    sent: list[str] = []
    total = 300

    def guarded(fn: object) -> threading.Thread:
        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def mail() -> None:
        for i in range(0, total, 10):
            sent.extend(append(journal_path, 10, start=i))
            time.sleep(0.2)

    relay_journal = Journal(journal_path)
    relay = Relay(relay_journal, s, "mx1", check_interval=1.0, max_backoff=1.0)
    consumers = [source(cfg, "summaries"), source(cfg, "archive")]
    threads = [guarded(mail), guarded(lambda: relay.run(stop)),
               *(guarded(lambda c=c: c.run(stop)) for c in consumers)]
    deadline = time.monotonic() + 60
    while relay.position() < total // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.position() >= total // 3
    broker.stop()
    time.sleep(1)
    broker.start()  # memory storage: every topic and record is gone
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not errors:
        if len(sent) == total and len(set(sql_ids(tmp_path / "qscan.db"))) == total \
                and len(archived(tmp_path)) == total:
            break
        time.sleep(0.5)
    stop.requested = True
    for t in threads:
        t.join(30)
    relay_journal.close()
    assert not errors, "".join(traceback.format_exception(errors[0]))
    in_sql = sql_ids(tmp_path / "qscan.db")
    assert len(in_sql) == len(set(in_sql)) == total and set(in_sql) == set(sent)
    assert archived(tmp_path) == set(sent)
    assert relay.created >= 1 and relay.resent > 0
    with Journal(journal_path) as j:
        assert j.get_position(RELAY_NAME) == j.head() == total
    r = qscan(cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
