"""The Kafka topic as the log: relaying journals into it, and the topic contract.

Contract (docs/kafka.md has the long form):
- key: the event id (UTF-8); value: the serialized event (JSON, raw message base64);
  headers: ``schema_version``, ``event_type``, ``source_host``, and ``journal_link``
  (the event's place in its host's journal chain, ``ingest.journal_link``).
- the value is the journal's body bytes unchanged, with ``raw_message`` spliced on as
  the last member: a consumer host can recompute every link from the record alone.
- partition: chosen from the *root* event id - the event's own id, or the id of the
  message it is about (``ref_event_id``) - with Kafka's murmur2, so every event about a
  message lands in that message's partition, after it. Consumers see a message's
  ``message.queue_failed`` (and later release/hold events) after the message itself.
- delivery is at least once: consumers are idempotent by event id.

Kafka down never stops mail: the daemon writes to the journal whatever happens, the
relay retries with bounded back-off, and advances its journal position only after the
broker acknowledged (acks=all), so the journal is pruned only behind it.

A topic that lost records (a broker restarted without its data, a topic deleted and
created again) is found by the relay on its own: after each acknowledged batch it keeps
a *mark* in the journal (the batch's last journal position, the topic id, and per
partition the offset and event id of the last record it wrote there). On every new
producer and every ``check_interval`` seconds it fetches those records again; a mark
whose records are gone (another topic id, a shorter partition, another event at the
offset) is not on the broker any more, so the relay moves its position back to the
newest mark still there (or to the journal's start) and sends again from the journal.
Consumers are idempotent by event id, so what they already applied changes nothing.
No client ever creates the topic implicitly (``allow_auto_create_topics`` off): a
missing topic is created by the relay as ``qscan kafka init`` would, with the configured
partitions, never with the broker's default count.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.journal import Journal, JournalEntry
from ingest.journal_link import HEADER as HEADER_LINK
from ingest.journal_link import Link, splice_raw
from ingest.log import KafkaLogSettings, Stop
from ingest.processor import ProcessorSettings

with warnings.catch_warnings():  # kafka-python 3 warns about its own internals on 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError, KafkaTimeoutError, OffsetOutOfRangeError
    from kafka.partitioner.default import murmur2

log = logging.getLogger(__name__)

RELAY_NAME = "relay"
MARKS_KEY = "relay.marks.{topic}"  # journal meta: the relay's marks for a topic
MAX_MARKS = 32
HEADER_SCHEMA = "schema_version"
HEADER_TYPE = "event_type"
HEADER_HOST = "source_host"


class TopicMismatch(Exception):
    """The topic is not what the config says (partition count): only a person can fix it."""


@dataclass(frozen=True, slots=True)
class KafkaSettings(KafkaLogSettings):
    """[log.kafka] with what the wiring adds: this host's client id and the largest message
    the daemon accepts (the producer's request size follows it)."""

    max_message_size: int = ProcessorSettings().max_message_size  # daemon.max_message_size
    client_id: str = "qscan"
    extra: dict[str, Any] = field(default_factory=dict)  # more KafkaProducer arguments

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86400 * 1000)

    @property
    def max_request_size(self) -> int:
        """Room for the base64-encoded raw message (4/3) plus the event around it."""
        return self.max_message_size * 4 // 3 + 1024 * 1024


def partition_for(root_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, positive) applied to the root event id."""
    return (murmur2(root_id.encode()) & 0x7FFFFFFF) % partitions


def serialize(entry: JournalEntry) -> tuple[bytes, dict[str, Any]]:
    """The full event (raw message re-attached as base64) and its decoded header dict.

    The journal keeps the raw message beside the JSON; the topic carries one JSON value:
    the body's own bytes with the raw message spliced on (so its journal link still holds).
    """
    obj = json.loads(entry.body)
    if entry.raw is None:
        return entry.body, obj
    return splice_raw(entry.body, base64.b64encode(entry.raw)), obj


def record_for(entry: JournalEntry, host: str, partitions: int) -> dict[str, Any]:
    value, obj = serialize(entry)
    root = obj.get("ref_event_id") or entry.event_id
    headers = [
        (HEADER_SCHEMA, str(obj.get("schema_version", 1)).encode()),
        (HEADER_TYPE, entry.type.encode()),
        (HEADER_HOST, host.encode()),
    ]
    if entry.chain is not None and entry.prev is not None:
        headers.append((HEADER_LINK, Link(entry.seq, entry.appended, entry.prev, entry.chain,
                                          entry.raw is not None).header()))
    return {
        "key": entry.event_id.encode(),
        "value": value,
        "partition": partition_for(root, partitions),
        "headers": headers,
    }


def no_auto_create(client: Any) -> Any:
    """Make sure ``client`` (a KafkaConsumer or KafkaProducer) never asks the broker to create a
    topic. kafka-python 3.0 accepts ``allow_auto_create_topics=False`` but does not hand it to the
    cluster metadata that builds the Metadata requests (checked against 3.0.12), so a consumer of
    a missing topic would still have it created with the broker's default partitions."""
    cluster = getattr(client, "_metadata", None) or client._client.cluster
    cluster.config["allow_auto_create_topics"] = False
    return client


def make_consumer(**options: Any) -> Any:
    """A KafkaConsumer that never has a topic created (see no_auto_create)."""
    return no_auto_create(KafkaConsumer(allow_auto_create_topics=False, **options))


def make_producer(settings: KafkaSettings) -> KafkaProducer:
    compression = None if settings.compression == "none" else settings.compression
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-relay",
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": compression,
        "max_request_size": settings.max_request_size,
        "request_timeout_ms": settings.request_timeout_ms,
        "linger_ms": 5,
        "retries": 5,
        # a missing topic is created by the relay with the configured partitions
        # (Relay.check_topic), never by the broker's defaults
        "allow_auto_create_topics": False,
        "max_block_ms": settings.request_timeout_ms,
        **settings.extra,
    }
    return no_auto_create(KafkaProducer(**options))


def make_probe(settings: KafkaSettings, name: str) -> Any:
    """A read-only consumer (no group, no commits, no topic creation) for checks."""
    return make_consumer(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-{name}",
        group_id=None, enable_auto_commit=False,
        auto_offset_reset="none",  # an offset out of range must say so, not move
        max_partition_fetch_bytes=settings.max_request_size,
        fetch_max_bytes=max(settings.max_request_size, 52428800),
        request_timeout_ms=settings.request_timeout_ms,
    )


def topic_identity(probe: Any, topic: str) -> tuple[int, str | None]:
    """(partition count, topic id) from fresh metadata; (0, None) when the topic does not exist."""
    probe._client.cluster.request_update()
    parts = probe.partitions_for_topic(topic)  # waits for the metadata
    if not parts:
        return 0, None
    tid = probe._client.cluster.topic_id(topic)
    return len(parts), (str(tid) if tid is not None and tid != uuid.UUID(int=0) else None)


def record_at(probe: Any, tp: Any, offset: int, timeout: float) -> tuple[Any, int | None]:
    """(the record at ``offset`` or the next one kept, the high-watermark) by Fetch; ``(None, hw)``
    when the partition ends at or before ``offset``. Raises OffsetOutOfRangeError below the log
    start (or past the end, on brokers that say so) and KafkaTimeoutError without an answer."""
    probe.assign([tp])
    probe.seek(tp, offset)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in probe.poll(timeout_ms=200, max_records=1).get(tp, []):
            return rec, probe.highwater(tp)
        hw = probe.highwater(tp)
        if hw is not None and hw <= offset:
            return None, hw
    raise KafkaTimeoutError(f"no answer fetching {tp} offset {offset}")


def _force_close(producer: Any) -> None:
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()
    except Exception:
        log.debug("forcing the producer's sender down failed", exc_info=True)
    producer._closed = True  # kafka-python's own flag: its __del__ must not flush again


class Relay:
    """Journal -> topic, advancing the relay position only behind broker acknowledgements."""

    def __init__(
        self,
        journal: Journal,
        settings: KafkaSettings,
        host: str,
        *,
        producer_factory: Callable[[KafkaSettings], Any] = make_producer,
        max_backoff: float = 30.0,
        watch: Callable[[], None] | None = None,
        check_interval: float = 30.0,
    ) -> None:
        self.journal = journal
        self.settings = settings
        self.host = host
        self.batch = settings.relay_batch
        self.producer_factory = producer_factory
        self.max_backoff = max_backoff
        self.watch = watch  # called every loop turn (the journal disk-budget warning)
        self._producer: Any = None
        self.failures = 0
        self.sent = 0
        self.check_interval = check_interval  # seconds between checks that the topic kept our records
        self._checked = 0.0
        self.resent = 0  # events sent again after the topic was found to have lost them
        self.created = 0  # times the relay created a missing topic

    def position(self) -> int:
        return self.journal.get_position(RELAY_NAME) or 0

    def lag(self) -> tuple[int, float]:
        """(events not yet relayed, seconds since the oldest of them was appended)."""
        pos = self.position()
        pending = self.journal.read(pos, 1, with_raw=False)
        if not pending:
            return 0, 0.0
        return self.journal.head() - pos, max(0.0, time.time() - pending[0].appended)

    def _drop_producer(self, timeout: float = 0) -> None:
        """Close the producer: at once when it is broken (0), or letting it finish when the relay
        stops normally (everything was acknowledged already, so this is quick)."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout)
            except Exception:
                # kafka-python's close() flushes first and gives up on a timeout with records
                # still pending, leaving the producer open: its __del__ would then try again
                # later and time out in some unrelated place. Those records were never
                # acknowledged (the position did not move), so drop them with the sender.
                log.debug("closing a broken producer failed; forcing it", exc_info=True)
                _force_close(self._producer)
            self._producer = None

    def send_batch(self) -> int:
        """Relay one batch; returns how many events were acknowledged (0: nothing pending)."""
        if self._producer is None or time.monotonic() - self._checked >= self.check_interval:
            self.check_topic()
        pos = self.position()
        entries = self.journal.read(pos, self.batch, with_raw=True)
        if not entries:
            return 0
        if self._producer is None:
            self._producer = self.producer_factory(self.settings)
        try:
            futures = [
                self._producer.send(self.settings.topic, **record_for(e, self.host, self.settings.partitions))
                for e in entries
            ]
        except ValueError as exc:  # kafka-python: 'Unrecognized partition' (the topic shrank?)
            self.check_topic()
            raise TopicMismatch(f"topic {self.settings.topic}: {exc}") from exc
        self._producer.flush(timeout=self.settings.request_timeout_ms / 1000)
        timeout = self.settings.request_timeout_ms / 1000
        last: dict[int, list[Any]] = {}
        for e, f in zip(entries, futures, strict=True):
            meta = f.get(timeout=timeout)  # raises if the broker did not acknowledge
            last[int(meta.partition)] = [int(meta.offset), e.event_id]
        self.sent += len(entries)
        if self._add_mark(entries[-1].seq, last):
            self.journal.set_position(RELAY_NAME, entries[-1].seq)
        return len(entries)

    # -- marks: what the topic must still hold ------------------------------------------
    def _marks_key(self) -> str:
        return MARKS_KEY.format(topic=self.settings.topic)

    def marks(self) -> list[dict[str, Any]]:
        """``[{"seq", "topic_id", "anchors": {partition: [offset, event id]}}]``, oldest first."""
        text = self.journal.meta(self._marks_key())
        try:
            marks = json.loads(text) if text else []
        except ValueError:
            log.warning("relay: unreadable marks in the journal; starting them afresh")
            return []
        return marks if isinstance(marks, list) else []

    def _save_marks(self, marks: list[dict[str, Any]]) -> None:
        self.journal.set_meta(self._marks_key(), json.dumps(marks, separators=(",", ":")))

    def _add_mark(self, seq: int, last: dict[int, list[Any]]) -> bool:
        """Record what the batch up to ``seq`` wrote; False when the batch went to another topic
        than the marks before it (re-created meanwhile, by another host's relay say): then what
        was sent before is not on the broker any more and the position went back instead."""
        marks = self.marks()
        tid = None
        metadata = getattr(self._producer, "_metadata", None)
        if metadata is not None:
            found = metadata.topic_id(self.settings.topic)
            tid = str(found) if found is not None and found != uuid.UUID(int=0) else None
        before = marks[-1].get("topic_id") if marks else None
        if tid is not None and before is not None and before != tid:
            self._rewind(marks, 0, f"a batch went to topic id {tid}, the ones before it to {before} "
                         "(the topic was created again)")
            return False
        anchors = dict(marks[-1]["anchors"]) if marks else {}
        anchors.update({str(p): v for p, v in last.items()})
        marks.append({"seq": seq, "topic_id": tid, "anchors": anchors})
        if len(marks) > MAX_MARKS:  # thin out the older half: recent marks matter most
            half = len(marks) // 2
            marks = marks[:half:2] + marks[half:]
        self._save_marks(marks)
        return True

    def _mark_present(self, probe: Any, mark: dict[str, Any], tid: str | None) -> str | None:
        """None when the topic still holds every record of ``mark``, else why not."""
        if tid is not None and mark.get("topic_id") not in (None, tid):
            return f"the topic id is now {tid}, not {mark['topic_id']} (the topic was created again)"
        timeout = self.settings.request_timeout_ms / 1000
        for p, (offset, event_id) in sorted(mark["anchors"].items()):
            tp = TopicPartition(self.settings.topic, int(p))
            try:
                rec, hw = record_at(probe, tp, int(offset), timeout)
            except OffsetOutOfRangeError:
                ends = probe.end_offsets([tp])  # aged out by retention, or the partition is shorter
                if int(ends.get(tp) or 0) > int(offset):
                    continue
                return f"partition {p} no longer reaches offset {offset}"
            if rec is None:
                return f"partition {p} now ends at offset {hw}, the relay wrote offset {offset}"
            key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
            if rec.offset == int(offset) and key != event_id:
                return f"partition {p} offset {offset} now holds event {key}, not {event_id}"
        return None

    def check_topic(self) -> None:
        """Check the topic against the config and against what this relay wrote to it.

        - missing: create it with the configured partitions (as ``qscan kafka init``);
        - another partition count: raise TopicMismatch (every event goes to partition
          murmur2(root id) % partitions, so a different count would make the producer fail or
          scatter a message's events; only a person can decide);
        - records this relay wrote are gone: move the relay position back to the newest mark
          the topic still holds (or the journal's start) so they are sent again.
        """
        probe = make_probe(self.settings, "relay-check")
        try:
            n, tid = topic_identity(probe, self.settings.topic)
            if n == 0:
                self._create_topic()
                n, tid = self._wait_for_topic(probe)
            if n != self.settings.partitions:
                raise TopicMismatch(
                    f"topic {self.settings.topic} has {n} partitions but [log.kafka] partitions = "
                    f"{self.settings.partitions}. Nothing was relayed (the journal keeps every event). "
                    f"If the topic was created by hand or by another tool, delete it and run "
                    f"`qscan kafka init`; if the config is wrong and the topic is new, set "
                    f"partitions = {n}; then restart the relay")
            marks = self.marks()
            keep = len(marks)
            why = None
            while keep > 0:
                reason = self._mark_present(probe, marks[keep - 1], tid)
                if reason is None:
                    break
                why = why or reason
                keep -= 1
            if why is not None:
                self._rewind(marks, keep, why)
        finally:
            probe.close()
        self._checked = time.monotonic()

    def _create_topic(self) -> None:
        try:
            notes = init_topic(self.settings)
        except TopicMismatch:  # another relay is creating it at this moment: look again
            return
        if notes and notes[0].startswith("created"):
            self.created += 1
            log.warning("relay: topic %s did not exist (broker data lost or topic deleted): %s",
                        self.settings.topic, notes[0])

    def _wait_for_topic(self, probe: Any) -> tuple[int, str | None]:
        deadline = time.monotonic() + self.settings.request_timeout_ms / 1000
        while True:
            n, tid = topic_identity(probe, self.settings.topic)
            if n == self.settings.partitions or time.monotonic() > deadline:
                return n, tid
            time.sleep(0.2)

    def _rewind(self, marks: list[dict[str, Any]], keep: int, why: str) -> None:
        back_to = int(marks[keep - 1]["seq"]) if keep else 0
        pos = self.position()
        back_to = min(back_to, pos)
        oldest = self.journal.oldest()
        self._save_marks(marks[:keep])
        self._drop_producer()  # its metadata describes the old topic
        self.journal.set_position(RELAY_NAME, back_to)
        self.resent += pos - back_to
        log.warning("relay: topic %s lost records this relay had sent (%s): sending again from "
                    "journal position #%d (was #%d)", self.settings.topic, why, back_to, pos)
        if oldest and oldest > back_to + 1:
            log.error("relay: journal events #%d-#%d were pruned before the topic lost them: they "
                      "cannot be sent again (journal.retain_days keeps events for this case)",
                      back_to + 1, oldest - 1)

    def run(self, stop: Stop, *, once: bool = False, poll_interval: float = 0.2) -> int:
        """Relay until stopped (or caught up with ``once``); returns events relayed.

        Raises TopicMismatch (after closing the producer) when the topic does not match
        the config: retrying could not help.
        """
        total = 0
        backoff = 0.0
        while not stop.requested:
            if self.watch is not None:
                self.watch()
            try:
                n = self.send_batch()
            except TopicMismatch:
                self._drop_producer()
                raise
            except (KafkaError, OSError, AssertionError) as exc:
                # A fatal producer state (lost producer id after a broker restart, say)
                # must not wedge the relay: start over with a fresh producer.
                self.failures += 1
                self._drop_producer()
                backoff = min(self.max_backoff, backoff * 2 or 0.5)
                events, seconds = self.lag()
                log.warning("relay: %s: %s; %d events waiting (%.0fs); retrying in %.1fs",
                            type(exc).__name__, exc, events, seconds, backoff)
                _sleep(stop, backoff)
                continue
            backoff = 0.0
            total += n
            if n == 0:
                if once:
                    break
                _sleep(stop, poll_interval)
        self._drop_producer(timeout=5)
        return total


def _sleep(stop: Stop, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(min(0.1, deadline - time.monotonic()))


def init_topic(settings: KafkaSettings) -> list[str]:
    """Create the topic, or check an existing one; returns what was done.

    Raises TopicMismatch when an existing topic has another partition count than the
    config (the relay would fail or scatter a message's events) or a max.message.bytes
    too small for the largest message the config admits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

    configs = {
        "max.message.bytes": str(settings.max_request_size),
        "retention.ms": str(settings.retention_ms),
    }
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             client_id=f"{settings.client_id}-admin",
                             request_timeout_ms=settings.request_timeout_ms)
    notes: list[str] = []
    try:
        try:
            admin.create_topics([NewTopic(settings.topic, settings.partitions,
                                          settings.replication_factor, topic_configs=configs)])
            notes.append(f"created topic {settings.topic} with {settings.partitions} partitions")
        except TopicAlreadyExistsError:
            described = admin.describe_topics([settings.topic])[0]
            have = len(described.get("partitions", []))
            problems = []
            if have != settings.partitions:
                problems.append(
                    f"it has {have} partitions, [log.kafka] partitions = {settings.partitions}: "
                    f"every event goes to murmur2(message id) % partitions, so the counts must agree. "
                    f"If the topic is new or may be emptied, delete it and run `qscan kafka init` again; "
                    f"if the config is wrong, set partitions = {have}")
            size = _max_message_bytes(admin, settings.topic)
            if size is not None and size < settings.max_request_size:
                problems.append(
                    f"its max.message.bytes is {size}, below the {settings.max_request_size} a "
                    f"{settings.max_message_size}-byte message needs (base64 and the event around it): "
                    f"raise it (kafka-configs --alter --add-config "
                    f"max.message.bytes={settings.max_request_size})")
            if problems:
                raise TopicMismatch(f"topic {settings.topic} does not match the config: "
                                    + "; ".join(problems)) from None
            notes.append(f"topic {settings.topic} exists with {have} partitions"
                         + (f", max.message.bytes {size}" if size is not None
                            else " (max.message.bytes not reported by the broker: unchecked)"))
    finally:
        admin.close()
    return notes


def _max_message_bytes(admin: Any, topic: str) -> int | None:
    """The topic's effective max.message.bytes, or None if the broker does not say."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        value = found["topic"][topic]["max.message.bytes"]["value"]
        return int(value)
    except (KafkaError, KeyError, TypeError, ValueError):
        log.debug("describe_configs of %s failed", topic, exc_info=True)
        return None


def partitions_of(entries: Sequence[JournalEntry], partitions: int) -> list[int]:
    """Where each entry goes (for tests and status)."""
    return [record_for(e, "", partitions)["partition"] for e in entries]
