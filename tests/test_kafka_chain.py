"""The consumer host walks every relaying host's journal chain from the Kafka topic.

Two simulated hosts (their own journals, their own relays) feed one 3-partition topic on a
real Tansu broker; the consumer host's `qscan verify` (consumers.source = "kafka") walks
both chains from the records, uses the anchors that came through the topic, and names a
journal tampering on either host.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from compliance import anchor, db
from ingest.event import ChainAnchored, to_json
from ingest.ids import uuid7
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic
from ingest.log import Stop
from qscan.cli import cli
from qscan.testing.kafka_broker import Broker
from tests.factories import make_event

pytestmark = pytest.mark.integration


def fill(journal: Journal, host: str, n: int) -> None:
    for i in range(n):
        ev = make_event(subject=f"{host} m{i}", raw=b"Subject: x\n\n" + b"y" * (i * 50))
        journal.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)


def relay(journal: Journal, s: KafkaSettings, host: str) -> None:
    assert Relay(journal, dataclasses.replace(s, relay_batch=4), host).run(Stop(), once=True) >= 0


def test_consumer_host_walks_every_hosts_chain_from_the_topic(broker: Broker,
                                                              tmp_path: Path) -> None:
    s = KafkaSettings(bootstrap_servers=[broker.bootstrap], topic="qscan.events", partitions=3,
                      request_timeout_ms=5000)
    init_topic(s)
    a = Journal(tmp_path / "a.db")
    b = Journal(tmp_path / "b.db")
    fill(a, "mx-a", 6)
    fill(b, "mx-b", 5)
    # host a anchors its journal head; the relay carries the anchor to the topic
    doc = anchor.take(writer="mx-a", engine=None, journal=a, journal_host="mx-a")
    ev = ChainAnchored(event_id=str(uuid7()), time=datetime.now(UTC), host="mx-a", anchor=doc,
                       trail=anchor.trail(doc, None, engine=None, journal=a))
    a.append(ev.event_id, ev.type, to_json(ev))
    relay(a, s, "mx-a")
    # host b's journal loses event 3 before it was relayed (someone deleted it there)
    relay_first = Relay(b, dataclasses.replace(s, relay_batch=2), "mx-b")
    relay_first.send_batch()  # events 1-2
    sqlite3.connect(b.path, isolation_level=None).execute("DELETE FROM events WHERE seq = 3")
    relay(b, s, "mx-b")

    url = f"sqlite:///{tmp_path / 'consumer.db'}"
    db.upgrade(url)
    config = tmp_path / "consumer.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "consumer"}"\n[sql]\nurl = "{url}"\n'
        '[daemon]\nhostname = "consumer.example.com"\n'
        '[consumers]\nsource = "kafka"\n'
        f'[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\npartitions = 3\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "verify", "--no-files", "--json"])
    report = json.loads(result.stdout)
    events = [(p["kind"], p["where"]) for p in report["problems"] if p["kind"].endswith("-event")]
    assert events == [("deleted-event", "journal mx-b#3")], result.output
    assert [p["kind"] for p in report["problems"] if p["kind"] == "anchor"] == []
    assert "1 anchors used without checking signatures" in " ".join(report["notes"])
    assert result.exit_code == 1
