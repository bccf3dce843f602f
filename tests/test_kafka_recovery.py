"""Kafka failure modes against a real broker: a recreated topic, poison records, a topic
with the wrong partition count, lz4, and the journal disk-budget warning."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from ingest.event import to_json
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, TopicMismatch, init_topic, partition_for
from ingest.kafka_source import KafkaSource, PoisonRecord, position_key
from ingest.log import Stop
from qscan.config import parse_config
from qscan.ops.journal_budget import BudgetWarning
from qscan.testing.kafka_broker import Broker, consume_all
from qscan.wiring.kafka_anchor import make_anchor_store
from qscan.wiring.pipeline import kafka_settings, make_sink
from tests.factories import make_event
from tests.test_kafka_consumers import archived, journal_with, rows, setup

pytestmark = pytest.mark.integration

ALL = [0, 1, 2, 3]


def consume(cfg_path: Path, name: str, *, anchors: bool = True) -> KafkaSource:
    cfg = parse_config(cfg_path.read_text(), cfg_path)
    source = KafkaSource(kafka_settings(cfg), name, lambda key: make_sink(cfg, name, key), partitions=ALL,
                         anchors=make_anchor_store(cfg, name) if anchors else None)
    source.run(Stop(), once=True)
    return source


def relay(path: Path, s: KafkaSettings) -> None:
    with Journal(path) as j:
        Relay(j, s, "mx1").run(Stop(), once=True)


def recreate_topic(s: KafkaSettings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
    try:
        admin.delete_topics([s.topic])
    finally:
        admin.close()
    deadline = time.monotonic() + 30  # the broker finishes the deletion asynchronously
    while True:
        try:
            if init_topic(s)[0].startswith("created topic"):
                return
        except TopicMismatch:  # half deleted: seen with fewer partitions for a moment
            pass
        assert time.monotonic() < deadline, "the topic was not deleted"
        time.sleep(0.5)


def qscan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=120)


# -- 1. a recreated topic ---------------------------------------------------------------
def test_recreated_topic_longer_than_the_stored_offsets_skips_nothing(broker: Broker, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The dangerous case: the new partitions grow *past* the old offsets, so the length
    check alone would pass; the anchor (event id at a stored offset) catches it."""
    cfg, s = setup(broker, tmp_path)
    first = journal_with(tmp_path / "a.db", 20)
    read_before = sorted({partition_for(e.event_id, 4) for e in first})  # partitions with a stored offset
    relay(tmp_path / "a.db", s)
    consume(cfg, "summaries")
    consume(cfg, "archive")
    assert len(rows(tmp_path / "qscan.db")) == 20
    recreate_topic(s)  # the broker lost its data; `qscan kafka init` again
    second = journal_with(tmp_path / "b.db", 80)  # 4x as many: every partition passes its old offset
    relay(tmp_path / "b.db", s)
    with caplog.at_level(logging.ERROR, logger="ingest.kafka_source"):
        src = consume(cfg, "summaries")
    assert sorted(src.restarted) == read_before
    assert "the topic was recreated or the broker lost its data" in caplog.text
    assert src.applied == 80
    assert [r[0] for r in rows(tmp_path / "qscan.db")] == sorted(e.event_id for e in first + second)
    src = consume(cfg, "archive")
    assert sorted(src.restarted) == read_before
    names = archived(tmp_path)
    assert len(names) == 100 and all(any(e.event_id in n for n in names) for e in second)
    # the anchors now name the new topic: a restart verifies and re-reads nothing
    assert consume(cfg, "summaries").restarted == [] and consume(cfg, "archive").restarted == []


def test_broker_restarted_empty_with_old_positions_without_anchors(broker: Broker, tmp_path: Path) -> None:
    """Positions stored before anchors existed: a partition now shorter than the stored
    offset is still detected (and the consumer reads the new events from offset 0)."""
    cfg, s = setup(broker, tmp_path)
    journal_with(tmp_path / "a.db", 40)
    relay(tmp_path / "a.db", s)
    consume(cfg, "summaries", anchors=False)
    broker.stop()
    broker.start()  # memory storage: a broker that lost everything
    init_topic(s)
    second = journal_with(tmp_path / "b.db", 8)
    relay(tmp_path / "b.db", s)
    res = qscan(cfg, "consume", "summaries", "--once", "--partitions", "0,1,2,3")
    assert res.returncode == 0, res.stderr
    assert "not the topic this consumer read" in res.stderr
    assert {e.event_id for e in second} <= {r[0] for r in rows(tmp_path / "qscan.db")}
    assert len(rows(tmp_path / "qscan.db")) == 48


def test_anchor_rows_do_not_disturb_the_position_rows(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    used = {partition_for(e.event_id, 4) for e in journal_with(tmp_path / "a.db", 12)}
    relay(tmp_path / "a.db", s)
    consume(cfg, "summaries")
    con = sqlite3.connect(tmp_path / "qscan.db")
    try:
        names = {n for (n,) in con.execute("SELECT name FROM consumer_positions")}
    finally:
        con.close()
    for p in used:
        key = f"summaries@{position_key(s.topic, p)}"
        assert {key, key + "#at", key + "#id"} <= names
    from qscan.ops.kafka_status import sql_positions

    assert set(sql_positions(f"sqlite:///{tmp_path / 'qscan.db'}", "summaries", s.topic)) == used


# -- 3. poison records --------------------------------------------------------------------
def produce_raw(s: KafkaSettings, values: list[bytes | None]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                             max_request_size=s.max_request_size)
    try:
        for v in values:
            producer.send(s.topic, key=b"k", value=v, partition=0).get(timeout=10)
    finally:
        producer.close()


def event_value(subject: str) -> tuple[str, bytes]:
    import base64

    ev = make_event(subject=subject)
    obj = json.loads(to_json(ev, with_raw=False))
    obj["raw_message"] = base64.b64encode(ev.raw_message).decode()
    return ev.event_id, json.dumps(obj).encode()


@pytest.mark.parametrize("poison", [
    pytest.param(b'{"type": "message.scanned", "event_id": "x", "schema_version": 1}', id="invalid-known-type"),
    pytest.param(None, id="no-value"),
    pytest.param(b"\xff not json", id="not-json"),
])
def test_poison_record_stops_the_consumer_without_storing_its_offset(broker: Broker, tmp_path: Path,
                                                                     poison: bytes | None) -> None:
    cfg, s = setup(broker, tmp_path)
    ok1, v1 = event_value("before")
    ok2, v2 = event_value("after")
    future = json.dumps({"type": "message.teleported", "event_id": "y"}).encode()
    produce_raw(s, [v1, future, poison, v2])  # offsets 0, 1, 2 (poison), 3
    res = qscan(cfg, "consume", "summaries", "--once", "--partitions", "0")
    assert res.returncode == 78, res.stderr
    assert "partition 0 offset 2" in res.stderr
    assert "qscan consumer position summaries --source kafka --partition 0 --set 3" in res.stderr
    assert "Traceback" not in res.stderr
    assert [r[0] for r in rows(tmp_path / "qscan.db")] == [ok1]  # the unknown type was skipped, by design
    res = qscan(cfg, "consumer", "position", "summaries", "--source", "kafka", "--partition", "0")
    assert res.stdout.strip() == f"summaries: {position_key(s.topic, 0)} at offset 2"  # not past the poison
    # restarting stops again at the same place: nothing after it is applied
    assert qscan(cfg, "consume", "summaries", "--once", "--partitions", "0").returncode == 78
    # the operator decides to skip it, as the message says
    res = qscan(cfg, "consumer", "position", "summaries", "--source", "kafka", "--partition", "0", "--set", "3")
    assert res.returncode == 0, res.stderr
    res = qscan(cfg, "consume", "summaries", "--once", "--partitions", "0")
    assert res.returncode == 0, res.stderr
    assert sorted(str(r[0]) for r in rows(tmp_path / "qscan.db")) == sorted([ok1, ok2])


def test_poison_record_in_process_raises_with_its_coordinates(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    _, v1 = event_value("ok")
    produce_raw(s, [v1, b'{"type": "message.scanned"}'])
    with pytest.raises(PoisonRecord) as info:
        consume(cfg, "archive")
    assert (info.value.topic, info.value.partition, info.value.offset) == (s.topic, 0, 1)
    assert len(archived(tmp_path)) == 1


# -- 2. a topic with fewer partitions than the config ------------------------------------
def test_topic_with_fewer_partitions_fails_init_and_relay_once_with_a_clear_message(broker: Broker,
                                                                                     tmp_path: Path) -> None:
    cfg, _ = setup(broker, tmp_path, partitions=2)  # the topic: 2 partitions
    cfg.write_text(cfg.read_text().replace("partitions = 2", "partitions = 4"))  # the config: 4
    s4 = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=4, request_timeout_ms=5000)
    with pytest.raises(TopicMismatch, match="has 2 partitions"):
        init_topic(s4)
    res = qscan(cfg, "kafka", "init")
    assert res.returncode != 0 and "has 2 partitions, [log.kafka] partitions = 4" in res.stderr
    journal_with(tmp_path / "journal.db", 30)
    t0 = time.monotonic()
    res = qscan(cfg, "relay")  # not --once: it must stop by itself, not loop
    assert res.returncode == 78, res.stderr
    assert time.monotonic() - t0 < 60
    assert "has 2 partitions but [log.kafka] partitions = 4" in res.stderr and "Traceback" not in res.stderr
    with Journal(tmp_path / "journal.db") as j:
        assert (j.get_position("relay") or 0) == 0  # nothing counted as relayed


def test_init_reports_a_too_small_max_message_bytes(broker: Broker) -> None:
    small = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=2, max_message_size=1024 * 1024)
    init_topic(small)
    big = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=2, max_message_size=50 * 1024 * 1024)
    with pytest.raises(TopicMismatch, match=r"max\.message\.bytes is \d+"):
        init_topic(big)


# -- 4. lz4 ---------------------------------------------------------------------------------
def test_relay_round_trip_with_lz4(broker: Broker, tmp_path: Path) -> None:
    s = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=4, compression="lz4",
                      request_timeout_ms=5000)
    init_topic(s)
    events = journal_with(tmp_path / "j.db", 25)
    relay(tmp_path / "j.db", s)
    recs = consume_all(broker.bootstrap, s.topic, 25)
    assert sorted(r.key.decode() for r in recs) == sorted(e.event_id for e in events)
    for r in recs:
        assert r.partition == partition_for(r.key.decode(), 4)
        assert json.loads(r.value)["event_id"] == r.key.decode()


# -- 5. the journal disk budget -------------------------------------------------------------
def test_budget_warning_is_logged_rate_limited_while_over_budget(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    journal_with(tmp_path / "journal.db", 20)
    now = [1000.0]
    warn = BudgetWarning(tmp_path / "journal.db", 0.001, interval=300, check_every=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="qscan.journal"):
        for _ in range(50):  # a busy loop: one warning
            warn()
            now[0] += 1
        assert warn.warnings == 1
        now[0] += 300
        warn()
        assert warn.warnings == 2
    assert "over its disk budget of 0 MB" in caplog.text and "journal.disk_budget_mb" in caplog.text
    roomy = BudgetWarning(tmp_path / "journal.db", 1000, clock=lambda: now[0])
    roomy()
    assert roomy.warnings == 0
    BudgetWarning(tmp_path / "none.db", 0.001)()  # no journal yet: silent, no error


def test_relay_logs_the_budget_warning(broker: Broker, tmp_path: Path) -> None:
    cfg, _ = setup(broker, tmp_path)
    cfg.write_text(cfg.read_text() + "[journal]\ndisk_budget_mb = 0.001\n")
    journal_with(tmp_path / "journal.db", 5)
    res = qscan(cfg, "relay", "--once")
    assert res.returncode == 0, res.stderr
    assert "over its disk budget" in res.stderr


# -- qscan run: a component that needs an operator is not restarted ------------------------
SUPERVISE = r'''
import logging, os, signal, sys, threading
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
import qscan.ops.supervisor as sup
from qscan.config import parse_config
from pathlib import Path
cfg_path = Path(sys.argv[1])
cfg = parse_config(cfg_path.read_text(), cfg_path)
sup.components = lambda cfg, path: [
    sup.Child("needs-operator", [sys.executable, "-c", "import sys; sys.exit(78)"]),
    sup.Child("crashes", [sys.executable, "-c", "import sys; sys.exit(1)"]),
]
threading.Timer(4.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
sys.exit(sup.supervise(cfg, str(cfg_path)))
'''


def test_supervisor_leaves_a_component_that_exited_78_stopped_and_warns_over_budget(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[journal]\ndisk_budget_mb = 0.001\n')
    journal_with(tmp_path / "journal.db", 5)
    res = subprocess.run([sys.executable, "-c", SUPERVISE, str(cfg)], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("starting needs-operator") == 1
    assert "needs-operator stopped on an error it cannot recover from" in res.stderr
    assert res.stderr.count("starting crashes") >= 2  # an ordinary crash is still restarted
    assert res.stderr.count("over its disk budget") == 1  # rate-limited
