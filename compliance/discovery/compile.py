"""The query tree as a SQLite FTS5 MATCH string and as a PostgreSQL condition.

Same meaning on both (tests/test_discovery_query.py runs one query table against both):

* a leaf (word, phrase, NEAR) matches when it occurs within one field of the message; a
  leaf under ``field:`` only in that field, otherwise in any field;
* AND / OR / NOT combine those per message.

SQLite: one FTS5 table whose columns are the fields (``FTS5_COLUMNS``); the MATCH text is
built here and *bound as one parameter*. Every token is written as an FTS5 string literal
(tokens are letters and digits only, and a ``"`` would be doubled anyway), so no query
text reaches FTS5's syntax, let alone SQL.

PostgreSQL: one ``tsvector`` column per field (``PG_VECTORS``, each with a GIN index).
A leaf becomes ``(v1 @@ q OR v2 @@ q ...)`` over the vectors of its scope, where ``q`` is
``to_tsquery(config, :param)`` and the parameter is a tsquery text built from quoted
lexemes: ``'a' <-> 'b'`` for a phrase, ``'a':*`` for a prefix, and for ``NEAR/N`` every
exact distance ``<0>`` .. ``<N+1>`` in both orders (tsquery only knows exact distances).
AND / OR / NOT are SQL's. One vector per field rather than weights on one vector: a
tsvector has four weights and the language six fields, and a phrase must not match
across the end of one field and the start of the next.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, cast, func, literal_column, not_, or_
from sqlalchemy.dialects.postgresql import REGCONFIG

from compliance.discovery.query import (
    FIELDS,
    And,
    Field,
    Leaf,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Scoped,
    Term,
)

# field -> the column holding its text (FTS5 column; PostgreSQL text and tsvector prefix)
COLUMNS: dict[Field, str] = {
    "subject": "subject", "from": "hdr_from", "to": "hdr_to", "cc": "hdr_cc",
    "body": "body", "attachment": "attachment",
}
FTS5_COLUMNS = tuple(COLUMNS[f] for f in FIELDS)
PG_VECTORS: dict[Field, str] = {f: f"tsv_{COLUMNS[f]}" for f in FIELDS}


def _fts_string(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _fts_leaf(leaf: Leaf) -> str:
    if isinstance(leaf, Term):
        return _fts_string(leaf.word) + (" *" if leaf.prefix else "")
    if isinstance(leaf, Phrase):
        # One string of several tokens is a phrase; a trailing * makes the last a prefix.
        return _fts_string(" ".join(leaf.words)) + (" *" if leaf.prefix else "")
    return f"NEAR({_fts_leaf(leaf.left)} {_fts_leaf(leaf.right)}, {leaf.distance})"


def to_fts5(node: Node) -> str:
    """The FTS5 MATCH text of ``node`` (bind it as a parameter)."""
    if isinstance(node, (Term, Phrase, Near)):
        return _fts_leaf(node)
    if isinstance(node, Scoped):
        return f"({{{COLUMNS[node.field]}}} : ({to_fts5(node.expr)}))"
    if isinstance(node, Or):
        return "(" + " OR ".join(to_fts5(n) for n in node.items) + ")"
    if isinstance(node, Not):  # only ever inside an AND with a positive part (the parser)
        raise ValueError("a NOT outside an AND has nothing to exclude from")
    positive = [n for n in node.items if not isinstance(n, Not)]
    negative = [n.expr for n in node.items if isinstance(n, Not)]
    text = "(" + " AND ".join(to_fts5(n) for n in positive) + ")"
    for n in negative:  # FTS5's NOT is binary: (x NOT y) NOT z
        text = f"({text} NOT {to_fts5(n)})"
    return text


def _lexeme(token: str, prefix: bool = False) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if prefix else "")


def tsquery_text(leaf: Leaf) -> str:
    """The to_tsquery text of one leaf."""
    if isinstance(leaf, Term):
        return _lexeme(leaf.word, leaf.prefix)
    if isinstance(leaf, Phrase):
        last = len(leaf.words) - 1
        return " <-> ".join(_lexeme(w, leaf.prefix and i == last) for i, w in enumerate(leaf.words))
    a, b = _lexeme(leaf.left.word, leaf.left.prefix), _lexeme(leaf.right.word, leaf.right.prefix)
    # <0>: one token matching both sides (``acme NEAR acme``, ``ac* NEAR acme``) counts, as
    # in FTS5's NEAR
    return " | ".join([f"( {a} <0> {b} )"] + [f"( {x} <{d}> {y} )" for d in range(1, leaf.distance + 2)
                                              for x, y in ((a, b), (b, a))])


class PgCompiler:
    """Builds the WHERE condition for a table with the ``PG_VECTORS`` columns.

    ``table``: the SQL name (or alias) the vector columns are qualified with;
    ``config``: the text search configuration (``simple``, ``english``, ...), bound."""

    def __init__(self, table: str, config: str) -> None:
        self.table = table
        self.config = config
        self.params: dict[str, Any] = {}

    def _query(self, leaf: Leaf) -> ColumnElement[Any]:
        name = f"dq{len(self.params)}"
        self.params[name] = tsquery_text(leaf)
        cfg = cast(bindparam("dq_config", self.config), REGCONFIG)
        return func.to_tsquery(cfg, bindparam(name, self.params[name]))

    def _leaf(self, leaf: Leaf, scope: tuple[Field, ...]) -> ColumnElement[bool]:
        query = self._query(leaf)
        return or_(*(literal_column(f"{self.table}.{PG_VECTORS[f]}").op("@@")(query)
                     for f in scope))

    def condition(self, node: Node, scope: tuple[Field, ...] = FIELDS) -> ColumnElement[bool]:
        if isinstance(node, (Term, Phrase, Near)):
            return self._leaf(node, scope)
        if isinstance(node, Scoped):
            return self.condition(node.expr, (node.field,))
        if isinstance(node, Not):
            return not_(self.condition(node.expr, scope))
        parts = [self.condition(n, scope) for n in node.items]
        return and_(*parts) if isinstance(node, And) else or_(*parts)
