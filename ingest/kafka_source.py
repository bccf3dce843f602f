"""Consumers fed from the Kafka topic, with their offsets stored in their sinks.

Each assigned partition gets its own sink instance whose position is that
partition's *next offset to read*, committed in the sink's own transaction (SQL) or
checkpoint file (maildir) together with the rows/files. On start and on every
partition assignment the consumer seeks to those positions, so Kafka's own committed
offsets are only advisory (kept up to date for the usual lag tools). Duplicates from
the at-least-once relay change nothing: every projection is keyed by event id.

Two ways to spread load: a consumer group (partitions split by the broker, with a
rebalance listener) or an explicit static ``partitions`` list.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from ingest.event import EVENT_TYPES, AnyEvent
from ingest.kafka_log import KafkaSettings
from ingest.log import LogRecord, Sink, Stop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError

log = logging.getLogger(__name__)

SinkFactory = Callable[[str], Sink]  # position key -> sink


def decode_value(value: bytes, *, with_raw: bool) -> AnyEvent:
    """A topic value back into an event; sinks that never read the raw message skip its
    base64 decode and validation (most of the bytes)."""
    obj = json.loads(value)
    if not with_raw:
        obj.pop("raw_message", None)
    cls = EVENT_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {obj.get('type')!r}")
    return cls.model_validate(obj)  # type: ignore[return-value]


def position_key(topic: str, partition: int) -> str:
    return f"kafka.{topic}.{partition}"


class KafkaSource:
    def __init__(
        self,
        settings: KafkaSettings,
        name: str,
        sink_factory: SinkFactory,
        *,
        partitions: list[int] | None = None,
        batch: int = 500,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
    ) -> None:
        self.settings = settings
        self.name = name
        self.sink_factory = sink_factory
        self.static = partitions
        self.batch = batch
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sinks: dict[int, Sink] = {}
        self.applied = 0
        self.consumer: Any = None

    # -- partitions ---------------------------------------------------------------
    def _sink(self, partition: int) -> Sink:
        if partition not in self.sinks:
            self.sinks[partition] = self.sink_factory(position_key(self.settings.topic, partition))
        return self.sinks[partition]

    def _seek_to_sinks(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            pos = self._sink(tp.partition).position()
            self.consumer.seek(tp, pos)
            log.info("%s: partition %d from offset %d (stored in the sink)", self.name, tp.partition, pos)

    def _revoke(self, tps: list[TopicPartition]) -> None:
        # Every batch is applied and stored before poll() returns again, so there is
        # nothing in flight to flush: release the partitions' sinks.
        for tp in tps:
            sink = self.sinks.pop(tp.partition, None)
            if sink is not None:
                sink.close()

    def _make_consumer(self) -> Any:
        group = None if self.static is not None else f"{self.settings.group_prefix}-{self.name}"
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=f"{self.settings.client_id}-{self.name}",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.settings.max_request_size,
            fetch_max_bytes=max(self.settings.max_request_size, 52428800),
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            request_timeout_ms=max(self.settings.request_timeout_ms, self.session_timeout_ms + 5000),
        )
        self.consumer = consumer
        if self.static is not None:
            tps = [TopicPartition(self.settings.topic, p) for p in self.static]
            consumer.assign(tps)
            self._seek_to_sinks(tps)
        else:
            source = self

            class Listener(ConsumerRebalanceListener):
                def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                    source._revoke(list(revoked))

                def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                    source._seek_to_sinks(list(assigned))

            consumer.subscribe([self.settings.topic], listener=Listener())
        return consumer

    # -- the loop ---------------------------------------------------------------------
    def caught_up(self) -> bool:
        """Every assigned partition read up to the broker's high-watermark (from Fetch)."""
        assigned = self.consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            hw = self.consumer.highwater(tp)
            if hw is None or self.consumer.position(tp) < hw:
                return False
        return True

    def poll_once(self) -> int:
        batches = self.consumer.poll(timeout_ms=200, max_records=self.batch)
        n = 0
        for tp, recs in batches.items():
            sink = self._sink(tp.partition)
            keep_raw = sink.needs_raw or getattr(sink, "raw_from_topic", False)
            records = []
            for r in recs:
                try:
                    records.append(LogRecord(r.offset, decode_value(r.value, with_raw=keep_raw)))
                except ValueError:  # an event type this version does not know: skip it
                    log.warning("%s: skipping undecodable record %s@%d", self.name, tp, r.offset)
            next_offset = recs[-1].offset + 1
            sink.apply(records, next_offset)  # rows/files and the offset, together
            n += len(recs)
            try:
                self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})
            except KafkaError:  # advisory only: the sink holds the truth
                log.debug("advisory offset commit failed", exc_info=True)
        self.applied += n
        return n

    def run(self, stop: Stop, *, once: bool = False, idle_timeout: float = 10.0) -> int:
        """Consume until stopped; with ``once``, until caught up (or idle that long)."""
        consumer = self._make_consumer()
        last_progress = time.monotonic()
        try:
            while not stop.requested:
                n = self.poll_once()
                if n:
                    last_progress = time.monotonic()
                elif once and (self.caught_up() or time.monotonic() - last_progress > idle_timeout):
                    break
        finally:
            consumer.close(autocommit=False)
            for sink in self.sinks.values():
                sink.close()
            self.sinks.clear()
        return self.applied
