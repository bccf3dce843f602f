"""Retro-hunts: today's DLP rules over yesterday's mail, the event log's replay put to use.

Three places hold past mail, each read by one source generator that yields the
same :class:`Stored` items (envelope facts plus a way to get the raw message):

* the journal - every event it still retains (``journal.retain_days``), through the log
  API's read-only scan (``ingest.log.JournalReader.scan``);
* Kafka - what the topic still retains, every partition from its first offset, through
  ``ingest.kafka_source.scan_topic`` (no consumer group, nothing committed: a hunt moves
  nobody's offsets);
* the archive maildir and the quarantine maildirs - stored copies, envelope taken
  from the block at the bottom of each file: ``archive.hunt.archive_source`` (one layer up,
  since it reads ``archive.copies``).

Each message goes through the same :class:`scanners.dlp.engine.DlpEngine` as the
inline scanner; what fires is recorded in SQL (``compliance.dlp_hunts``). A hunt
only reads: it never changes a message, an event or a stored copy.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compliance.audit import address_pattern
from compliance.dlp_hunts import HuntStore, finding_rows
from ingest.event import MessageScanned
from ingest.ids import uuid7
from ingest.journal import Journal
from ingest.log import JournalReader, LogRecord, PassedOver, Undecodable
from scanners.direction import direction
from scanners.dlp.engine import DlpEngine, MessageFacts

if TYPE_CHECKING:
    from ingest.kafka_log import KafkaSettings

log = logging.getLogger(__name__)
_PARSER = BytesParser(policy=email_policy.default)
BATCH = 200
MESSAGE_TYPES = frozenset({"message.scanned"})  # the events that carry mail


@dataclass(frozen=True)
class HuntFilter:
    """Which messages a hunt looks at; every condition given must hold. Globs use ``*``."""

    since: datetime | None = None
    until: datetime | None = None
    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None  # the sender's or any recipient's domain
    direction: str | None = None  # inbound, outbound, local

    def as_query(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items() if v is not None}

    def in_time(self, when: datetime | None) -> bool:
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # qscan writes UTC; a naive time is one too
        if self.since is not None and (when is None or when < self.since):
            return False
        return self.until is None or (when is not None and when < self.until)

    def matches(self, when: datetime | None, sender: str, recipients: list[str], direction: str) -> bool:
        if not self.in_time(when):
            return False
        if self.sender is not None and not _glob(address_pattern(self.sender), sender):
            return False
        rcpt = address_pattern(self.recipient) if self.recipient is not None else None
        if rcpt is not None and not any(_glob(rcpt, r) for r in recipients):
            return False
        if self.domain is not None:
            domains = [_domain(a) for a in [sender, *recipients]]
            if not any(_glob(self.domain, d) for d in domains):
                return False
        return self.direction is None or self.direction == direction


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1].lower() if "@" in address else ""


@dataclass
class Stored:
    """One past message as a source found it; ``raw`` is fetched only when the filter passed."""

    event_id: str
    received_at: datetime | None
    sender: str
    recipients: list[str]
    relay: bool
    client_ip: str | None
    raw: Callable[[], bytes | None]
    outbound: bool | None = None  # unknown in archived copies: relay stands for it

    @property
    def direction(self) -> str:
        return direction(self.relay, self.client_ip, self.outbound)


@dataclass(frozen=True)
class Unreadable:
    where: str
    why: str


Item = Stored | Unreadable


# -- sources --------------------------------------------------------------------------------------
def journal_source(path: Path) -> tuple[int, Iterator[Item]]:
    """(events to look at, items) from the journal, oldest first."""
    reader = JournalReader(Journal(path, readonly=True))
    total = reader.count()

    def items() -> Iterator[Item]:
        try:
            for scanned in reader.scan(types=MESSAGE_TYPES, with_raw=False, batch=BATCH):
                if isinstance(scanned, LogRecord):
                    assert isinstance(scanned.event, MessageScanned)
                    yield _from_event(scanned.event, functools.partial(reader.raw, scanned.event.event_id))
                else:
                    yield _unread(scanned)
        finally:
            reader.journal.close()

    return total, items()


def _unread(scanned: Undecodable | PassedOver) -> Unreadable:
    if isinstance(scanned, PassedOver):
        return Unreadable("", "")  # not a message: counted for progress only
    return Unreadable(scanned.where, scanned.reason[:200])


def _from_event(event: MessageScanned, raw: Callable[[], bytes | None]) -> Stored:
    return Stored(event.event_id, event.time, event.envelope.sender, list(event.envelope.recipients),
                  event.client.relay, event.client.ip, raw, event.client.outbound)


def kafka_source(settings: KafkaSettings, partitions: list[int] | None = None,
                 idle_timeout: float = 10.0) -> tuple[int | None, Iterator[Item]]:
    """Every event the topic still retains, all partitions from their first offset. No consumer
    group and no commits: a hunt is invisible to the consumers."""
    from ingest.kafka_source import scan_topic

    def items() -> Iterator[Item]:
        topic = scan_topic(settings, partitions=partitions, types=MESSAGE_TYPES, with_raw=True,
                           idle_timeout=idle_timeout, batch=BATCH, name="dlp-hunt")
        with contextlib.closing(topic):  # the hunt closing its items closes the Kafka consumer
            for scanned in topic:
                if isinstance(scanned, LogRecord):
                    event = scanned.event
                    assert isinstance(event, MessageScanned)
                    yield _from_event(event, functools.partial(same, event.raw_message or None))
                else:
                    yield _unread(scanned)

    return None, items()


def same(value: bytes | None) -> bytes | None:
    """``functools.partial(same, raw)``: a message already in hand, as a source's ``raw``."""
    return value


# -- the run --------------------------------------------------------------------------------------
@dataclass
class HuntStats:
    hunt_id: str
    examined: int = 0
    matched: int = 0
    findings: int = 0  # rows written to SQL (a dry run: rows that would have been)
    unreadable: int = 0
    skipped: int = 0  # outside the filter (or not a message event)
    by_rule: dict[str, int] = field(default_factory=dict)  # messages per rule
    state: str = "running"  # then 'finished', 'interrupted' or 'failed'
    error: str = ""  # why a failed hunt failed

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class HuntFailed(Exception):
    """A hunt stopped by an error; ``stats`` counts what was evaluated and written before it."""

    def __init__(self, stats: HuntStats) -> None:
        super().__init__(stats.error)
        self.stats = stats


def rules_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def actor() -> str:
    """login@host of who runs the hunt (compliance.identity; never $USER or $LOGNAME)."""
    from compliance.identity import actor as login_at

    return login_at(socket.gethostname())


def error_text(exc: BaseException) -> str:
    """``OSError: [Errno 5] ...``: the exception's type and text, once, at most 1000 characters."""
    name, text = type(exc).__name__, str(exc)
    return (text if text.startswith(name) else f"{name}: {text}" if text else name)[:1000]


def run_hunt(engine: DlpEngine, items: Iterator[Item], store: HuntStore | None, *,
             filt: HuntFilter, hunt_id: str | None = None,
             advance: Callable[[HuntStats], None] = lambda stats: None,
             stopped: Callable[[], bool] = lambda: False) -> HuntStats:
    """Evaluate every item the filter keeps; record findings in ``store`` (None: dry run).

    The hunt row itself is written by the caller (start/finish) from the returned totals,
    which always describe what is in SQL:

    * ``stopped()`` true (the CLI's first Ctrl-C) or a KeyboardInterrupt: the findings
      still pending are written, state ``interrupted``, and the stats are returned;
    * any other exception: pending findings are written if the store still can, state
      ``failed`` with the error text, and :class:`HuntFailed` is raised (from the cause).
    """
    stats = HuntStats(hunt_id or str(uuid7()))
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal pending
        if store is not None and pending:
            store.add(pending)  # one transaction: all of the batch or none of it
            stats.findings += len(pending)
        pending = []

    try:
        for item in items:
            advance(stats)
            if stopped():
                stats.state = "interrupted"
                break
            _evaluate(engine, item, filt, stats, pending, dry_run=store is None)
            if len(pending) >= BATCH:
                flush()
        flush()
    except KeyboardInterrupt:
        stats.state = "interrupted"
        flush()  # a second Ctrl-C here leaves the row 'running' for the caller to settle
    except Exception as exc:
        stats.state = "failed"
        stats.error = error_text(exc)
        try:
            flush()
        except Exception as again:
            stats.error = f"{stats.error}; {len(pending)} findings not written: {again}"[:1000]
        raise HuntFailed(stats) from exc
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a generator's own finally: the journal or the Kafka consumer is closed
    if stats.state == "running":
        stats.state = "finished"
    return stats


def _evaluate(engine: DlpEngine, item: Item, filt: HuntFilter, stats: HuntStats,
              pending: list[dict[str, Any]], *, dry_run: bool) -> None:
    if isinstance(item, Unreadable):
        if item.where:
            stats.unreadable += 1
            log.warning("hunt: %s: %s", item.where, item.why)
        else:
            stats.skipped += 1
        return
    direction = item.direction
    if not filt.matches(item.received_at, item.sender, item.recipients, direction):
        stats.skipped += 1
        return
    raw = item.raw()
    if not raw:
        stats.unreadable += 1
        return
    try:
        message = _PARSER.parsebytes(raw)
    except Exception:
        stats.unreadable += 1
        return
    evaluation = engine.evaluate(message, MessageFacts(item.sender, item.recipients,
                                                             item.direction == "outbound"))
    records = evaluation.records()
    rows = finding_rows(stats.hunt_id, item.event_id, item.received_at, item.sender, direction, records)
    pending.extend(rows)
    if dry_run:
        stats.findings += len(rows)
        pending.clear()
    stats.examined += 1
    if records:
        stats.matched += 1
        for rule in dict.fromkeys(r["rule"] for r in records):
            stats.by_rule[rule] = stats.by_rule.get(rule, 0) + 1


def query_of(filt: HuntFilter, source: str) -> dict[str, Any]:
    return {"source": source, **filt.as_query()}


def dumps(stats: HuntStats) -> str:
    return json.dumps(stats.as_json(), indent=2, sort_keys=True)
