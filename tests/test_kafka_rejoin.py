"""A group member left without partitions rejoins once the topic has some (unit: no broker).

After a broker restart without its data, a group can rebalance while the topic does not exist
and hand every member an empty assignment; nothing rebalances again when the topic is back
(seen with Tansu and kafka-python in tests/test_kafka_multihost.py). KafkaSource notices and
rejoins, ever more rarely while it stays without partitions."""

from __future__ import annotations

from typing import Any

import pytest

import ingest.kafka_log
from ingest import kafka_source
from ingest.kafka_log import KafkaSettings
from ingest.kafka_source import REJOIN_MAX, UNASSIGNED_GRACE, KafkaSource


class FakeConsumer:
    def __init__(self, assigned: set[Any]) -> None:
        self.assigned = assigned
        self.closed = False

    def assignment(self) -> set[Any]:
        return self.assigned

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> tuple[KafkaSource, Clock, list[FakeConsumer], dict[str, int]]:
    clock = Clock()
    monkeypatch.setattr(kafka_source.time, "monotonic", clock)
    topic = {"partitions": 3}
    monkeypatch.setattr(ingest.kafka_log, "topic_identity", lambda _c, _t: (topic["partitions"], "tid"))
    made: list[FakeConsumer] = []
    src = KafkaSource(KafkaSettings(bootstrap_servers=("127.0.0.1:9",)), "summaries", lambda key: None)  # type: ignore[arg-type,return-value]

    def make() -> FakeConsumer:
        made.append(FakeConsumer(set()))
        src.consumer = made[-1]
        return made[-1]

    monkeypatch.setattr(src, "_make_consumer", make)
    make()
    return src, clock, made, topic


def test_an_unassigned_member_rejoins_after_the_grace_then_ever_more_rarely(source: Any) -> None:
    src, clock, made, _ = source
    src._rejoin_if_unassigned()  # the clock starts
    clock.now += UNASSIGNED_GRACE - 1
    src._rejoin_if_unassigned()
    assert len(made) == 1  # a rebalance takes a while: not yet
    clock.now += 1
    src._rejoin_if_unassigned()
    assert len(made) == 2 and made[0].closed and not made[1].closed
    clock.now += UNASSIGNED_GRACE  # the next rejoin waits twice as long
    src._rejoin_if_unassigned()
    assert len(made) == 2
    clock.now += UNASSIGNED_GRACE
    src._rejoin_if_unassigned()
    assert len(made) == 3
    for _ in range(20):
        clock.now += REJOIN_MAX
        src._rejoin_if_unassigned()
    assert src._rejoin_after == REJOIN_MAX


def test_an_assigned_member_or_a_missing_topic_does_not_rejoin(source: Any) -> None:
    src, clock, made, topic = source
    topic["partitions"] = 0  # the topic is not there (yet): joining again would not help
    src._rejoin_if_unassigned()
    clock.now += UNASSIGNED_GRACE * 3
    src._rejoin_if_unassigned()
    assert len(made) == 1
    made[0].assigned = {("qscan.events", 0)}
    for _ in range(5):
        clock.now += UNASSIGNED_GRACE * 2
        src._rejoin_if_unassigned()
    assert len(made) == 1 and src._unassigned_since is None and src._rejoin_after == UNASSIGNED_GRACE


def test_static_partitions_never_rejoin(source: Any) -> None:
    src, clock, made, _ = source
    src.static = [0]
    src._rejoin_if_unassigned()
    clock.now += UNASSIGNED_GRACE * 10
    src._rejoin_if_unassigned()
    assert len(made) == 1
