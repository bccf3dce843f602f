"""Running a parsed query against the index: counts first, then a page of hits.

Counts and hits are de-duplicated by the message's hash (``discovery_docs.sha256``): one
message delivered to many recipients, or seen on two hosts, counts once; the hit shown for
it is its earliest copy. The metadata filters (``Filters``) are SQL conditions beside the
text match, all bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.sql import Select

from compliance.discovery import schema
from compliance.discovery.compile import PgCompiler, to_fts5, tsquery_text
from compliance.discovery.index import DiscoveryIndex
from compliance.discovery.query import Node, Not, leaves
from ingest.event import DiscoverySearched, utc
from ingest.ids import uuid7

_D = schema.docs
_P = schema.participants
CUSTODIANS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Filters:
    """The metadata filters (as `audit search`): not part of the query text."""

    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    sender: str | None = None  # envelope sender (exact, case-insensitive)
    recipient: str | None = None  # an envelope recipient (exact, case-insensitive)

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, times as ISO 8601 UTC (events, holds, exports)."""
        return {k: (utc(v).isoformat() if isinstance(v, datetime) else v)
                for k, v in (("since", self.since), ("until", self.until),
                             ("sender", self.sender), ("recipient", self.recipient))
                if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        unknown = set(data) - {"since", "until", "sender", "recipient"}
        if unknown:
            raise ValueError(f"unknown discovery filters: {', '.join(sorted(unknown))}")
        when = {k: datetime.fromisoformat(data[k]) for k in ("since", "until") if data.get(k)}
        return cls(since=when.get("since"), until=when.get("until"),
                   sender=data.get("sender"), recipient=data.get("recipient"))


NO_FILTERS = Filters()


@dataclass(frozen=True, slots=True)
class Match:
    """One indexed message (copy) a query matches."""

    event_id: str
    sha256: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Hit:
    event_id: str
    sha256: str
    received_at: datetime
    sender: str
    subject: str
    snippet: str
    incomplete: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    total: int  # distinct messages (by hash)
    per_custodian: tuple[tuple[str, int], ...]  # the CUSTODIANS_SHOWN busiest addresses
    per_month: tuple[tuple[str, int], ...]  # 'YYYY-MM', oldest first
    incomplete: int  # of the total, messages not fully indexed


@dataclass(frozen=True, slots=True)
class Result:
    counts: Counts
    hits: tuple[Hit, ...] = field(default=())
    page: int = 1
    page_size: int = 50


def _highlight_query(tree: Node) -> str:
    """One tsquery text that any positive leaf satisfies (ts_headline marks its words)."""
    def positive(node: Node) -> list[Any]:
        if isinstance(node, Not):
            return []
        if hasattr(node, "items"):
            return [leaf for item in node.items for leaf in positive(item)]
        if hasattr(node, "expr"):
            return positive(node.expr)
        return [node]
    found = positive(tree) or leaves(tree)
    return " | ".join(f"( {tsquery_text(leaf)} )" for leaf in found)


class Searcher:
    def __init__(self, index: DiscoveryIndex) -> None:
        self.index = index

    def _matching(self, tree: Node, filters: Filters) -> tuple[Select[Any], dict[str, Any]]:
        """SELECT of the matching docs' id, sha256, received_at (with the filters)."""
        params: dict[str, Any] = {}
        if self.index.kind == "sqlite":
            params["dq_match"] = to_fts5(tree)
            cond: ColumnElement[bool] = _D.c.id.in_(
                select(literal_column("rowid")).select_from(text("discovery_text"))
                .where(text("discovery_text MATCH :dq_match")))
        else:
            compiler = PgCompiler("discovery_text", self.index.pg_config)
            dates = [schema.pg_text.c.received_at >= utc(filters.since)] if filters.since else []
            if filters.until is not None:
                dates.append(schema.pg_text.c.received_at < utc(filters.until))
            # the dates on the text table too: one bitmap scan narrows by both (see schema)
            cond = _D.c.id.in_(select(schema.pg_text.c.doc_id)
                               .where(compiler.condition(tree), *dates))
        conds = [cond]
        if filters.since is not None:
            conds.append(_D.c.received_at >= utc(filters.since))
        if filters.until is not None:
            conds.append(_D.c.received_at < utc(filters.until))
        if filters.sender:
            conds.append(func.lower(_D.c.sender) == filters.sender.lower())
        if filters.recipient:
            conds.append(_D.c.id.in_(select(_P.c.doc_id).where(
                _P.c.role == "to", _P.c.address == filters.recipient.lower())))
        return select(_D.c.id, _D.c.sha256, _D.c.received_at).where(and_(true(), *conds)), params

    def search(self, tree: Node, filters: Filters = NO_FILTERS, *, page: int = 1,
               page_size: int = 50) -> Result:
        matching, params = self._matching(tree, filters)
        # The text match runs once, into a temporary table the counts and the page read
        # (as a subquery it ran once per statement: three times the phrase recheck on
        # PostgreSQL, three times the FTS5 doclist walk on SQLite - bench/discovery.py).
        # It lives in this connection's transaction, rolled back at the end.
        m = Table("discovery_matches", MetaData(),
                  Column("id", BigInteger, primary_key=True, autoincrement=False),
                  Column("sha256", String(64)), prefixes=["TEMPORARY"])
        # the first copy of each distinct message
        first = select(func.min(m.c.id).label("id")).group_by(m.c.sha256).subquery("first")
        month = (func.substr(func.cast(_D.c.received_at, Text), 1, 7)
                 if self.index.kind == "sqlite"
                 else func.to_char(func.timezone("UTC", _D.c.received_at), "YYYY-MM"))
        with self.index.engine.connect() as conn:
            m.create(conn)
            inner = matching.subquery("hits")
            conn.execute(insert(m).from_select(["id", "sha256"],
                                               select(inner.c.id, inner.c.sha256)), params)
            if self.index.kind == "postgresql":
                conn.exec_driver_sql("ANALYZE discovery_matches")  # its size, for the planner
            params = {}
            # one pass for the total, the not fully indexed and the months
            months = conn.execute(
                select(month.label("month"), func.count(),
                       func.count(_D.c.incomplete))  # counts the non-NULL
                .where(_D.c.id.in_(select(first.c.id)))
                .group_by("month").order_by("month"), params).all()
            total = sum(n for _, n, _ in months)
            incomplete = sum(i for _, _, i in months)
            custodians = conn.execute(
                select(_P.c.address, func.count(func.distinct(m.c.sha256)).label("n"))
                .join(m, m.c.id == _P.c.doc_id)
                # the matches drive (by the doc_id index), not a scan of every participant
                .where(_P.c.doc_id.in_(select(m.c.id))).group_by(_P.c.address)
                .order_by(literal_column("n").desc(), _P.c.address).limit(CUSTODIANS_SHOWN),
                params).all()
            rows = conn.execute(
                select(_D.c.id, _D.c.event_id, _D.c.sha256, _D.c.received_at, _D.c.sender,
                       _D.c.subject, _D.c.incomplete)
                .where(_D.c.id.in_(select(first.c.id)))
                .order_by(_D.c.received_at.desc(), _D.c.id.desc())
                .limit(page_size).offset((max(page, 1) - 1) * page_size), params).all()
            snippets = self._snippets(conn, tree, [r.id for r in rows])
            conn.rollback()  # drops the temporary table (nothing else was written)
        counts = Counts(total=total, per_custodian=tuple((a, n) for a, n in custodians),
                        per_month=tuple((str(mo), n) for mo, n, _ in months),
                        incomplete=incomplete)
        hits = tuple(Hit(event_id=r.event_id, sha256=r.sha256, received_at=r.received_at,
                         sender=r.sender, subject=r.subject, snippet=snippets.get(r.id, ""),
                         incomplete=r.incomplete) for r in rows)
        return Result(counts, hits, page=max(page, 1), page_size=page_size)

    def matches(self, tree: Node, filters: Filters = NO_FILTERS) -> list[Match]:
        """Every message the query matches, every copy of it (not one page, no
        de-duplication: a hold or an export takes them all), oldest first."""
        matching, params = self._matching(tree, filters)
        m = matching.subquery("m")
        stmt = (select(_D.c.event_id, m.c.sha256, m.c.received_at)
                .join(m, m.c.id == _D.c.id).order_by(m.c.received_at, _D.c.event_id))
        with self.index.engine.connect() as conn:
            return [Match(r.event_id, r.sha256, utc(r.received_at))
                    for r in conn.execute(stmt, params)]

    def _snippets(self, conn: Any, tree: Node, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        if self.index.kind == "sqlite":
            stmt = text("SELECT rowid, snippet(discovery_text, -1, '[', ']', '…', 16) "
                        "FROM discovery_text WHERE discovery_text MATCH :q AND rowid IN "
                        "(SELECT value FROM json_each(:ids))")
            rows = conn.execute(stmt, {"q": to_fts5(tree), "ids": json.dumps(list(ids))})
            return {int(i): str(s) for i, s in rows}
        stmt = text(
            "SELECT doc_id, ts_headline(CAST(:cfg AS regconfig), "
            "subject || ' … ' || body || ' … ' || attachment, "
            "to_tsquery(CAST(:cfg AS regconfig), :q), "
            "'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=2, "
            "FragmentDelimiter=\" … \"') FROM discovery_text WHERE doc_id = ANY(:ids)")
        rows = conn.execute(stmt, {"cfg": self.index.pg_config, "q": _highlight_query(tree),
                                   "ids": list(ids)})
        return {int(i): str(s) for i, s in rows}


def searched_event(query: str, tree: Node, filters: Filters, counts: Counts, *, actor: str,
                   host: str, purpose: str | None = None) -> DiscoverySearched:
    """The ``discovery.searched`` event that records one search (who ran what, and how many)."""
    from compliance.discovery.query import render

    return DiscoverySearched(event_id=str(uuid7()), time=datetime.now(UTC), host=host,
                             actor=actor, query=query, canonical=render(tree),
                             filters=filters.as_json(), total=counts.total,
                             incomplete=counts.incomplete, purpose=purpose)
