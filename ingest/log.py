"""The log API consumers read through: the embedded journal today, Kafka later.

A consumer owns its position in its *sink* (SQL transaction, maildir checkpoint
file) so that rows and position commit together: replays and duplicates change
nothing. The log is told the position afterwards only so it knows what it may
prune and can report lag.

A reader also offers a read-only *scan* (``JournalReader.scan``,
``ingest.kafka_source.scan_topic``): every record still kept, oldest first, with no
position stored and nobody's moved; a record that does not decode is reported as
:class:`Undecodable` rather than raised. DLP retro-hunts read past mail that way.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ingest.event import AnyEvent, from_json
from ingest.journal import Journal, JournalEntry
from scanners.settings import SECTION, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One decoded event at a position of the log."""

    position: int
    event: AnyEvent


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record a scan could not decode: where it is (``journal #12``, ``topic/0@5``) and why."""

    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class PassedOver:
    """A record of a type the scan was not asked for, left undecoded."""

    position: int


Scanned = LogRecord | Undecodable | PassedOver  # one per record a scan reads


class LogReader(Protocol):
    def read(self, after: int, limit: int, *, with_raw: bool) -> Sequence[LogRecord]: ...

    def head(self) -> int: ...

    def commit(self, name: str, position: int) -> None:
        """Tell the log a consumer has durably handled everything up to ``position``."""


class JournalReader:
    """LogReader over the embedded journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def read(self, after: int, limit: int = 500, *, with_raw: bool = True) -> list[LogRecord]:
        return [decode_entry(e) for e in self.journal.read(after, limit, with_raw=with_raw)]

    def head(self) -> int:
        return self.journal.head()

    def commit(self, name: str, position: int) -> None:
        self.journal.set_position(name, position)

    def count(self) -> int:
        """Records the journal still keeps (what a scan will read)."""
        return self.journal.count()

    def scan(self, *, types: Collection[str] | None = None, with_raw: bool = False,
             batch: int = 500) -> Iterator[Scanned]:
        """Every record the journal keeps, oldest first, read-only (no position stored or moved).

        ``types``: decode only these event types; any other record is yielded as
        :class:`PassedOver`. ``with_raw=False`` leaves the raw messages in the journal
        (:meth:`raw` fetches one)."""
        after = 0
        while True:
            entries = self.journal.read(after, batch, with_raw=with_raw)
            if not entries:
                return
            for entry in entries:
                after = entry.seq
                item: Scanned
                if types is not None and entry.type not in types:
                    item = PassedOver(entry.seq)
                else:
                    try:
                        item = decode_entry(entry)
                    except ValueError as exc:  # pydantic's ValidationError is a ValueError
                        item = Undecodable(f"journal #{entry.seq}", f"event not decoded: {exc}")
                yield item

    def raw(self, event_id: str) -> bytes | None:
        """The raw message stored with an event, or None (not kept, or no such event)."""
        entry = self.journal.get(event_id, with_raw=True)
        return entry.raw if entry is not None else None


def decode_entry(entry: JournalEntry) -> LogRecord:
    return LogRecord(entry.seq, from_json(entry.body, entry.raw, type_=entry.type))


class Sink(Protocol):
    """A projection: applies records and stores its own position atomically with them."""

    name: str
    needs_raw: bool

    def position(self) -> int: ...

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        """Apply ``records`` (may be empty) and durably record ``position`` in the same step."""

    def set_position(self, position: int) -> None:
        """Move the stored position (replay: 0 re-applies everything still in the log)."""

    def close(self) -> None: ...


class Stop:
    """A flag set by SIGTERM/SIGINT so loops finish the batch in hand and exit."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> Stop:
        def handler(signum: int, frame: object) -> None:
            self.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return self


def run_consumer(
    reader: LogReader,
    sink: Sink,
    settings: ConsumerSettings | None = None,
    *,
    once: bool = False,
    stop: Stop | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Feed ``sink`` from ``reader`` until stopped (or caught up, with ``once``).

    ``settings``: [consumers] (batch size, poll interval). Returns the number of records applied.
    """
    settings = settings or ConsumerSettings()
    batch, poll_interval = settings.batch, settings.poll_interval
    stop = stop or Stop()
    applied = 0
    while not stop.requested:
        pos = sink.position()
        records = reader.read(pos, batch, with_raw=sink.needs_raw)
        if not records:
            if once:
                break
            time.sleep(poll_interval)
            continue
        new_pos = records[-1].position
        sink.apply(records, new_pos)
        reader.commit(sink.name, new_pos)
        applied += len(records)
        if on_batch:
            on_batch(new_pos, reader.head())
    return applied


# -- the log's settings: [journal], [consumers] (the reading half) and [log.kafka] -------------
@dataclass(frozen=True, slots=True)
class JournalSettings:
    __pydantic_config__ = SECTION
    path: Path | None = setting(
        None, "journal database (default: DATA_DIR/journal.db)", example="@DATA_DIR@/journal.db")
    retain_days: float = setting(7.0, "keep consumed events this long for replays before pruning", ge=0)
    prune_interval: float = setting(300.0, "seconds between prunes in `qscan run`", gt=0)
    disk_budget_mb: float = setting(
        10240.0, "journal size that makes `qscan journal status` fail loudly (relay and `qscan run` warn)",
        gt=0)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How consumers read the log ([consumers]; which consumers run is qscan's composition)."""

    __pydantic_config__ = SECTION
    batch: int = setting(
        500, "events per consumer transaction (at most 64 MiB of messages read at once)", ge=1, le=10000)
    poll_interval: float = setting(0.2, "seconds between polls when idle", gt=0)
    source: Literal["journal", "kafka"] = setting(
        "journal", "where consumers read events: the local journal or the Kafka topic")


@dataclass(frozen=True, slots=True)
class KafkaLogSettings:
    """The scale-out log: journals relayed to a Kafka topic that the consumers read."""

    __pydantic_config__ = SECTION
    bootstrap_servers: tuple[str, ...] = setting(
        about="broker addresses", example=("kafka1:9092", "kafka2:9092"))
    topic: str = setting("qscan.events", "the event topic")
    partitions: int = setting(6, "partitions `qscan kafka init` creates", ge=1, le=1000)
    replication_factor: int = setting(1, ge=1, le=10)
    retention_days: float = setting(7.0, "topic retention", gt=0)
    compression: Literal["zstd", "lz4", "gzip", "none"] = setting("zstd")
    group_prefix: str = setting("qscan", "consumer groups are PREFIX-NAME")
    relay_batch: int = setting(500, "events per relay round trip", ge=1, le=100000)
    request_timeout_ms: int = setting(30000, ge=1000)
