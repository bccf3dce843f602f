"""Consumers fed from the Kafka topic, with their offsets stored in their sinks.

Each assigned partition gets its own sink instance whose position is that
partition's *next offset to read*, committed in the sink's own transaction (SQL) or
checkpoint file (maildir) together with the rows/files. On start and on every
partition assignment the consumer seeks to those positions, so Kafka's own committed
offsets are only advisory (kept up to date for the usual lag tools). Duplicates from
the at-least-once relay change nothing: every projection is keyed by event id.

Two ways to spread load: a consumer group (partitions split by the broker, with a
rebalance listener) or an explicit static ``partitions`` list.

``scan_topic`` is the read-only scan (``ingest.log``): every record the topic retains,
without a group or commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Collection, Generator
from typing import Any, Protocol

from ingest.event import EVENT_TYPES, AnyEvent
from ingest.kafka_log import KafkaSettings, make_consumer, record_at
from ingest.log import ConsumerSettings, LogRecord, PassedOver, Scanned, Sink, Stop, Undecodable

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError, KafkaTimeoutError, OffsetOutOfRangeError

log = logging.getLogger(__name__)

# A group member left without partitions this long while the topic has some rejoins the group
# (then after twice as long, up to REJOIN_MAX): a group that rebalanced while the topic did not
# exist (a broker restarted without its data) is handed empty assignments, and neither
# kafka-python nor every Kafka-protocol broker (Tansu) rebalances again once the topic is back.
UNASSIGNED_GRACE = 15.0
REJOIN_MAX = 300.0

SinkFactory = Callable[[str], Sink]  # position key -> sink


class UnknownEventType(ValueError):
    """A record of an event type this version does not know (a newer producer): skipped."""


class PoisonRecord(Exception):
    """A record that cannot be read as an event of its (known) type: consuming stops there.

    Its offset is not stored, so nothing after it is applied before someone decides.
    """

    def __init__(self, consumer: str, topic: str, partition: int, offset: int, reason: str) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        super().__init__(
            f"{consumer}: cannot read the record at {topic} partition {partition} offset {offset}: "
            f"{reason}. Nothing after it was applied. Fix the producer (or the schema) and restart; "
            f"to skip this record deliberately (its event is then missing from {consumer}): "
            f"qscan consumer position {consumer} --source kafka --partition {partition} --set {offset + 1}"
        )


def decode_value(value: bytes | None, *, with_raw: bool) -> AnyEvent:
    """A topic value back into an event; sinks that never read the raw message skip its
    base64 decode and validation (most of the bytes).

    Raises UnknownEventType for a type this version does not know, and TypeError/ValueError
    (pydantic's ValidationError among them) for a record that is not a valid event.
    """
    if value is None:
        raise TypeError("the record has no value (a tombstone or a foreign producer)")
    obj = json.loads(value)
    if not isinstance(obj, dict):
        raise TypeError(f"the value is JSON {type(obj).__name__}, not an object")
    if not with_raw:
        obj.pop("raw_message", None)
    cls = EVENT_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise UnknownEventType(f"unknown event type {obj.get('type')!r}")
    return cls.model_validate(obj)  # type: ignore[return-value]


def id_hash(event_id: str) -> int:
    """A stable 63-bit number for an event id (fits a signed BIGINT position column)."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big") & 0x7FFFFFFFFFFFFFFF


def event_id_of(value: bytes | None) -> str | None:
    """The event id of a record value without validating the event (anchor checks)."""
    try:
        obj = json.loads(value) if value is not None else None
    except ValueError:
        return None
    ident = obj.get("event_id") if isinstance(obj, dict) else None
    return ident if isinstance(ident, str) else None


class AnchorStore(Protocol):
    """Where a consumer keeps ``(offset, hash of the event id)`` of the last record applied
    per partition (qscan.wiring.kafka_anchor has the SQL and file versions)."""

    def get(self, key: str) -> tuple[int, int] | None: ...

    def put(self, key: str, offset: int, event_id: str) -> None: ...

    def clear(self, key: str) -> None: ...

    def close(self) -> None: ...


def position_key(topic: str, partition: int) -> str:
    return f"kafka.{topic}.{partition}"


def _tid_key(tp: TopicPartition) -> str:
    """Anchor-store key of the topic id a partition's stored offsets belong to."""
    return f"{position_key(tp.topic, tp.partition)}.tid"


class KafkaSource:
    def __init__(
        self,
        settings: KafkaSettings,
        name: str,
        sink_factory: SinkFactory,
        *,
        partitions: list[int] | None = None,
        batch: int = ConsumerSettings().batch,  # consumers.batch
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
        anchors: AnchorStore | None = None,
        max_poll_interval_ms: int = 120000,
    ) -> None:
        self.settings = settings
        self.name = name
        self.sink_factory = sink_factory
        self.static = partitions
        self.batch = batch
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # also the group's rebalance timeout: how long a rebalance waits for a member that went
        # away without leaving (killed, or closed while the broker was down) before going on
        self.max_poll_interval_ms = max_poll_interval_ms
        self.sinks: dict[int, Sink] = {}
        self.anchors = anchors
        self.restarted: list[int] = []  # partitions found recreated and read again from the start
        self.applied = 0
        self.consumer: Any = None
        # partition -> records behind the broker's high-watermark after the last poll (metrics;
        # read from another thread, written only here: plain ints in a dict)
        self.lag: dict[int, int] = {}
        self.topic_id: str | None = None  # the topic id the stored offsets belong to (this run)
        self._unchecked: list[TopicPartition] = []  # assigned while the broker could not be asked
        self._retry_at = 0.0
        self._retry_backoff = 0.0
        self._unassigned_since: float | None = None
        self._rejoin_after = UNASSIGNED_GRACE

    # -- partitions ---------------------------------------------------------------
    def _sink(self, partition: int) -> Sink:
        if partition not in self.sinks:
            self.sinks[partition] = self.sink_factory(position_key(self.settings.topic, partition))
        return self.sinks[partition]

    def _seek_to_sinks(self, tps: list[TopicPartition]) -> None:
        self._check_same_topic(tps)
        for tp in tps:
            pos = self._sink(tp.partition).position()
            self.consumer.seek(tp, pos)
            log.info("%s: partition %d from offset %d (stored in the sink)", self.name, tp.partition, pos)
        self.topic_id = self._current_topic_id(ask=False) or self.topic_id

    def _current_topic_id(self, *, ask: bool = True) -> str | None:
        """The topic id in the consumer's metadata; with ``ask``, fetched when not known yet
        (never from a rebalance callback: kafka-python runs those on its IO thread, where a
        blocking call raises)."""
        from ingest.kafka_log import topic_identity

        found = self.consumer._client.cluster.topic_id(self.settings.topic)
        if found is None and ask:
            return topic_identity(self.consumer, self.settings.topic)[1]
        return str(found) if found is not None else None

    def _assigned(self, tps: list[TopicPartition]) -> None:
        """On (re)assignment: seek to the sinks' positions after checking the topic is the one
        they were read from. A broker that does not answer (down during a rebalance) must not
        make the consumer exit, nor let it read on unchecked: the partitions are paused and
        checked again with back-off from the poll loop, as the relay backs off."""
        try:
            self._seek_to_sinks(tps)
        except (KafkaError, OSError) as exc:
            self._retry_backoff = min(30.0, self._retry_backoff * 2 or 0.5)
            self._retry_at = time.monotonic() + self._retry_backoff
            log.warning("%s: cannot check the assigned partitions %s against the broker (%s: %s); "
                        "they wait, checked again in %.1fs", self.name, [tp.partition for tp in tps],
                        type(exc).__name__, exc, self._retry_backoff)
            self._unchecked = list(tps)
            try:
                self.consumer.pause(*tps)
            except Exception:  # not assigned any more: the next assignment checks again
                log.debug("pausing %s failed", tps, exc_info=True)
        else:
            self._unchecked, self._retry_backoff = [], 0.0

    def _retry_unchecked(self) -> None:
        if not self._unchecked or time.monotonic() < self._retry_at:
            return
        tps = [tp for tp in self._unchecked if tp in self.consumer.assignment()]
        self._unchecked = []
        if tps:
            self._assigned(tps)
            if not self._unchecked:
                self.consumer.resume(*tps)

    def _topic_replaced(self) -> bool:
        """The topic id changed under a running consumer (broker restarted without its data, topic
        deleted and created again): every assigned partition is read again from its start, before
        anything of the batch just fetched is applied (it may come from past the new start)."""
        tid = self._current_topic_id()
        if tid is None or self.topic_id is None or tid == self.topic_id:
            self.topic_id = self.topic_id or tid
            return False
        log.error("%s: topic %s was created again (id %s, was %s): reading every assigned partition "
                  "again from its earliest offset so no event is skipped", self.name, self.settings.topic,
                  tid, self.topic_id)
        self.topic_id = tid
        for tp in self.consumer.assignment():
            self._sink(tp.partition).set_position(0)
            if self.anchors is not None:
                self.anchors.clear(position_key(tp.topic, tp.partition))
            self.restarted.append(tp.partition)
            self.consumer.seek(tp, 0)  # 0: below any kept offset -> earliest (auto_offset_reset)
            if self.anchors is not None:
                self.anchors.put(_tid_key(tp), 0, tid)
        return True

    def _probe(self) -> Any:
        return make_consumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=f"{self.settings.client_id}-{self.name}-check",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",  # an offset past the end must say so, not move
            max_partition_fetch_bytes=self.settings.max_request_size,
            fetch_max_bytes=max(self.settings.max_request_size, 52428800),
            request_timeout_ms=self.settings.request_timeout_ms,
        )

    def _check_same_topic(self, tps: list[TopicPartition]) -> None:
        """A stored offset from a topic since recreated would skip the new topic's events
        below it: detect that (partition now shorter, or another event at the anchor) and
        read those partitions again from their earliest offset (projections are keyed by
        event id, so whatever was applied already changes nothing)."""
        stored = [(tp, pos) for tp in tps if (pos := self._sink(tp.partition).position()) > 0]
        if not stored and self.anchors is None:
            return
        from ingest.kafka_log import topic_identity

        probe = self._probe()
        try:
            tid = topic_identity(probe, self.settings.topic)[1]
            for tp, pos in stored:
                reason = self._other_topic_id(tp, tid) or self._mismatch(probe, tp, pos)
                if reason is None:
                    continue
                log.error("%s: %s partition %d is not the topic this consumer read up to offset %d (%s): "
                          "the topic was recreated or the broker lost its data; reading the partition "
                          "again from its earliest offset so no event is skipped",
                          self.name, tp.topic, tp.partition, pos, reason)
                self._sink(tp.partition).set_position(0)  # 0: below any kept offset -> earliest
                if self.anchors is not None:
                    self.anchors.clear(position_key(tp.topic, tp.partition))
                self.restarted.append(tp.partition)
            if self.anchors is not None and tid is not None:
                for tp in tps:  # the topic these partitions' positions are offsets in, from now on
                    self.anchors.put(_tid_key(tp), 0, tid)
        finally:
            probe.close()

    def _other_topic_id(self, tp: TopicPartition, tid: str | None) -> str | None:
        """Why the stored position belongs to another topic (its id was kept with it), or None.
        Catches a topic created again even where the anchor record happens to match."""
        saved = self.anchors.get(_tid_key(tp)) if self.anchors is not None and tid is not None else None
        if saved is None or tid is None or saved[1] == id_hash(tid):
            return None
        return f"the topic id is now {tid}, not the one its offsets were read from"

    def _fetch(self, probe: Any, tp: TopicPartition, offset: int) -> tuple[Any, int | None]:
        """(the record at ``offset`` or the next one kept, the high-watermark) by Fetch
        (ListOffsets is not used: some Kafka-protocol brokers answer it approximately)."""
        return record_at(probe, tp, offset, self.settings.request_timeout_ms / 1000)

    def _mismatch(self, probe: Any, tp: TopicPartition, pos: int) -> str | None:
        """Why the partition is not the one read up to ``pos``, or None if it is (or cannot tell)."""
        try:
            anchor = self.anchors.get(position_key(tp.topic, tp.partition)) if self.anchors else None
            if anchor is not None and anchor[0] < pos:
                at, expected = anchor
                try:
                    rec, _ = self._fetch(probe, tp, at)
                except OffsetOutOfRangeError:  # before the log start (retention) or past the end
                    rec = None
                if rec is not None and rec.offset == at:
                    found = event_id_of(rec.value)
                    if found is None or id_hash(found) != expected:
                        return f"offset {at} now holds event {found}, not the one applied from it"
            # Stored before anchors existed, or the anchor is gone: the length still tells.
            try:
                rec, hw = self._fetch(probe, tp, pos - 1)
            except OffsetOutOfRangeError:
                return f"offset {pos - 1} is out of range"
            if rec is None and hw is not None and hw < pos:
                return f"it now ends at offset {hw}"
            return None
        except OffsetOutOfRangeError as exc:
            return f"offset out of range ({exc})"

    def _revoke(self, tps: list[TopicPartition]) -> None:
        # Every batch is applied and stored before poll() returns again, so there is
        # nothing in flight to flush: release the partitions' sinks.
        for tp in tps:
            sink = self.sinks.pop(tp.partition, None)
            if sink is not None:
                sink.close()

    def _make_consumer(self) -> Any:
        group = None if self.static is not None else f"{self.settings.group_prefix}-{self.name}"
        consumer = make_consumer(
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
            metadata_max_age_ms=10000,  # a topic the relay created again is seen within seconds
            max_poll_interval_ms=self.max_poll_interval_ms,
        )
        self.consumer = consumer
        if self.static is not None:
            tps = [TopicPartition(self.settings.topic, p) for p in self.static]
            consumer.assign(tps)
            self._assigned(tps)
        else:
            source = self

            class Listener(ConsumerRebalanceListener):
                def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                    source._revoke(list(revoked))

                def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                    source._assigned(list(assigned))

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

    def _note_lag(self, batches: Any) -> None:
        """High-watermark (from the fetch responses: no extra request) minus what will have been
        applied once this batch is in, per assigned partition."""
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            if hw is None:
                continue
            recs = batches.get(tp)
            upto = recs[-1].offset + 1 if recs else self.consumer.position(tp)
            self.lag[tp.partition] = max(0, hw - upto)

    def poll_once(self) -> int:
        self._retry_unchecked()
        batches = self.consumer.poll(timeout_ms=200, max_records=self.batch)
        if batches and self._topic_replaced():
            return 0
        self._note_lag(batches)
        n = 0
        for tp, recs in batches.items():
            sink = self._sink(tp.partition)
            keep_raw = sink.needs_raw or getattr(sink, "raw_from_topic", False)
            records = []
            poison: PoisonRecord | None = None
            read = len(recs)  # records consumed: all, or those before a poison record
            for i, r in enumerate(recs):
                try:
                    records.append(LogRecord(r.offset, decode_value(r.value, with_raw=keep_raw)))
                except UnknownEventType as exc:  # from a newer producer: skipped by design
                    log.warning("%s: skipping %s at %s@%d", self.name, exc, tp, r.offset)
                except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                    poison = PoisonRecord(self.name, tp.topic, tp.partition, r.offset,
                                          f"{type(exc).__name__}: {str(exc)[:500]}")
                    read = i
                    break
            next_offset = poison.offset if poison is not None else recs[-1].offset + 1
            if next_offset > recs[0].offset:  # something before the poison, if any
                sink.apply(records, next_offset)  # rows/files and the offset, together
                if records and self.anchors is not None:
                    self.anchors.put(position_key(tp.topic, tp.partition), records[-1].position,
                                     records[-1].event.event_id)
                n += read
                try:
                    self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})
                except KafkaError:  # advisory only: the sink holds the truth
                    log.debug("advisory offset commit failed", exc_info=True)
            if poison is not None:
                self.applied += n
                raise poison
        self.applied += n
        return n

    def _rejoin_if_unassigned(self) -> None:
        """Group mode: no partitions for a while although the topic has some - rejoin, so the
        group's partitions are handed out again from fresh metadata. A member of a group with
        more members than partitions rejoins too, ever more rarely (up to REJOIN_MAX): a
        rebalance is cheap, partitions read by nobody are not."""
        if self.static is not None:
            return
        now = time.monotonic()
        if self.consumer.assignment():
            self._unassigned_since, self._rejoin_after = None, UNASSIGNED_GRACE
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
            return
        if now - self._unassigned_since < self._rejoin_after:
            return
        from ingest.kafka_log import topic_identity

        self._unassigned_since = now
        partitions = topic_identity(self.consumer, self.settings.topic)[0]
        if not partitions:
            return
        log.warning("%s: no partitions of %s assigned for %.0fs while it has %d: rejoining the "
                    "consumer group", self.name, self.settings.topic, self._rejoin_after, partitions)
        self._rejoin_after = min(REJOIN_MAX, self._rejoin_after * 2)
        self.consumer.close(autocommit=False)
        for sink in self.sinks.values():
            sink.close()
        self.sinks.clear()
        self._make_consumer()

    # -- group mode: join once the topic exists -------------------------------------------
    def _wait_for_topic(self, stop: Stop, give_up: float | None) -> bool:
        """Wait (riding out a broker that does not answer) until the topic exists; False when
        stopped or after ``give_up`` seconds. A group joined before its topic exists is not given
        the partitions by every broker once it appears (Tansu answers the member's rejoin with
        its old, empty assignment): join only once it is there."""
        from ingest.kafka_log import make_probe, topic_identity

        deadline = None if give_up is None else time.monotonic() + give_up
        warned = False
        while not stop.requested and (deadline is None or time.monotonic() < deadline):
            try:
                probe = make_probe(self.settings, f"{self.name}-wait")
                try:
                    if topic_identity(probe, self.settings.topic)[0]:
                        return True
                finally:
                    probe.close()
                why = "it does not exist (the relay or `qscan kafka init` creates it)"
            except KafkaError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if not warned:
                log.warning("%s: waiting for topic %s: %s", self.name, self.settings.topic, why)
                warned = True
            time.sleep(1.0)
        return False

    def run(self, stop: Stop, *, once: bool = False, idle_timeout: float = 10.0) -> int:
        """Consume until stopped; with ``once``, until caught up (or idle that long)."""
        give_up = idle_timeout if once else None
        if self.static is None and not self._wait_for_topic(stop, give_up):
            return self.applied
        self._make_consumer()
        last_progress = time.monotonic()
        backoff = 0.0
        try:
            while not stop.requested:
                try:
                    n = self.poll_once()
                    self._rejoin_if_unassigned()
                except (KafkaError, OSError) as exc:  # the broker down: wait as the relay does
                    backoff = min(30.0, backoff * 2 or 0.5)
                    log.warning("%s: %s: %s; retrying in %.1fs", self.name, type(exc).__name__, exc, backoff)
                    deadline = time.monotonic() + backoff
                    while not stop.requested and time.monotonic() < deadline:
                        time.sleep(0.1)
                    continue
                backoff = 0.0
                if n:
                    last_progress = time.monotonic()
                elif once and (self.caught_up() or time.monotonic() - last_progress > idle_timeout):
                    break
        finally:
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            for sink in self.sinks.values():
                sink.close()
            self.sinks.clear()
            if self.anchors is not None:
                self.anchors.close()
        return self.applied


def scan_topic(settings: KafkaSettings, *, partitions: list[int] | None = None,
               types: Collection[str] | None = None, with_raw: bool = True, idle_timeout: float = 10.0,
               batch: int = 500, name: str = "scan") -> Generator[Scanned, None, None]:
    """Every record the topic still retains, all partitions (or ``partitions``) from their first
    offset, read-only: no consumer group and no commits, so nobody's offsets move.

    Ends when every partition is read to its high-watermark (from Fetch: ``end_offsets()``
    is not trustworthy on every Kafka-protocol broker, docs/kafka.md), or after
    ``idle_timeout`` seconds without a record. ``types``: records of other event types are
    yielded as :class:`PassedOver`; a record that does not decode as :class:`Undecodable`.
    ``name`` goes into the client id (``<client_id>-<name>``)."""
    for r in scan_records(settings, partitions=partitions, idle_timeout=idle_timeout,
                          batch=batch, name=name):
        item: Scanned
        try:
            event = decode_value(r.value, with_raw=with_raw)
        except ValueError as exc:  # UnknownEventType and pydantic's ValidationError too
            item = Undecodable(f"{r.topic}/{r.partition}@{r.offset}", str(exc))
        else:
            item = (LogRecord(r.offset, event) if types is None or event.type in types
                    else PassedOver(r.offset))
        yield item


def scan_records(settings: KafkaSettings, *, partitions: list[int] | None = None,
                 idle_timeout: float = 10.0, batch: int = 500,
                 name: str = "scan") -> Generator[Any, None, None]:
    """:func:`scan_topic`'s records undecoded (kafka-python ``ConsumerRecord``: topic,
    partition, offset, key, value, headers): for walking the journal chains they carry."""
    consumer = make_consumer(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-{name}",
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_bytes=max(settings.max_request_size, 52428800),
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        wanted = partitions
        if wanted is None:
            known = consumer.partitions_for_topic(settings.topic)
            wanted = sorted(known) if known else list(range(settings.partitions))
        tps = [TopicPartition(settings.topic, p) for p in wanted]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last = time.monotonic()
        while True:
            batches = consumer.poll(timeout_ms=500, max_records=batch)
            if not batches:
                if _read_to_end(consumer, tps):
                    return
                if time.monotonic() - last > idle_timeout:
                    log.warning("kafka %s: no progress for %.0f s; stopping", name, idle_timeout)
                    return
                continue
            last = time.monotonic()
            for records in batches.values():
                yield from records
    finally:
        consumer.close(autocommit=False)


def _read_to_end(consumer: Any, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        hw = consumer.highwater(tp)
        if hw is None or consumer.position(tp) < hw:
            return False
    return True


def waiting_ids(settings: KafkaSettings, offsets: dict[int, int], *, idle_timeout: float = 10.0) -> set[str]:
    """The event ids of every record at or after ``offsets`` (``{partition: next offset}`` a
    consumer stored; a partition without one from its start): what the consumer has still
    to apply. Read-only (no group, no commits).

    Raises KafkaError when the broker cannot be read, LookupError when the topic is gone."""
    consumer = make_consumer(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-verify",
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_bytes=max(settings.max_request_size, 52428800),
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        known = consumer.partitions_for_topic(settings.topic)
        if not known:
            raise LookupError(f"topic {settings.topic} does not exist")
        tps = [TopicPartition(settings.topic, p) for p in sorted(known)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, offsets.get(tp.partition, 0))
        ids: set[str] = set()
        last = time.monotonic()
        while not _read_to_end(consumer, tps):
            batches = consumer.poll(timeout_ms=500, max_records=2000)
            if batches:
                last = time.monotonic()
            elif time.monotonic() - last > idle_timeout:
                raise KafkaTimeoutError(f"no progress reading {settings.topic} for {idle_timeout:g}s")
            for records in batches.values():
                ids.update(i for r in records if (i := event_id_of(r.value)) is not None)
        return ids
    finally:
        consumer.close(autocommit=False)
