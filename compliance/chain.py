"""Appending to the per-host hash chains inside a write transaction.

**One chain per journal host, not one global chain.** A host's journal is a
total order that replays identically, so replaying it into an empty database
rebuilds the same chain; events of different hosts have no order between them
(they meet only in the consumer, in whatever order batches arrive), so a global
chain would record an accident of scheduling, not a fact. Per-host chains also
keep writers of different hosts from queueing on one head row, and a damaged
or missing host leaves the other hosts' proof intact.

Each chain holds three kinds of entries, numbered 1, 2, 3... per host across
three tables: a message row (``messages``), a queue failure
(``queue_failures``, which is what ``messages.queue_status`` is checked
against) and a tombstone (``deletions``). The head of each chain is kept in
``chain_heads`` and locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
writers already hold the database lock) for the rest of the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compliance import canonical
from compliance.models import ChainHead


class ChainWriter:
    """The chain heads of the hosts a transaction writes to, locked, and the new links."""

    def __init__(self, session: Session, hosts: Iterable[str]) -> None:
        self._session = session
        self._heads: dict[str, tuple[int, str]] = {}
        self._dirty: set[str] = set()
        # Sorted: two writers lock the same hosts in the same order and cannot deadlock.
        for host in sorted(set(hosts)):
            self._heads[host] = _lock_head(session, host)

    def lock(self, host: str) -> None:
        if host not in self._heads:
            self._heads[host] = _lock_head(self._session, host)

    def append(self, kind: str, host: str, row: Mapping[str, Any],
               children: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
               ) -> tuple[int, str]:
        """The (seq, chain_hash) the new entry gets; the caller stores them on its row."""
        self.lock(host)
        seq, prev = self._heads[host]
        digest = canonical.link(prev, canonical.encode(kind, host, seq + 1, row, children))
        self._heads[host] = (seq + 1, digest)
        self._dirty.add(host)
        return seq + 1, digest

    def store(self) -> None:
        """Write the moved heads (same transaction as the rows)."""
        now = datetime.now(UTC)
        for host in sorted(self._dirty):
            seq, digest = self._heads[host]
            self._session.execute(update(ChainHead).where(ChainHead.host == host)
                                  .values(seq=seq, hash=digest, updated_at=now))
        self._dirty.clear()


def _lock_head(session: Session, host: str) -> tuple[int, str]:
    stmt = select(ChainHead.seq, ChainHead.hash).where(ChainHead.host == host).with_for_update()
    row = session.execute(stmt).first()
    if row is None:
        _create_head(session, host)
        row = session.execute(stmt).one()
    return int(row.seq), str(row.hash)


def _create_head(session: Session, host: str) -> None:
    values = {"host": host, "seq": 0, "hash": canonical.GENESIS, "updated_at": datetime.now(UTC)}
    dialect = session.get_bind().dialect.name
    # Another writer may create the same head between our SELECT and INSERT.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        session.execute(postgresql.insert(ChainHead).values(**values)
                        .on_conflict_do_nothing(index_elements=["host"]))
        return
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        session.execute(sqlite.insert(ChainHead).values(**values)
                        .on_conflict_do_nothing(index_elements=["host"]))
        return
    try:
        with session.begin_nested():
            session.execute(insert(ChainHead).values(**values))
    except IntegrityError:
        pass
