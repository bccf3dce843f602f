"""Consumers fed from a real Kafka-protocol broker: offsets in the sinks, exactly-once effects."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from compliance.db import upgrade
from ingest.event import to_json
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic
from ingest.kafka_source import KafkaSource
from ingest.log import Stop
from qscan.config import parse_config
from qscan.testing.kafka_broker import Broker
from qscan.wiring.pipeline import make_sink
from tests.factories import make_event, make_queue_failed

pytestmark = pytest.mark.integration


def setup(broker: Broker, tmp_path: Path, partitions: int = 4) -> tuple[Path, KafkaSettings]:
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\n'
                   f'partitions = {partitions}\nrequest_timeout_ms = 5000\n[consumers]\nsource = "kafka"\n')
    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    s = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=partitions, request_timeout_ms=5000)
    init_topic(s)
    return cfg, s


def journal_with(path: Path, n: int, failed_every: int = 0) -> list:  # type: ignore[type-arg]
    j = Journal(path)
    events = []
    for i in range(n):
        ev = make_event(subject=f"m{i}", recipients=[f"r{i}@example.org"])
        j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)
        events.append(ev)
        if failed_every and i % failed_every == 0:
            qf = make_queue_failed(ev)
            j.append(qf.event_id, qf.type, to_json(qf))
    j.close()
    return events


def rows(db: Path) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT event_id, subject, queue_status FROM messages"))
    finally:
        con.close()


def archived(root: Path) -> set[str]:
    return {p.name for p in (root / "archive" / "new").glob("*")} if (root / "archive" / "new").exists() else set()


def consume(cfg_path: Path, name: str, **kw: object) -> int:
    cfg = parse_config(cfg_path.read_text(), cfg_path)
    from qscan.wiring.pipeline import kafka_settings

    source = KafkaSource(kafka_settings(cfg), name, lambda key: make_sink(cfg, name, key),
                         session_timeout_ms=2000, heartbeat_interval_ms=500, **kw)  # type: ignore[arg-type]
    return source.run(Stop(), once=True)


def test_relay_and_every_consumer_end_to_end(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    events = journal_with(tmp_path / "journal.db", 40, failed_every=10)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, s, "mx1").run(Stop(), once=True)
    assert consume(cfg, "summaries", partitions=[0, 1, 2, 3]) == 44
    assert consume(cfg, "archive", partitions=[0, 1, 2, 3]) == 44
    got = rows(tmp_path / "qscan.db")
    assert len(got) == 40
    assert sum(1 for r in got if r[2] == "failed") == 4  # the compensating events applied after their messages
    assert len(archived(tmp_path)) == 36  # failed ones removed from (or never left in) the archive
    # a second pass reads nothing new; a replay from the beginning changes nothing
    before_rows, before_files = got, archived(tmp_path)
    assert consume(cfg, "summaries", partitions=[0, 1, 2, 3]) == 0
    res = subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), "replay", "summaries",
                          "--from-beginning", "--yes"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), "replay", "archive",
                          "--from-beginning", "--yes"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert rows(tmp_path / "qscan.db") == before_rows and archived(tmp_path) == before_files
    assert len(events) == 40


def test_two_hosts_one_topic_every_message_once(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    a = journal_with(tmp_path / "a.db", 15)
    b = journal_with(tmp_path / "b.db", 17)
    for path, host in ((tmp_path / "a.db", "mx1"), (tmp_path / "b.db", "mx2")):
        with Journal(path) as j:
            Relay(j, s, host).run(Stop(), once=True)
    assert consume(cfg, "summaries") == 32  # consumer-group mode
    assert [r[0] for r in rows(tmp_path / "qscan.db")] == sorted(e.event_id for e in a + b)


def test_consumer_killed_mid_stream_restarts_without_loss_or_duplicates(broker: Broker, tmp_path: Path) -> None:
    cfg, s = setup(broker, tmp_path)
    events = journal_with(tmp_path / "journal.db", 600)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, s, "mx1").run(Stop(), once=True)
    argv = [sys.executable, "-m", "qscan", "-c", str(cfg), "consume", "archive", "--partitions", "0,1,2,3"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(archived(tmp_path)) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
    proc.wait()
    assert 0 < len(archived(tmp_path)) < 600
    res = subprocess.run([*argv, "--once"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    names = archived(tmp_path)
    assert len(names) == 600 and all(any(e.event_id in n for n in names) for e in events[:5])
    # A write the kill interrupted may leave its file in tmp/ (maildir names are final
    # names): each such message must have been delivered whole to new/ by the rerun.
    tmp_left = {p.name for p in (tmp_path / "archive" / "tmp").glob("*")}
    assert tmp_left <= names, tmp_left - names
    from archive.consumer import message_name
    from archive.envelope_block import archived_message

    for ev in events:  # every copy whole, the interrupted ones included
        assert (tmp_path / "archive" / "new" / message_name(ev)).read_bytes() == archived_message(ev)


def test_two_consumers_in_one_group_split_the_partitions(broker: Broker, tmp_path: Path) -> None:
    cfg_path, s = setup(broker, tmp_path)
    journal_with(tmp_path / "journal.db", 200)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, s, "mx1").run(Stop(), once=True)
    cfg = parse_config(cfg_path.read_text(), cfg_path)
    from qscan.wiring.pipeline import kafka_settings

    sources = [KafkaSource(kafka_settings(cfg), "summaries", lambda key: make_sink(cfg, "summaries", key),
                           session_timeout_ms=2000, heartbeat_interval_ms=500) for _ in range(2)]
    seen: list[set[int]] = [set(), set()]
    stop = Stop()

    def run(i: int) -> None:
        src = sources[i]
        src._make_consumer()
        while not stop.requested:
            src.poll_once()
            seen[i] |= {tp.partition for tp in src.consumer.assignment()}
        src.consumer.close(autocommit=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 40
    while len(rows(tmp_path / "qscan.db")) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # let the group settle with both members
    stop.requested = True
    for t in threads:
        t.join(30)
    assert len(rows(tmp_path / "qscan.db")) == 200
    assert seen[0] and seen[1], seen  # both members got partitions
    assert sources[0].applied + sources[1].applied >= 200


def test_notify_consumer_from_kafka_without_the_journal(broker: Broker, tmp_path: Path) -> None:
    """Another host's consumer: the raw headers come from the topic, not a local journal."""
    from tests.test_notify_delivery import Relay as SmtpRelay
    from tests.test_notify_delivery import free_port as smtp_port
    from tests.test_notify_delivery import policy_event, with_header
    from tests.test_notify_delivery import write_config as notify_config

    smtp = SmtpRelay(smtp_port()).start()
    try:
        cfg = notify_config(tmp_path, smtp.port)
        cfg.write_text(cfg.read_text().replace("[notify]", f'[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\n'
                                               'partitions = 4\n[consumers]\nsource = "kafka"\n[notify]'))
        upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
        s = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=4)
        init_topic(s)
        plain = policy_event(sender="alice@example.com")
        listed = policy_event(sender="news@example.com", raw=with_header("List-Id: <news.example.com>"))
        other = tmp_path / "other-host-journal.db"
        with Journal(other) as j:
            for ev in (plain, listed):
                j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)
            Relay(j, s, "mx2").run(Stop(), once=True)
        assert not (tmp_path / "journal.db").exists()  # this host has no journal of those events
        res = subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), "consume", "notify", "--once",
                              "--partitions", "0,1,2,3"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 20
        while not smtp.handler.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        to = sorted(r for _, rcpts, _ in smtp.handler.messages for r in rcpts)
        assert "alice@example.com" in to  # the policy block's sender is told ...
        assert "news@example.com" not in to  # ... but never a mailing list (List-Id from the topic)
        n = len(smtp.handler.messages)
        res = subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), "replay", "notify",
                              "--from-beginning", "--yes"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        time.sleep(1)
        assert len(smtp.handler.messages) == n  # a replay sends nothing twice
    finally:
        smtp.stop()
