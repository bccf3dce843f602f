"""The ``index`` consumer: projects the log into the discovery index (docs/discovery.md).

Each ``message.scanned`` event is indexed from the message it carries (headers, body
text, attachment names and text, under ``[discovery]``'s per-message limits), replacing
whatever its event id had: a replay or a duplicate delivery leaves the index as it was.
A ``message.deleted`` tombstone removes its message. Rows and the position commit in one
transaction, so after a crash the consumer resumes where its rows end; replay from 0
rebuilds the index from whatever the log still holds (tombstones included).

Text is extracted before the transaction opens (it is the slow part); a message whose
extraction fails or hits a limit is indexed with what was read and the reason noted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from compliance.discovery.document import IndexedMessage, indexed_message
from compliance.discovery.index import DiscoveryIndex
from compliance.discovery.settings import DiscoverySettings
from ingest.event import MessageDeleted, MessageScanned
from ingest.log import LogRecord

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

    def position(self) -> int:
        return self.index.position(self.name)

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        # In log order: a deletion drops a message indexed earlier in the same batch, and
        # a message indexed after its own deletion (only a replay reorders nothing: it
        # cannot happen) would be indexed again.
        pending: dict[str, tuple[int, IndexedMessage]] = {}
        deleted: set[str] = set()
        for rec in records:
            ev = rec.event
            if isinstance(ev, MessageScanned):
                pending[ev.event_id] = (rec.position, indexed_message(ev, self.limits))
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
        self.index.close()
