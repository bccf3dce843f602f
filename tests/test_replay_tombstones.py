"""A tombstone wins over any replay: copies deleted lawfully (retention, quarantine delete) are
not written again by `qscan replay archive --from-beginning`, nor by a fresh Kafka consumer."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive.consumer import ArchiveSink, message_name
from compliance.db import upgrade
from ingest.event import Action, Category, MessageDeleted, MessageScanned, to_json
from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic
from ingest.log import LogRecord, Stop
from qscan.testing.kafka_broker import Broker
from tests.factories import make_event


def qscan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=180)


def copies(root: Path) -> set[str]:
    """Every stored copy's file name, archive and quarantine."""
    return {p.name for p in root.glob("**/new/*") if p.is_file()}


def events() -> tuple[list[MessageScanned], list[MessageScanned], list[MessageScanned]]:
    old = datetime.now(UTC) - timedelta(days=10)
    expired = [make_event(subject=f"old {i}", recipients=[f"o{i}@example.org"], when=old + timedelta(minutes=i))
               for i in range(5)]
    kept = [make_event(subject=f"new {i}", recipients=[f"n{i}@example.org"]) for i in range(4)]
    quarantined = [make_event(subject=f"q {i}", recipients=[f"q{i}@example.org"], action=Action.QUARANTINE,
                              category=Category.POLICY, reason="policy") for i in range(3)]
    return expired, kept, quarantined


def write_config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nhostname = "mx1"\n[retention]\ndefault_days = 3\n'
                   f'[quarantine]\n{extra}')
    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    return cfg


def fill(journal: Path, evs: list[MessageScanned]) -> None:
    with Journal(journal) as j:
        for ev in evs:
            j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)


def delete_some(cfg: Path, quarantined: MessageScanned) -> None:
    r = qscan(cfg, "retention", "apply")
    assert r.returncode == 0, r.stdout + r.stderr
    r = qscan(cfg, "quarantine", "delete", quarantined.event_id, "--reason", "asked by the recipient")
    assert r.returncode == 0, r.stdout + r.stderr


def test_replay_from_the_journal_resurrects_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    expired, kept, quarantined = events()
    fill(tmp_path / "journal.db", expired + kept + quarantined)
    for name in ("summaries", "archive"):
        r = qscan(cfg, "consume", name, "--once")
        assert r.returncode == 0, r.stderr
    assert copies(tmp_path) == {message_name(e) for e in expired + kept + quarantined}
    delete_some(cfg, quarantined[0])
    survivors = {message_name(e) for e in kept + quarantined[1:]}
    assert copies(tmp_path) == survivors
    r = qscan(cfg, "replay", "archive", "--from-beginning", "--yes")
    assert r.returncode == 0, r.stderr
    assert copies(tmp_path) == survivors  # the tombstones won
    r = qscan(cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.integration
def test_fresh_kafka_consumer_resurrects_nothing(broker: Broker, tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + f'[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\npartitions = 3\n'
                   'request_timeout_ms = 5000\n[consumers]\nsource = "kafka"\n')
    s = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=3, request_timeout_ms=5000)
    init_topic(s)
    expired, kept, quarantined = events()
    fill(tmp_path / "journal.db", expired + kept + quarantined)

    def relay() -> None:
        with Journal(tmp_path / "journal.db") as j:
            Relay(j, s, "mx1").run(Stop(), once=True)

    relay()
    for name in ("summaries", "archive"):
        r = qscan(cfg, "consume", name, "--once", "--partitions", "0,1,2")
        assert r.returncode == 0, r.stderr
    assert len(copies(tmp_path)) == 12
    delete_some(cfg, quarantined[0])
    relay()  # the deletions' events go to the topic behind their messages
    survivors = {message_name(e) for e in kept + quarantined[1:]}
    assert copies(tmp_path) == survivors
    r = qscan(cfg, "replay", "archive", "--from-beginning", "--yes")  # source kafka: every partition again
    assert r.returncode == 0, r.stderr
    assert copies(tmp_path) == survivors
    # a brand-new consumer (no checkpoints at all) reading the whole topic
    for p in tmp_path.glob("archive/.qscan-archive-position*"):
        p.unlink()
    for p in tmp_path.glob("archive/anchor.*"):
        p.unlink()
    r = qscan(cfg, "consume", "archive", "--once", "--partitions", "0,1,2")
    assert r.returncode == 0, r.stderr
    assert copies(tmp_path) == survivors


def test_the_deletion_on_the_log_wins_without_the_sql_store(tmp_path: Path) -> None:
    """No tombstone lookup (SQL store down): the message.deleted event that follows its message
    on the log still removes the copy, in the same batch or a later one."""
    sink = ArchiveSink(tmp_path / "archive", tmp_path / "quarantine", fsync_workers=1)
    a = make_event(subject="a")
    b = make_event(subject="b", action=Action.QUARANTINE, category=Category.VIRUS, reason="virus")

    def deleted(ev: MessageScanned, location: str) -> MessageDeleted:
        return MessageDeleted(event_id=f"d-{ev.event_id}", time=datetime.now(UTC), host="mx1",
                              ref_event_id=ev.event_id, ref_host="mx1", actor="root@mx1", reason="test",
                              location=location)

    # the message and its deletion in one batch: never written
    sink.apply([LogRecord(1, a), LogRecord(2, deleted(a, "archive"))], 2)
    assert copies(tmp_path) == set()
    # in two batches: written, then removed again
    sink.apply([LogRecord(3, b)], 3)
    assert copies(tmp_path) == {message_name(b)}
    sink.apply([LogRecord(4, deleted(b, "quarantine/viruses"))], 4)
    assert copies(tmp_path) == set()
    sink.close()
