"""A Kafka-fed consumer's lag on its metrics endpoint: records behind the topic's high-watermark."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.kafka_source import KafkaSource
from qscan.config import parse_config
from qscan.ops.metrics import ConsumerMetrics
from qscan.testing.kafka_broker import Broker
from qscan.wiring.pipeline import kafka_settings, make_sink
from tests.test_kafka_consumers import journal_with, setup
from tests.test_kafka_recovery import relay

pytestmark = pytest.mark.integration


def lag_metric(metrics: ConsumerMetrics) -> float | None:
    for family in metrics.registry.collect():
        if family.name == "qscan_consumer_lag_events":
            return sum(s.value for s in family.samples) if family.samples else None
    raise AssertionError("no lag metric")


def test_kafka_consumer_lag_is_exported(broker: Broker, tmp_path: Path) -> None:
    cfg_path, settings = setup(broker, tmp_path)
    journal_with(tmp_path / "a.db", 40)
    relay(tmp_path / "a.db", settings)
    cfg = parse_config(cfg_path.read_text(), cfg_path)
    metrics = ConsumerMetrics(cfg, "summaries", source="kafka")
    source = KafkaSource(kafka_settings(cfg), "summaries",
                         lambda key: metrics.wrap(make_sink(cfg, "summaries", key)),
                         partitions=[0, 1, 2, 3], batch=5)
    metrics.attach_kafka(source)
    assert lag_metric(metrics) is None  # nothing read yet: no figure rather than a false zero
    source._make_consumer()
    try:
        seen: list[float] = []
        while source.applied < 40:
            source.poll_once()
            value = lag_metric(metrics)
            if value is not None:
                seen.append(value)
        assert seen and max(seen) > 0  # part-way, the consumer was behind
        assert lag_metric(metrics) == 0  # caught up: nothing behind the high-watermark
    finally:
        source.consumer.close(autocommit=False)
        for sink in source.sinks.values():
            sink.close()
