"""The ``index`` consumer: projects the log into the discovery index (docs/discovery.md).

Each ``message.scanned`` event is indexed from the message it carries (headers, body
text, attachment names and text, under ``[discovery]``'s per-message limits), replacing
whatever its event id had: a replay or a duplicate delivery leaves the index as it was.
A ``message.deleted`` tombstone removes its message. Rows and the position commit in one
transaction, so after a crash the consumer resumes where its rows end; replay from 0
rebuilds the index from whatever the log still holds (tombstones included).

Text is extracted before the transaction opens (it is the slow part), by ``[discovery]
workers`` processes in parallel; a message whose extraction fails or hits a limit is
indexed with what was read and the reason noted, and one that kills its worker process
(a parser crash) is indexed by its headers, the crash noted, with a fresh pool.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from compliance.discovery.document import IndexedMessage, indexed_message
from compliance.discovery.index import DiscoveryIndex
from compliance.discovery.settings import DiscoverySettings
from ingest.event import MessageDeleted, MessageScanned
from ingest.log import LogRecord
from scanners.dlp.extract import ExtractLimits

log = logging.getLogger(__name__)


class IndexSink:
    """The ``index`` projection (an ``ingest.log.Sink``)."""

    needs_raw = True  # the text is in the message

    def __init__(self, sql_url: str, path: Path, settings: DiscoverySettings, *,
                 name: str = "index") -> None:
        self.name = name
        self.settings = settings
        self.limits = settings.limits
        self.index = DiscoveryIndex.open(sql_url, path, settings.pg_config)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: the workers do not inherit this process's database connections
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(self.settings.workers, mp_context=context)

    def documents(self, events: Sequence[MessageScanned]) -> list[IndexedMessage]:
        """The index documents of ``events``, in order, extracted in parallel when configured."""
        if self.settings.workers <= 1 or len(events) <= 1:
            return [indexed_message(ev, self.limits) for ev in events]
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return list(self._pool.map(_document, events, [self.limits] * len(events)))
        except BrokenProcessPool:
            log.warning("index: an extraction worker died; retrying the batch one by one")
            self._drop_pool()
        return [self._alone(ev) for ev in events]

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _alone(self, ev: MessageScanned) -> IndexedMessage:
        """One message in the pool, so that a crash is pinned on it (headers only, noted)."""
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(_document, ev, self.limits).result()
        except BrokenProcessPool:
            self._drop_pool()
            log.warning("index: extracting %s killed its worker: indexed by its headers",
                        ev.event_id)
            bare = ev.model_copy(update={"raw_message": b""})
            doc = indexed_message(bare, self.limits)
            note = "extraction crashed its worker process: headers only"
            return dataclasses.replace(doc, incomplete=note)

    def position(self) -> int:
        return self.index.position(self.name)

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        # In log order: a deletion drops a message met earlier in the same batch.
        events = [rec.event for rec in records if isinstance(rec.event, MessageScanned)]
        docs = iter(self.documents(events))
        pending: dict[str, tuple[int, IndexedMessage]] = {}
        deleted: set[str] = set()
        for rec in records:
            ev = rec.event
            if isinstance(ev, MessageScanned):
                pending[ev.event_id] = (rec.position, next(docs))
                deleted.discard(ev.event_id)
            elif isinstance(ev, MessageDeleted):
                pending.pop(ev.ref_event_id, None)
                deleted.add(ev.ref_event_id)
        with self.index.engine.begin() as conn:
            if deleted:
                self.index.delete(conn, deleted)
            if pending:
                self.index.replace(conn, list(pending.values()))
            self.index.store_position(conn, self.name, position)

    def set_position(self, position: int) -> None:
        with self.index.engine.begin() as conn:
            self.index.store_position(conn, self.name, position)

    def close(self) -> None:
        self._drop_pool()
        self.index.close()


def _document(ev: MessageScanned, limits: ExtractLimits) -> IndexedMessage:
    return indexed_message(ev, limits)
