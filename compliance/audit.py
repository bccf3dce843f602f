"""Audit search over the summary store: who sent what to whom, when.

Addresses match whole and case-insensitively (``Alice@Example.COM`` finds
``alice@example.com``), or as a pattern when they contain ``*``; nothing else
in the user's text is special (``%`` and ``_`` match themselves). A bare word
without ``@`` or ``*`` is a local part in any domain (``alice`` is ``alice@*``).
Every value reaches the database as a bound parameter.

Times are UTC. ``since`` is inclusive, ``until`` exclusive, so consecutive
ranges never count a message twice. Results are newest first, with the event
id as tie-break so ``offset`` paging is stable.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    SQLColumnExpression,
    String,
    and_,
    false,
    func,
    or_,
    select,
    tuple_,
    union,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from compliance.models import (
    Deletion,
    DlpFinding,
    Export,
    ExportItem,
    Finding,
    Message,
    Part,
    QuarantineEntry,
    QueueFailure,
    Recipient,
)
from compliance.patterns import like_pattern, wildcard_match
from ingest.event import Action, Category, utc
from scanners.direction import DIRECTIONS

FIELDS = (
    "time", "event_id", "action", "category", "reason", "client_ip", "sender",
    "recipients", "subject", "size", "attachments", "queue_status",
)


class text_lower(FunctionElement[str]):
    """Unicode-aware lower(): PostgreSQL's lower() is; SQLite's only folds ASCII."""

    type = String()
    name = "text_lower"
    inherit_cache = True


@compiles(text_lower)
def _text_lower(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(text_lower, "sqlite")
def _text_lower_sqlite(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"qscan_lower({compiler.process(element.clauses, **kw)})"  # see compliance.db


def address_pattern(value: str) -> str:
    """'<Alice@Example.com>' → 'alice@example.com'; '<>' is the null sender of bounces.

    A bare word without '@' or '*' is a local part in any domain: 'alice' → 'alice@*' (an
    envelope address always has a domain, so read literally it could match nothing)."""
    value = value.strip().removeprefix("<").removesuffix(">").strip().lower()
    if value and "@" not in value and "*" not in value:
        return value + "@*"
    return value


class FilterError(ValueError):
    """A filter value that cannot mean anything (bad IP network, unknown category...)."""


_EXTENSION_ONLY = re.compile(r"^\*\.([^*./\\]+)$")


@dataclass(frozen=True)
class Filters:
    """One audit query. Every field is optional; the ones given combine with AND.

    The same object is stored with legal holds and exports (``as_json``), so a
    matter's selection can be re-run and shown exactly as it was asked.
    """

    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None
    action: str | None = None
    category: str | None = None
    direction: str | None = None
    attachment: str | None = None
    attachment_type: str | None = None
    client_ip: str | None = None
    finding: str | None = None
    dlp_rule: str | None = None
    message_id: str | None = None

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in {a.value for a in Action}:
            raise FilterError(f"unknown action {self.action!r}")
        if self.category is not None and self.category not in {c.value for c in Category}:
            raise FilterError(f"unknown verdict {self.category!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise FilterError(f"unknown direction {self.direction!r} (inbound, outbound, local)")
        if self.client_ip is not None:
            _ip_clause(self.client_ip)  # refuse a bad address or network now, not mid-query
        if self.since and self.until and utc(self.since) >= utc(self.until):
            raise FilterError("--since must be before --until")

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, times as ISO 8601 UTC (for holds, exports, custody)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = utc(value).isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FilterError(f"unknown filters: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("since", "until"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)

    def where(self, *, own_dates: bool = True) -> list[ColumnElement[bool]]:
        """``own_dates=False``: leave out the bounds on the message's own time (a caller bounding
        the time on another table's copy of it), keeping those inside other filters."""
        return _where(self, own_dates)


def _either(by_sender: ColumnElement[bool], by_recipient: ColumnElement[bool]
            ) -> ColumnElement[bool]:
    """Sent by, or to, as one IN (... UNION ...) rather than ``a OR id IN (...)``.

    PostgreSQL turns ``OR id IN (subquery)`` into a subplan it re-runs for every row
    once the subquery outgrows work_mem (minutes on a million messages); a plain IN
    over a UNION ALL is a semi-join on both databases, each branch on its own index
    (IN ignores the duplicates, so there is nothing to sort away).
    """
    return Message.event_id.in_(union_all(select(Message.event_id).where(by_sender),
                                          select(Recipient.event_id).where(by_recipient)))


def party_clause(address: str) -> ColumnElement[bool]:
    """The address sent the message or is one of its envelope recipients."""
    value = address_pattern(address)
    return _either(_address_match(Message.sender, Message.sender_domain, value),
                   _address_match(Recipient.address, Recipient.domain, value))


def _ip_clause(value: str) -> ColumnElement[bool]:
    """An address, a '*' pattern, or an IPv4 network (192.0.2.0/24) of the client."""
    value = value.strip()
    if "*" in value:
        return wildcard_match(Message.client_ip, value)
    if "/" not in value:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError as exc:
            raise FilterError(f"{value!r} is not an IP address, network or '*' pattern") from exc
        return Message.client_ip.in_(sorted({value, str(ip), ip.exploded}))
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise FilterError(f"{value!r} is not an IP network") from exc
    if net.version == 6:
        raise FilterError("IPv6 networks are not supported: use a '*' pattern (2001:db8:*)")
    if net.prefixlen == 0:
        return Message.client_ip.is_not(None)
    # Stored as text: a network becomes the dotted prefixes covering it, at most 256.
    octets = -(-net.prefixlen // 8)  # the octets the prefix touches
    step = 1 << (8 * (4 - octets))
    patterns = []
    first = int(net.network_address)
    for start in range(first, first + net.num_addresses, step):
        head = ".".join(str(ipaddress.IPv4Address(start)).split(".")[:octets])
        patterns.append(head if octets == 4 else head + ".%")
    if octets == 4:
        return Message.client_ip.in_(patterns)
    return or_(*(Message.client_ip.like(p) for p in patterns))


_WHOLE_DOMAIN = re.compile(r"^\*@([^*@]+)$")


def _address_match(address: SQLColumnExpression[str], domain: SQLColumnExpression[str],
                   value: str) -> ColumnElement[bool]:
    """'*@example.com' is exactly 'the domain is example.com': use the domain's index."""
    whole = _WHOLE_DOMAIN.match(value)
    return domain == whole.group(1) if whole else wildcard_match(func.lower(address), value)


def _where(f: Filters, own_dates: bool = True) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.sender is not None:
        where.append(_address_match(Message.sender, Message.sender_domain, address_pattern(f.sender)))
    if f.recipient is not None:
        rcpt = _address_match(Recipient.address, Recipient.domain, address_pattern(f.recipient))
        where.append(Message.event_id.in_(select(Recipient.event_id)
                                          .where(rcpt, *_dates(f, Recipient.received_at))))
    if f.domain is not None:
        d = f.domain.strip().lstrip("@").lower()  # domains are stored lowercased
        # each branch on its (domain, date) index
        where.append(_either(and_(wildcard_match(Message.sender_domain, d), *_dates(f)),
                             and_(wildcard_match(Recipient.domain, d), *_dates(f, Recipient.received_at))))
    if own_dates:
        where += _dates(f)
    if f.subject:
        where.append(_contains(Message.subject, f.subject))
    if f.action is not None:
        where.append(Message.action == f.action)
    if f.category is not None:
        where.append(Message.category == f.category)
    if f.direction is not None:
        where.append(Message.direction == f.direction)
    if f.attachment is not None:
        name = f.attachment.strip().lower()
        ext = _EXTENSION_ONLY.match(name)
        cond = (Part.extension == ext.group(1)) if ext else wildcard_match(func.lower(Part.filename), name)
        where.append(Message.event_id.in_(select(Part.event_id).where(cond)))
    if f.attachment_type is not None:
        t = f.attachment_type.strip().lower()  # types are stored lowercased
        by_type = select(Part.event_id).where(or_(wildcard_match(Part.content_type, t),
                                                  wildcard_match(Part.detected_type, t)))
        where.append(Message.event_id.in_(by_type))
    if f.client_ip is not None:
        where.append(_ip_clause(f.client_ip))
    if f.finding is not None:
        where.append(Message.event_id.in_(select(Finding.event_id).where(*_finding(f.finding))))
    if f.dlp_rule is not None:
        by_rule = select(DlpFinding.event_id).where(wildcard_match(DlpFinding.rule, f.dlp_rule.strip()))
        where.append(Message.event_id.in_(by_rule))
    if f.message_id is not None:
        mid = f.message_id.strip().lower()
        bare = mid.removeprefix("<").removesuffix(">")
        where.append(func.lower(Message.message_id).in_(sorted({mid, bare, f"<{bare}>"})))
    return where


def _dates(f: Filters, column: Any = Message.received_at) -> list[ColumnElement[bool]]:
    out = []
    if f.since is not None:
        out.append(column >= utc(f.since))
    if f.until is not None:
        out.append(column < utc(f.until))
    return out


def _finding(value: str) -> list[ColumnElement[bool]]:
    """'NAME' or 'SCANNER:NAME' ('*' allowed): a scanner found something (not 'clean')."""
    scanner, sep, name = value.strip().partition(":")
    if not sep:
        scanner, name = "", scanner
    cond: list[ColumnElement[bool]] = [Finding.verdict != Category.CLEAN.value]
    if scanner and scanner != "*":
        cond.append(Finding.scanner == scanner)
    if name and name != "*":
        cond.append(wildcard_match(func.lower(Finding.name), name.lower()))
    return cond


def _contains(column: SQLColumnExpression[str], text: str) -> ColumnElement[bool]:
    """Case-insensitive 'contains' that stays in C on SQLite for ASCII text.

    SQLite's LIKE already folds ASCII case, so an ASCII needle needs no Python
    call per row; only a non-ASCII one goes through qscan_lower (compliance.db).
    """
    pattern = like_pattern(text.lower(), contains=True)
    if text.isascii():
        return _ascii_ilike(column, pattern)
    return text_lower(column).like(pattern, escape="\\")


def _ascii_ilike(column: SQLColumnExpression[str], pattern: str) -> ColumnElement[bool]:
    return column.ilike(pattern, escape="\\")


@dataclass(frozen=True)
class Scope:
    """What a restricted reader (the console's ``user`` role) may see: mail sent by or to one
    of ``addresses``, or by or to anyone at one of ``domains``. Whole, lowercased values: no
    wildcards (an assigned address is a fact, not a search). An empty scope sees nothing."""

    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    def clause(self, dates: Filters | None = None) -> ColumnElement[bool]:
        """``dates``: a query whose time range also bounds each branch (so each reads only that
        range of its (address, time) index, not the reader's whole history)."""
        addrs, doms = self.values()
        if not addrs and not doms:
            return false()
        by_sender: list[ColumnElement[bool]] = []
        by_rcpt: list[ColumnElement[bool]] = []
        if addrs:  # each on its lower(...) expression index
            by_sender.append(func.lower(Message.sender).in_(addrs))
            by_rcpt.append(func.lower(Recipient.address).in_(addrs))
        if doms:
            by_sender.append(Message.sender_domain.in_(doms))
            by_rcpt.append(Recipient.domain.in_(doms))
        when = dates or Filters()
        return _either(and_(or_(*by_sender), *_dates(when)),
                       and_(or_(*by_rcpt), *_dates(when, Recipient.received_at)))

    def values(self) -> tuple[list[str], list[str]]:
        """The addresses and domains, whole and lowercased, each once."""
        return (sorted({a.strip().lower() for a in self.addresses if a.strip()}),
                sorted({d.strip().lower().lstrip("@") for d in self.domains if d.strip()}))


# -- the first page on PostgreSQL: read the matches in time order from their own index ----------
#
# A query whose matches come from "sent by or to X" (a user's scope, the domain filter) or from a
# recipient is a semi-join: PostgreSQL either gathers every match, joins each to its message and
# sorts them all for one page (a busy user: 6,000 messages), or walks the whole store newest first
# probing each message (a busy recipient: 60,000 probes for 50 rows). The indexes it could read
# in time order are there - (lower(sender) | sender_domain, received_at, event_id) on messages
# (0016), (lower(address) | domain, received_at, event_id) on recipients - so each way in is its own
# branch, "newest n of this branch, with every other filter", and the page is the newest n of
# their union. A recipient row carries its message's time (0004, written with it), so a
# recipients branch is ordered by its own (received_at, event_id) and keeps one row per message
# (GROUP BY, read in that order: a message may list the address twice; the message's other
# columns hang on its primary key). SQLite plans the plain query well, on the same indexes; it
# keeps it.


@dataclass(frozen=True)
class _Way:
    """One branch: messages (by sender) or recipients (by address or domain) matching ``value``."""

    on_recipients: bool
    by_domain: bool
    value: str


def _drive(query: Filters, scope: Scope | None) -> tuple[list[_Way], Filters] | None:
    """The branches that together are exactly the scope (or, without one, the recipient or domain
    filter), and the filters left to check on each branch's rows; None: no such branches."""
    if scope is not None:
        addrs, doms = scope.values()
        ways = [_Way(on, False, a) for a in addrs for on in (False, True)]
        ways += [_Way(on, True, d) for d in doms for on in (False, True)]
        return (ways, query) if ways else None
    if query.recipient is not None:
        value = address_pattern(query.recipient)
        whole = _WHOLE_DOMAIN.match(value)
        if whole:
            return [_Way(True, True, whole.group(1))], replace(query, recipient=None)
        if "*" not in value:
            return [_Way(True, False, value)], replace(query, recipient=None)
        return None
    if query.domain is not None:
        d = query.domain.strip().lstrip("@").lower()
        if "*" in d:
            return None
        return [_Way(False, True, d), _Way(True, True, d)], replace(query, domain=None)
    return None


_COLUMNS = ("received_at", "event_id", "action", "category", "reason", "client_ip", "sender",
            "subject", "size", "attachments", "queue_status")


def _driven_page(ways: list[_Way], rest: Filters, query: Filters,
                 after: tuple[datetime, str] | None, limit: int, offset: int) -> Any:
    """The page: each branch's newest ``offset + limit`` rows, then the newest of their union."""
    m = Message
    cols = [getattr(m, c) for c in _COLUMNS]
    # A recipients branch bounds its own time (the recipient rows carry it): the same bounds on
    # the message too would only make PostgreSQL think the join finds almost nothing.
    undated = rest.where(own_dates=False)
    where = rest.where()
    if after is not None:
        where.append(tuple_(m.received_at, m.event_id) < tuple_(utc(after[0]), after[1]))
    n = offset + limit
    branches = []
    for way in ways:
        if way.on_recipients:
            r = aliased(Recipient, name="drive")
            cond = r.domain == way.value if way.by_domain else func.lower(r.address) == way.value
            rwhere = [cond, *_dates(query, r.received_at)]
            if after is not None:
                rwhere.append(tuple_(r.received_at, r.event_id) < tuple_(utc(after[0]), after[1]))
            branch = (select(*cols).select_from(r).join(m, m.event_id == r.event_id)
                      .where(*rwhere, *undated).group_by(r.received_at, r.event_id, m.event_id)
                      .order_by(r.received_at.desc(), r.event_id.desc()).limit(n))
        else:
            cond = (m.sender_domain == way.value if way.by_domain
                    else func.lower(m.sender) == way.value)
            branch = (select(*cols).where(cond, *where)
                      .order_by(m.received_at.desc(), m.event_id.desc()).limit(n))
        branches.append(branch.subquery())
    both = union(*(select(*b.c) for b in branches)).subquery()
    return (select(*both.c).order_by(both.c.received_at.desc(), both.c.event_id.desc())
            .offset(offset).limit(limit))


def _driven_ids(ways: list[_Way], rest: Filters, query: Filters) -> Any:
    """Every match's event id once (for the count): the branches' ids, UNION. A recipients
    branch needs its message only when some other filter reads it (the foreign key vouches
    for the message being there)."""
    m = Message
    where = rest.where()
    undated = rest.where(own_dates=False)  # as in _driven_page
    branches = []
    for way in ways:
        if way.on_recipients:
            r = aliased(Recipient, name="drive")
            cond = r.domain == way.value if way.by_domain else func.lower(r.address) == way.value
            branch = select(r.event_id).where(cond, *_dates(query, r.received_at))
            if undated:
                branch = branch.join(m, m.event_id == r.event_id).where(*undated)
        else:
            cond = (m.sender_domain == way.value if way.by_domain
                    else func.lower(m.sender) == way.value)
            branch = select(m.event_id).where(cond, *where)
        branches.append(branch)
    if len(branches) == 1:  # a UNION of one is no UNION: nothing would drop the duplicates
        return branches[0].distinct().subquery()
    return union(*branches).subquery()


def _scoped(where: list[ColumnElement[bool]], scope: Scope | None,
            filters: Filters | None = None) -> list[ColumnElement[bool]]:
    return where if scope is None else [*where, scope.clause(filters)]


def visible(engine: Engine, event_id: str, scope: Scope | None) -> bool:
    """Whether the message ``event_id`` is there and ``scope`` (None: everything) covers it."""
    stmt = select(Message.event_id).where(*_scoped([Message.event_id == event_id], scope))
    with engine.connect() as conn:
        return conn.scalar(stmt) is not None


def _query(filters: Filters | None, kwargs: dict[str, Any]) -> Filters:
    if filters is not None and kwargs:
        raise TypeError("pass either a Filters object or keyword filters, not both")
    return filters if filters is not None else Filters(**kwargs)


def search(engine: Engine, filters: Filters | None = None, *, limit: int | None = 100,
           offset: int = 0, scope: Scope | None = None, after: tuple[datetime, str] | None = None,
           **kwargs: Any) -> list[dict[str, Any]]:
    """Matching messages, newest first; ``limit=None`` returns them all.

    Filters come as a ``Filters`` object or as its fields in keywords; ``scope`` restricts
    them to what a ``user``-role reader may see. ``after``: keyset paging, the rows that
    come after (older than) this (time, event id), read from the time index however deep
    the page (``offset`` reads and skips every row before it).
    """
    query = _query(filters, kwargs)
    driven = _drive(query, scope) if engine.dialect.name == "postgresql" else None
    stmt: Any
    if driven is not None and limit is not None:
        ways, rest = driven
        stmt = _driven_page(ways, rest, query, after, limit, offset)
    else:
        where = _scoped(query.where(), scope, query)
        m = Message
        if after is not None:
            where.append(tuple_(m.received_at, m.event_id) < tuple_(utc(after[0]), after[1]))
        stmt = (
            select(*(getattr(m, c) for c in _COLUMNS))
            .where(*where)
            .order_by(m.received_at.desc(), m.event_id.desc())
            .offset(offset)
            .limit(limit)
        )
    with engine.connect() as conn:
        found = conn.execute(stmt).all()
        ids = [row.event_id for row in found]
        recipients: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            rstmt = (select(Recipient.event_id, Recipient.address)
                     .where(Recipient.event_id.in_(ids)).order_by(Recipient.id))
            for event_id, address in conn.execute(rstmt):
                recipients[event_id].append(address)
    out = []
    for row in found:
        item = row._asdict()
        item["time"] = utc(item.pop("received_at"))
        item["recipients"] = recipients[row.event_id]
        out.append({k: item[k] for k in FIELDS})
    return out


def count(engine: Engine, filters: Filters | None = None, *, scope: Scope | None = None,
          cap: int | None = None, **kwargs: Any) -> int:
    """How many match; with ``cap``, counting stops there (a page's "more than 10,000")."""
    query = _query(filters, kwargs)
    driven = _drive(query, scope) if engine.dialect.name == "postgresql" else None
    if driven is not None:
        ways, rest = driven
        ids = _driven_ids(ways, rest, query)
        if cap is not None:
            ids = select(ids.c.event_id).limit(cap).subquery()
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ids)).scalar_one()
    where = _scoped(query.where(), scope, query)
    stmt = select(func.count()).select_from(Message).where(*where)
    if cap is not None:
        capped = select(Message.event_id).where(*where).limit(cap).subquery()
        stmt = select(func.count()).select_from(capped)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def iter_search(engine: Engine, filters: Filters, *, scope: Scope | None = None,
                batch: int = 1000) -> Iterator[list[dict[str, Any]]]:
    """Every matching row, newest first, in keyset batches (downloads of a whole result)."""
    after: tuple[datetime, str] | None = None
    while True:
        rows = search(engine, filters, limit=batch, scope=scope, after=after)
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = (rows[-1]["time"], rows[-1]["event_id"])


def event_ids(engine: Engine, filters: Filters, *, batch: int = 1000) -> Iterator[list[str]]:
    """Every matching event id, oldest first, in batches (exports, holds)."""
    last: tuple[datetime, str] | None = None
    while True:
        stmt = select(Message.received_at, Message.event_id).where(*filters.where())
        if last is not None:
            stmt = stmt.where(tuple_(Message.received_at, Message.event_id) > tuple_(*last))
        stmt = stmt.order_by(Message.received_at, Message.event_id).limit(batch)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        yield [r.event_id for r in rows]
        last = (rows[-1].received_at, rows[-1].event_id)


class NotFound(LookupError):
    """No message (or more than one) answers to an id."""


def resolve_id(engine: Engine, ident: str) -> str:
    """A full event id, or a unique prefix of at least 8 characters."""
    ident = ident.strip().lower()
    with engine.connect() as conn:
        if conn.scalar(select(Message.event_id).where(Message.event_id == ident)):
            return ident
        if len(ident) < 8:
            raise NotFound(f"no message {ident!r} (give the whole event id or 8+ characters)")
        found = list(conn.scalars(select(Message.event_id)
                                  .where(Message.event_id.like(like_pattern(ident) + "%",
                                                               escape="\\")).limit(2)))
    if not found:
        raise NotFound(f"no message {ident!r}")
    if len(found) > 1:
        raise NotFound(f"{ident!r} is the start of several event ids: give more of it")
    return found[0]


def _dicts(conn: Any, stmt: Any) -> list[dict[str, Any]]:
    return [{k: (utc(v) if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in conn.execute(stmt).mappings()]


def details(engine: Engine, event_id: str) -> dict[str, Any]:
    """Everything SQL knows about one message (``qscan audit show``)."""
    with engine.connect() as conn:
        found = _dicts(conn, select(Message).where(Message.event_id == event_id))
        if not found:
            raise NotFound(f"no message {event_id!r}")
        out: dict[str, Any] = {"message": found[0]}
        for key, model in (("recipients", Recipient), ("parts", Part), ("findings", Finding),
                           ("dlp_findings", DlpFinding)):
            out[key] = _dicts(conn, select(model).where(model.event_id == event_id)
                              .order_by(model.id))
        quarantine = _dicts(conn, select(QuarantineEntry)
                            .where(QuarantineEntry.event_id == event_id))
        out["quarantine"] = quarantine[0] if quarantine else None
        out["queue_failures"] = _dicts(conn, select(QueueFailure)
                                       .where(QueueFailure.ref_event_id == event_id)
                                       .order_by(QueueFailure.time))
        deletion = _dicts(conn, select(Deletion).where(Deletion.ref_event_id == event_id))
        out["deletion"] = deletion[0] if deletion else None
        out["exports"] = _dicts(conn, select(Export.export_id, Export.matter, ExportItem.doc_id,
                                             Export.finished_at, Export.out_dir)
                                .join(Export, Export.export_id == ExportItem.export_id)
                                .where(ExportItem.event_id == event_id)
                                .order_by(Export.finished_at))
    return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def printable(value: Any) -> str:
    """No terminal escapes from mail reach the auditor's screen (C1 controls too)."""
    if isinstance(value, datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M:%S")
    text = "" if value is None else str(value)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    # Subjects and senders come from strangers: a leading '=' would run as a
    # spreadsheet formula when the export is opened (CSV injection, OWASP).
    value = _plain(value)
    if isinstance(value, (list, tuple)):  # recipients: one cell, comma-separated
        value = ",".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str] = FIELDS) -> str:
    """CSV for spreadsheets (lists joined with ',', formula-like cells get a leading quote);
    use JSON for tools."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in fields})
    return buf.getvalue()


def render_json(rows: Iterable[dict[str, Any]]) -> str:
    """Exact values, for tools: a list of objects, times in ISO 8601 (UTC)."""
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows],
                      indent=2, ensure_ascii=False) + "\n"
