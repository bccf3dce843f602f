"""Walking a journal's hash chain (``ingest.journal_link``): what was edited, deleted or inserted.

The same walk serves the local journal (:func:`walk_journal`) and a host's
events as relayed to Kafka (:func:`walk_records`, from the ``journal_link``
header and the value: ``ingest.kafka_log``). Per event it checks two things:

* its own link: recomputed from its content and its stored ``prev``, it must
  equal its stored ``chain`` - else the event's bytes (body, raw message,
  type, id, time) were **altered**;
* continuity: its ``prev`` must be the ``chain`` of the event just before it
  and its seq that event's + 1 - else an event was **deleted** (a seq is
  missing) or **altered and re-hashed / inserted** (the seqs run on but the
  link does not: the finding names both events, ``journal HOST#N-#N+1``, and
  the earlier one's id, since the chain cannot tell which of the two is false).

Where the chain starts: at ``chain_start`` from GENESIS; after pruning, the
first kept event must link to the recorded prune point (``chain_pruned``).
Events older than ``chain_start`` (a journal made before the chain existed)
are reported once, as a note: "unchained before seq N". An event without a
link at or after ``chain_start`` is an insertion.

What the walk alone cannot see: someone who rewrites every link from the edit
to the head (they need write access to the journal and the time to re-hash).
Anchors (``compliance.anchor``) catch that: the chain must still pass through
every head written outside the host.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ingest.journal import Journal, JournalEntry
from ingest.journal_link import GENESIS, HEADER, Link, link, unsplice_raw


@dataclass(frozen=True, slots=True)
class ChainFinding:
    """One finding, in ``compliance.verify.Problem``'s fields."""

    kind: str  # altered-event, deleted-event, inserted-event
    where: str  # "journal HOST#SEQ"
    event_id: str | None
    detail: str


@dataclass
class ChainWalk:
    """The outcome of walking one host's journal chain."""

    host: str
    events: int = 0
    head: tuple[int, str] | None = None  # (seq, chain) of the last chained event seen
    first: int | None = None  # the first seq walked
    findings: list[ChainFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: dict[int, str] = field(default_factory=dict)  # seq -> chain, of the seqs kept
    ids: dict[int, str] = field(default_factory=dict)  # seq -> event id, of the seqs kept


@dataclass(frozen=True, slots=True)
class Start:
    """Where a host's chain begins in what is walked."""

    chain_start: int | None  # first chained seq (None: unknown, e.g. a topic's records)
    pruned: tuple[int, str] | None = None  # (seq, chain) of the last pruned event
    head: int | None = None  # the highest seq ever assigned (the journal's counter)


class _Walker:
    def __init__(self, host: str, start: Start, keep: Container[int]) -> None:
        self.r = ChainWalk(host)
        self.start = start
        self.keep = keep
        self.last_seq: int | None = None  # seq of the previous event walked
        self.last_link: tuple[int, str] | None = None  # (seq, chain) of the last linked one
        self.last_id: str | None = None  # its event id
        self.unchained = 0

    def where(self, seq: int) -> str:
        return f"journal {self.r.host}#{seq}"

    def add(self, kind: str, seq: int, event_id: str | None, detail: str) -> None:
        self.r.findings.append(ChainFinding(kind, self.where(seq), event_id, detail))

    def gap(self, first: int, last: int, detail: str) -> None:
        span = f"#{first}" if first == last else f"#{first}-#{last}"
        self.r.findings.append(ChainFinding("deleted-event", f"journal {self.r.host}{span}",
                                            None, detail))

    def expected_first(self, seq: int) -> str | None:
        """The prev the first walked chained event must have, or None when unknowable."""
        s = self.start
        if s.chain_start is not None and seq == s.chain_start:
            return GENESIS
        if s.pruned is not None and seq == s.pruned[0] + 1:
            return s.pruned[1]
        if s.chain_start is None:
            self.r.notes.append(f"journal {self.r.host}: the chain is walked from #{seq} (older "
                                "events are not in what was read)")
            return None
        low = max(s.chain_start, s.pruned[0] + 1 if s.pruned else s.chain_start)
        if seq > low:
            self.gap(low, seq - 1, "the oldest chained events are missing and no prune "
                     "point accounts for them (events deleted)")
        elif s.pruned is not None:
            self.add("altered-event", seq, None, f"the journal's prune point (#{s.pruned[0]}) "
                     "is not where its events end (prune record altered)")
        return None

    def feed(self, seq: int, event_id: str, event_type: str, appended: float, body: bytes,
             raw: bytes | None, prev: str | None, chain: str | None) -> None:
        intact = chain is None or prev is None or \
            link(prev, seq, appended, event_id, event_type, body, raw) == chain
        self.feed_checked(seq, event_id, prev, chain, intact)

    def feed_checked(self, seq: int, event_id: str, prev: str | None, chain: str | None,
                     intact: bool) -> None:
        """One event whose content was already checked against its own link (``intact``)."""
        self.r.events += 1
        if self.r.first is None:
            self.r.first = seq
        s = self.start
        if self.last_seq is not None and seq <= self.last_seq:
            self.add("inserted-event", seq, event_id, "a second event at the same position")
            return
        if chain is None or prev is None:
            if s.chain_start is not None and seq < s.chain_start:
                self.unchained += 1
            else:
                self.add("inserted-event", seq, event_id, "an event without a link inside "
                         "the chained part of the journal (inserted)")
            self.last_seq = seq
            return
        if not intact:
            self.add("altered-event", seq, event_id, "its content does not match its link "
                     "(body, raw message, type, id or time altered)")
        want: str | None = None
        if self.last_link is None:
            if self.last_seq is None or self.last_seq < (s.chain_start or 0):
                want = self.expected_first(seq)
            # else: an unlinked event took a chained position (reported): nothing to compare
        elif seq > (before := self.last_seq or 0) + 1:
            self.gap(before + 1, seq - 1, "events are missing (deleted)")
        elif before == self.last_link[0]:
            want = self.last_link[1]
        if want is not None and prev != want:
            if self.last_link is not None:
                # either the event before was altered and re-hashed, or this one is not its
                # real successor (inserted, replaced): both are named, the earlier by its id
                linked, linked_id = self.last_link[0], self.last_id
                self.r.findings.append(ChainFinding(
                    "altered-event", f"journal {self.r.host}#{linked}-#{seq}", linked_id,
                    f"#{seq} ({event_id}) does not link to #{linked}: #{linked} was altered "
                    f"and re-hashed, or #{seq} was inserted or replaced"))
            else:
                self.add("altered-event", seq, event_id,
                         "it does not link to where the chain starts (the events before it "
                         "were altered, or it was inserted)")
        self.last_seq = seq
        self.last_link = (seq, chain)
        self.last_id = event_id
        self.r.head = (seq, chain)
        if seq in self.keep:
            self.r.links[seq] = chain
            self.r.ids[seq] = event_id

    def finish(self) -> ChainWalk:
        s = self.start
        if self.unchained:
            self.r.notes.append(f"journal {self.r.host}: {self.unchained} events unchained "
                                f"before seq {s.chain_start} (written before the journal had "
                                "its chain)")
        last_seq = self.last_seq if self.last_seq is not None else (s.pruned[0] if s.pruned else 0)
        if s.head is not None and s.head > last_seq:
            self.gap(last_seq + 1, s.head, f"the journal assigned up to #{s.head} but its "
                     f"events end at #{last_seq} (the newest events were deleted)")
        return self.r


def walk_entries(host: str, entries: Iterable[JournalEntry], start: Start, *,
                 keep: Container[int] = ()) -> ChainWalk:
    """Walk journal entries (read with their raw messages) in seq order."""
    w = _Walker(host, start, keep)
    for e in entries:
        w.feed(e.seq, e.event_id, e.type, e.appended, e.body, e.raw, e.prev, e.chain)
    return w.finish()


def journal_start(journal: Journal) -> Start:
    raw_start = journal.meta("chain_start")
    pruned = journal.meta("chain_pruned")
    point = None
    if pruned:
        seq, digest = pruned.split()
        point = (int(seq), digest)
    return Start(int(raw_start) if raw_start else None, point, journal.head())


def _entries(journal: Journal, batch: int = 200) -> Iterator[JournalEntry]:
    after = 0
    while True:
        got = journal.read(after, batch, with_raw=True)
        if not got:
            return
        yield from got
        after = got[-1].seq


def walk_journal(journal: Journal, host: str, *, keep: Container[int] = ()) -> ChainWalk:
    """Walk the whole local journal's chain."""
    start = journal_start(journal)
    if start.chain_start is None:
        walk = ChainWalk(host)
        walk.notes.append(f"journal {host}: no chain yet (made by an older version; it gets "
                          "one the next time qscan opens it for writing)")
        return walk
    return walk_entries(host, _entries(journal), start, keep=keep)


@dataclass(frozen=True, slots=True)
class RelayedRecord:
    """One Kafka record as the chain walk needs it."""

    event_id: str
    event_type: str
    value: bytes
    link_header: bytes | None
    where: str  # topic/partition@offset, for findings about the record itself


@dataclass(frozen=True, slots=True)
class _Checked:
    seq: int
    event_id: str
    prev: str
    chain: str
    intact: bool


class TopicWalk:
    """Walks the journal chains of every host from relayed records, in any order.

    Each record's content is checked against its own link as it arrives (nothing but a
    few strings per event is kept, not the messages); continuity is checked per host
    once every record was seen (:meth:`finish`), in seq order.
    """

    def __init__(self) -> None:
        self._by_host: dict[str, list[_Checked]] = {}
        self._bad: dict[str, list[ChainFinding]] = {}
        self._unlinked: dict[str, int] = {}

    def add(self, host: str, rec: RelayedRecord) -> None:
        if rec.link_header is None:
            self._unlinked[host] = self._unlinked.get(host, 0) + 1
            return
        try:
            lk = Link.parse(rec.link_header)
        except ValueError as exc:
            self._bad.setdefault(host, []).append(ChainFinding(
                "altered-event", rec.where, rec.event_id,
                f"its journal_link header is unreadable: {exc}"))
            return
        body, raw, intact = rec.value, None, True
        if lk.raw:
            try:
                body, b64 = unsplice_raw(rec.value)
                raw = base64.b64decode(b64, validate=True)
            except ValueError:
                intact = False
        if intact:
            intact = link(lk.prev, lk.seq, lk.appended, rec.event_id, rec.event_type, body,
                          raw) == lk.chain
        self._by_host.setdefault(host, []).append(
            _Checked(lk.seq, rec.event_id, lk.prev, lk.chain, intact))

    def hosts(self) -> list[str]:
        return sorted(set(self._by_host) | set(self._bad) | set(self._unlinked))

    def finish(self, host: str, *, keep: Container[int] = ()) -> ChainWalk:
        w = _Walker(host, Start(None), keep)
        for c in sorted(self._by_host.get(host, []), key=lambda c: c.seq):
            w.feed_checked(c.seq, c.event_id, c.prev, c.chain, c.intact)
        walk = w.finish()
        walk.findings[:0] = self._bad.get(host, [])
        if self._unlinked.get(host):
            walk.notes.append(f"journal {host}: {self._unlinked[host]} relayed records carry "
                              "no journal link (relayed before the journal had its chain)")
        return walk


def walk_records(host: str, records: Iterable[RelayedRecord], *,
                 keep: Container[int] = ()) -> ChainWalk:
    """Walk one host's chain from its relayed records (any order).

    Records relayed before the chain existed have no link header: noted, not findings.
    The topic's retention drops old records, so the walk starts wherever the records do.
    """
    walk = TopicWalk()
    for rec in records:
        walk.add(host, rec)
    return walk.finish(host, keep=keep)


def read_topic(records: Iterable[Any]) -> tuple[TopicWalk, list[tuple[str, dict[str, Any]]]]:
    """Every host's chain and every ``chain.anchored`` event from a topic's raw records
    (``ingest.kafka_source.scan_records``): the walk, and (where, event JSON) per anchor."""
    from ingest.kafka_log import HEADER_HOST, HEADER_TYPE  # kafka's client, only when used

    walk = TopicWalk()
    anchors: list[tuple[str, dict[str, Any]]] = []
    for r in records:
        headers = {k: v for k, v in (r.headers or [])}
        host = headers.get(HEADER_HOST, b"").decode("utf-8", "replace") or "?"
        kind = headers.get(HEADER_TYPE, b"").decode("utf-8", "replace")
        where = f"{r.topic}/{r.partition}@{r.offset}"
        event_id = r.key.decode("utf-8", "replace") if r.key else "?"
        walk.add(host, RelayedRecord(event_id, kind, r.value or b"", headers.get(HEADER),
                                     where))
        if kind == "chain.anchored":
            try:
                obj = json.loads(r.value)
            except (TypeError, ValueError):
                continue  # the walk reports an unreadable record as altered
            if isinstance(obj, dict) and isinstance(obj.get("anchor"), dict):
                anchors.append((where, {**obj["anchor"], "trail": obj.get("trail")}))
    return walk, anchors
