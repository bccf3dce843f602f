"""Where a Kafka-fed consumer keeps its *anchors*: the event id of a record it applied.

A stored offset alone cannot tell "the topic I read" from "a topic recreated since"
(broker data lost, ``qscan kafka init`` again): once the new partition grows past the
old offset the consumer would silently skip every event below it. So after each batch
the consumer also stores ``(offset, event id)`` of the last record it applied, and on
every partition assignment fetches that one record again: another event id there (or a
partition now shorter than the stored offset) means a new topic, read from its start.

The anchor lives beside the position, in the same store, under a name the status and
position tools ignore:

- SQL consumers (summaries, notify): two ``consumer_positions`` rows,
  ``NAME@kafka.TOPIC.P#at`` (the offset) and ``NAME@kafka.TOPIC.P#id`` (a 63-bit hash
  of the event id: the column is a BIGINT).
- archive: a file ``anchor.kafka.TOPIC.P`` holding ``OFFSET EVENT_ID``.

It is written after the batch's own commit, not in it: a crash in between leaves an
older anchor, which still names a record of the same topic, so it verifies just as well.
Positions stored before anchors existed have none: then only the partition's length is
checked (backward compatible, nothing to migrate).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from ingest.kafka_source import AnchorStore, id_hash
from ingest.private import FILE_MODE
from qscan.config import Config


class SqlAnchors:
    def __init__(self, url: str, name: str) -> None:
        from compliance.db import make_engine

        self.name = name
        self.engine = make_engine(url)

    def _names(self, key: str) -> tuple[str, str]:
        base = f"{self.name}@{key}"
        return f"{base}#at", f"{base}#id"

    def get(self, key: str) -> tuple[int, int] | None:
        from sqlalchemy import select

        from compliance.models import ConsumerPosition

        at, ident = self._names(key)
        with self.engine.connect() as conn:
            rows = dict(conn.execute(select(ConsumerPosition.name, ConsumerPosition.position)
                                     .where(ConsumerPosition.name.in_([at, ident]))).all())
        if at not in rows or ident not in rows:
            return None
        return int(rows[at]), int(rows[ident])

    def put(self, key: str, offset: int, event_id: str) -> None:
        from sqlalchemy import insert, update

        from compliance.models import ConsumerPosition

        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for name, value in zip(self._names(key), (offset, id_hash(event_id)), strict=True):
                done = conn.execute(update(ConsumerPosition).where(ConsumerPosition.name == name)
                                    .values(position=value, updated_at=now))
                if not done.rowcount:
                    conn.execute(insert(ConsumerPosition).values(name=name, position=value, updated_at=now))

    def clear(self, key: str) -> None:
        from sqlalchemy import delete

        from compliance.models import ConsumerPosition

        with self.engine.begin() as conn:
            conn.execute(delete(ConsumerPosition).where(ConsumerPosition.name.in_(list(self._names(key)))))

    def close(self) -> None:
        self.engine.dispose()


class FileAnchors:
    """Anchors of the archive consumer, in its maildir root beside its checkpoints."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        from archive.consumer import _safe_key

        return self.directory / f"anchor.{_safe_key(key)}"

    def get(self, key: str) -> tuple[int, int] | None:
        try:
            offset, event_id = self._path(key).read_text("ascii").split()
            return int(offset), id_hash(event_id)
        except (FileNotFoundError, ValueError):  # none yet, or torn by a crash: unverifiable
            return None

    def put(self, key: str, offset: int, event_id: str) -> None:
        # Atomic replace without fsync: a lost update leaves an older, still valid anchor.
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, f"{offset} {event_id}\n".encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def clear(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def close(self) -> None:
        pass


def make_anchor_store(cfg: Config, name: str) -> AnchorStore:
    """Where the Kafka-fed consumer NAME keeps its anchors: its registry entry says (SINKS)."""
    from qscan.wiring.pipeline import SINKS

    if SINKS[name].store == "maildir":
        return FileAnchors(Path(cfg.archive_maildir))
    return SqlAnchors(cfg.sql_url, name)
