"""The discovery index on SQLite FTS5 and PostgreSQL: one query table, the same hits on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.discovery.document import IndexedMessage
from compliance.discovery.index import DiscoveryIndex
from compliance.discovery.query import (
    FIELDS,
    And,
    Field,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    QueryError,
    Scoped,
    Term,
    parse,
    render,
    tokens,
)
from compliance.discovery.search import NO_FILTERS, Filters, Searcher


def msg(n: int, *, subject: str = "", body: str = "", attachment: str = "",
        sender: str = "alice@example.com", to: tuple[str, ...] = ("bob@example.org",),
        cc: str = "", month: int = 1, sha: str | None = None,
        incomplete: str | None = None) -> IndexedMessage:
    text: dict[Field, str] = {"subject": subject, "from": f"Alice <{sender}> {sender}",
                              "to": " ".join(to), "cc": cc, "body": body,
                              "attachment": attachment}
    return IndexedMessage(
        event_id=f"ev{n}", sha256=sha or f"{n:064x}", received_at=datetime(2026, month, 5, tzinfo=UTC),
        host="mx1", sender=sender, subject=subject, recipients=to, text=text,
        incomplete=incomplete)


DOCS = [
    msg(1, subject="Quarterly invoice", body="Please pay the wire transfer today."),
    msg(2, subject="Re: lunch", body="The merger with Acme is confidential.", month=2),
    msg(3, subject="Acme merger", body="Nothing about transfers here.", sender="carol@example.com",
        month=2),
    msg(4, subject="budget", attachment="forecast.xlsx Revenue forecast for Acme, wire",
        cc="dave@example.net", month=3),
    msg(5, subject="e-mail policy", body="Use e-mail only. Café crème.", to=("erin@example.org",),
        month=3),
    msg(6, subject="Quarterly invoice", body="Please pay the wire transfer today.",
        to=("frank@example.org",), sha=f"{1:064x}"),  # a copy of ev1: same hash
    msg(7, body="acme one two three four five six merger", month=4, incomplete="limit: x"),
]

# query -> the distinct messages it finds (by first copy's event id)
TABLE = [
    ("invoice", {"ev1"}),
    ("INVOICE", {"ev1"}),
    ('"wire transfer"', {"ev1"}),
    ('"transfer wire"', set()),
    ("transfer*", {"ev1", "ev3"}),
    ("acme", {"ev2", "ev3", "ev4", "ev7"}),
    ("acme AND merger", {"ev2", "ev3", "ev7"}),
    ("acme merger", {"ev2", "ev3", "ev7"}),
    ("acme OR invoice", {"ev1", "ev2", "ev3", "ev4", "ev7"}),
    ("acme NOT merger", {"ev4"}),
    ("acme NOT (merger OR forecast)", set()),
    ("subject:acme", {"ev3"}),
    ("subject:(acme OR budget)", {"ev3", "ev4"}),
    ("attachment:forecast", {"ev4"}),
    ("attachment:forecast.xlsx", {"ev4"}),
    ("body:acme", {"ev2", "ev7"}),
    ("from:carol", {"ev3"}),
    ("from:carol@example.com", {"ev3"}),
    ("to:erin", {"ev5"}),
    ("cc:dave", {"ev4"}),
    ("e-mail", {"ev5"}),
    ("café", {"ev5"}),
    ("cafe", set()),
    ("merger NEAR/1 acme", {"ev2", "ev3"}),
    ("merger NEAR/5 acme", {"ev2", "ev3"}),
    ("merger NEAR/6 acme", {"ev2", "ev3", "ev7"}),
    ("acme NEAR/6 merger", {"ev2", "ev3", "ev7"}),
    ("subject:(acme NEAR/0 merger)", {"ev3"}),
    ("confid* NEAR/3 acme", {"ev2"}),
    ('"wire trans"*', {"ev1"}),
    ('subject:invoice NOT body:"wire transfer"', set()),
    ("wire NOT subject:invoice", {"ev4"}),
]


@pytest.fixture
def index(migrated_url: str, tmp_path: Path) -> Iterator[DiscoveryIndex]:
    idx = DiscoveryIndex.open(migrated_url, tmp_path / "discovery.db")
    try:
        with idx.engine.begin() as conn:
            idx.replace(conn, [(n, m) for n, m in enumerate(DOCS, 1)])
        yield idx
    finally:
        idx.close()


def hits(index: DiscoveryIndex, query: str, filters: Filters = NO_FILTERS) -> set[str]:
    result = Searcher(index).search(parse(query), filters, page_size=100)
    found = {h.event_id for h in result.hits}
    assert result.counts.total == len(found)
    return found


def test_query_table(index: DiscoveryIndex) -> None:
    wrong = {q: (hits(index, q), want) for q, want in TABLE if hits(index, q) != want}
    assert wrong == {}


def test_counts_snippets_and_copies(index: DiscoveryIndex) -> None:
    result = Searcher(index).search(parse("wire OR merger"))
    c = result.counts
    assert c.total == 5  # ev6 is a copy of ev1
    assert dict(c.per_month) == {"2026-01": 1, "2026-02": 2, "2026-03": 1, "2026-04": 1}
    assert dict(c.per_custodian)["alice@example.com"] == 4
    assert dict(c.per_custodian)["carol@example.com"] == 1
    assert c.incomplete == 1
    by_id = {h.event_id: h for h in result.hits}
    assert set(by_id) == {"ev1", "ev2", "ev3", "ev4", "ev7"}
    assert "[wire]" in by_id["ev1"].snippet
    assert "[merger]" in by_id["ev2"].snippet or "[Merger]" in by_id["ev2"].snippet
    assert [h.event_id for h in result.hits] == ["ev7", "ev4", "ev3", "ev2", "ev1"]
    second = Searcher(index).search(parse("wire OR merger"), page=2, page_size=2)
    assert [h.event_id for h in second.hits] == ["ev3", "ev2"]


def test_filters(index: DiscoveryIndex) -> None:
    assert hits(index, "acme", Filters(since=datetime(2026, 2, 1, tzinfo=UTC),
                                       until=datetime(2026, 3, 1, tzinfo=UTC))) == {"ev2", "ev3"}
    assert hits(index, "acme", Filters(sender="Carol@Example.com")) == {"ev3"}
    assert hits(index, "invoice", Filters(recipient="frank@example.org")) == {"ev6"}
    assert hits(index, '"x\'; DROP TABLE discovery_docs; --"') == set()
    assert hits(index, "acme") == {"ev2", "ev3", "ev4", "ev7"}


def test_replace_and_delete(index: DiscoveryIndex) -> None:
    with index.engine.begin() as conn:
        index.replace(conn, [(9, msg(2, subject="changed", body="nothing"))])
    assert hits(index, "merger") == {"ev3", "ev7"}
    assert hits(index, "changed") == {"ev2"}
    with index.engine.begin() as conn:
        assert index.delete(conn, ["ev2", "ev3", "nope"]) == 2
    assert hits(index, "changed OR merger") == {"ev7"}


_PIECES = st.sampled_from([*'ab"()*:-\'%;\\', " ", "AND ", "OR ", "NOT ", "NEAR/2 ", "subject:",
                           "attachment:", "acme", "merger", "wire", "');DROP TABLE x;--",
                           "{subject}", "NEAR(", "^", "é"])


@given(st.lists(_PIECES, max_size=16).map("".join))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_query_is_a_query_error_or_an_answer(index: DiscoveryIndex, text: str) -> None:
    """Never a database error: what parses runs on both databases, the rest names a column."""
    try:
        tree = parse(text)
    except QueryError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    result = Searcher(index).search(tree, page_size=100)
    assert result.counts.total == len(result.hits) <= len(DOCS)


# -- differential: both databases against a reference evaluation of the documented meaning --

VOCAB = ["acme", "merger", "wire", "transfer", "invoice", "quarterly", "e", "mail", "the",
         "pay", "budget", "forecast", "alice", "example", "com", "nothing", "zzz"]
PREFIXES = ["tra", "me", "qu", "ex", "a", "z"]
_words = st.sampled_from(VOCAB)
_terms = st.one_of(st.builds(Term, _words), st.builds(Term, st.sampled_from(PREFIXES), st.just(True)))
_leaves = st.one_of(
    _terms,
    st.builds(Phrase, st.lists(_words, min_size=2, max_size=3).map(tuple), st.booleans()),
    st.builds(Near, _terms, _terms, st.integers(0, 6)))


def _unscoped(node: Node) -> bool:
    if isinstance(node, Scoped):
        return False
    if isinstance(node, (Not,)):
        return _unscoped(node.expr)
    if isinstance(node, (And, Or)):
        return all(_unscoped(n) for n in node.items)
    return True


def _grow(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    ands = st.tuples(children, st.lists(st.one_of(children, st.builds(Not, children)),
                                        min_size=1, max_size=3)).map(lambda t: And((t[0], *t[1])))
    ors = st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
    scoped = st.builds(Scoped, st.sampled_from(FIELDS), children.filter(_unscoped))
    return st.one_of(ands, ors, scoped)


_trees = st.recursive(_leaves, _grow, max_leaves=6)


def _hit(pattern: Term, token: str) -> bool:
    return token.startswith(pattern.word) if pattern.prefix else token == pattern.word


def _holds(node: Node, doc: IndexedMessage, scope: tuple[Field, ...]) -> bool:
    """What the query language says, computed from the documents' tokens in Python."""
    if isinstance(node, Scoped):
        return _holds(node.expr, doc, (node.field,))
    if isinstance(node, Not):
        return not _holds(node.expr, doc, scope)
    if isinstance(node, And):
        return all(_holds(n, doc, scope) for n in node.items)
    if isinstance(node, Or):
        return any(_holds(n, doc, scope) for n in node.items)
    for field in scope:
        toks = tokens(doc.text[field])
        if isinstance(node, Term) and any(_hit(node, t) for t in toks):
            return True
        if isinstance(node, Phrase):
            pats = [Term(w, node.prefix and i == len(node.words) - 1)
                    for i, w in enumerate(node.words)]
            if any(all(_hit(p, toks[i + k]) for k, p in enumerate(pats))
                   for i in range(len(toks) - len(pats) + 1)):
                return True
        if isinstance(node, Near):
            left = [i for i, t in enumerate(toks) if _hit(node.left, t)]
            right = [j for j, t in enumerate(toks) if _hit(node.right, t)]
            if any(abs(i - j) - 1 <= node.distance for i in left for j in right):
                return True
    return False


def _expected(tree: Node) -> set[str]:
    first: dict[str, str] = {}
    for doc in DOCS:
        if _holds(tree, doc, FIELDS):
            first.setdefault(doc.sha256, doc.event_id)
    return set(first.values())


@given(_trees)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_both_databases_mean_what_the_language_says(index: DiscoveryIndex, tree: Node) -> None:
    assert hits(index, render(tree)) == _expected(tree), render(tree)


def test_long_field_text(index: DiscoveryIndex) -> None:
    """A tsvector holds 1 MB: PostgreSQL cuts a field past PG_FIELD_CHARS and says so."""
    from compliance.discovery.index import PG_FIELD_CHARS

    words = " ".join(f"w{i}" for i in range(PG_FIELD_CHARS // 4))
    long = msg(20, body=f"start {words} tailword")
    with index.engine.begin() as conn:
        index.replace(conn, [(20, long)])
    hit = Searcher(index).search(parse("start")).hits[0]
    assert hit.event_id == "ev20"
    if index.kind == "postgresql":
        assert hit.incomplete and "body indexed up to" in hit.incomplete
        assert hits(index, "tailword") == set()
    else:
        assert hit.incomplete is None and hits(index, "tailword") == {"ev20"}
