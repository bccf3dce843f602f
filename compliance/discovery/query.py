"""The discovery query language: text in, a syntax tree out (pure; no I/O, no SQL).

Grammar (keywords are upper case; a lower-case ``and`` is a word)::

    query    := or_expr END
    or_expr  := and_expr ( "OR" and_expr )*
    and_expr := not_expr ( ["AND"] not_expr )*        -- juxtaposition is AND
    not_expr := "NOT" not_expr | near
    near     := scoped ( ("NEAR" | "NEAR/" N) scoped )?  -- both sides bare words
    scoped   := FIELD ":" primary | primary
    primary  := WORD ["*"] | '"' words '"' ["*"] | "(" or_expr ")"

A word is cut into tokens the way the index cuts text (``tokens``: runs of letters and
digits, lower-cased); a word of one token is a ``Term``, a word of several
(``e-mail``, ``bob@example.com``) is the ``Phrase`` of its tokens. ``*`` right after a
word or a closing quote makes its last token a prefix. ``NEAR/N`` matches the two words
with at most N other tokens between them, in either order (``NEAR`` alone: N = 10).

Every query must be able to *find* something: a ``NOT`` needs a positive sibling in
its ``AND`` (``a NOT b``), and no ``OR`` branch may be purely negative. This is a rule
of the language, not of one database: SQLite FTS5 cannot answer "everything except".

Errors are ``QueryError`` with the 1-based column and a caret line under the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

Field = Literal["subject", "from", "to", "cc", "body", "attachment"]
FIELDS: tuple[Field, ...] = get_args(Field)

DEFAULT_NEAR = 10
MAX_NEAR = 50  # PostgreSQL has no "within N": it is spelled as 2(N+1) exact distances
MAX_DEPTH = 32  # nesting of parentheses / NOTs (a bound on recursion and query size)
MAX_LENGTH = 4000  # characters of query text

_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """The searchable tokens of ``text``: runs of letters and digits, lower-cased.

    The index is built from exactly these tokens on both databases, so a word matches
    the same text on SQLite and PostgreSQL."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True, slots=True)
class Term:
    word: str  # one token (``tokens(word) == [word]``)
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Phrase:
    words: tuple[str, ...]  # two or more tokens, adjacent and in order
    prefix: bool = False  # the last token is a prefix


@dataclass(frozen=True, slots=True)
class Near:
    left: Term
    right: Term
    distance: int  # at most this many tokens between them, either order


@dataclass(frozen=True, slots=True)
class Scoped:
    field: Field
    expr: Node


@dataclass(frozen=True, slots=True)
class Not:
    expr: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]  # two or more


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]  # two or more


Node: TypeAlias = Term | Phrase | Near | Scoped | Not | And | Or
Leaf: TypeAlias = Term | Phrase | Near


class QueryError(ValueError):
    """A query that does not parse: ``column`` (1-based) and what was expected there."""

    def __init__(self, query: str, column: int, message: str) -> None:
        self.query = query
        self.column = column
        self.message = message
        line = query.replace("\n", " ").replace("\r", " ").replace("\t", " ")
        super().__init__(f"query error at column {column}: {message}\n  {line}\n"
                         f"  {' ' * (column - 1)}^")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: Literal["word", "phrase", "field", "lparen", "rparen", "and", "or", "not", "near",
                  "end"]
    text: str
    pos: int  # 0-based offset
    prefix: bool = False
    distance: int = 0


_KEYWORDS = {"AND": "and", "OR": "or", "NOT": "not"}
_FIELD = re.compile(r"([A-Za-z]+):")
_NEAR = re.compile(r"NEAR(?:/([0-9]+))?")
_SPECIAL = '()"*'


def _lex(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(query)

    def fail(at: int, message: str) -> QueryError:
        return QueryError(query, at + 1, message)

    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c == "(":
            out.append(_Tok("lparen", c, i))
            i += 1
        elif c == ")":
            out.append(_Tok("rparen", c, i))
            i += 1
        elif c == "*":
            raise fail(i, "'*' may only end a word or a phrase (prefix search)")
        elif c == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise fail(i, 'unclosed quote: add the closing "')
            star = end + 1 < n and query[end + 1] == "*"
            out.append(_Tok("phrase", query[i + 1:end], i, prefix=star))
            i = end + 1 + star
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in _SPECIAL:
                j += 1
            word = query[i:j]
            field = _FIELD.match(word)
            if field:
                name = field.group(1).lower()
                if name not in FIELDS:
                    raise fail(i, f"unknown field {field.group(1)!r} (fields: {', '.join(FIELDS)})")
                out.append(_Tok("field", name, i))
                i += field.end()
                if i >= n or query[i].isspace():
                    raise fail(i, f"'{name}:' needs a word, a phrase or a group right after it")
                continue
            if word in _KEYWORDS:
                out.append(_Tok(_KEYWORDS[word], word, i))  # type: ignore[arg-type]
                i = j
                continue
            near = _NEAR.fullmatch(word)
            if near:
                distance = DEFAULT_NEAR if near.group(1) is None else int(near.group(1))
                if not 0 <= distance <= MAX_NEAR:
                    raise fail(i, f"NEAR distance must be between 0 and {MAX_NEAR}")
                out.append(_Tok("near", word, i, distance=distance))
                i = j
                continue
            if word.startswith("NEAR/"):
                raise fail(i, "NEAR/ needs a number of words, e.g. NEAR/5")
            star = j < n and query[j] == "*"
            out.append(_Tok("word", word, i, prefix=star))
            i = j + star
    out.append(_Tok("end", "", n))
    return out


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = _lex(query)
        self.i = 0
        self.depth = 0

    def fail(self, tok: _Tok, message: str) -> QueryError:
        return QueryError(self.query, tok.pos + 1, message)

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node, positive = self.or_expr()
        if self.tok.kind != "end":
            what = "')' without its '('" if self.tok.kind == "rparen" else repr(self.tok.text)
            raise self.fail(self.tok, f"unexpected {what}")
        if not positive:
            raise QueryError(self.query, 1, "the query only excludes: add a term to find "
                             "(e.g. 'invoice NOT draft')")
        return node

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(tok, f"nested more than {MAX_DEPTH} deep")

    # Each rule returns (node, positive): positive when the node can match on its own
    # (it is not a bare exclusion).

    def or_expr(self) -> tuple[Node, bool]:
        start = self.tok
        items = [self.and_expr()]
        while self.tok.kind == "or":
            self.take()
            items.append(self.and_expr())
        if len(items) == 1:
            return items[0]
        if not all(p for _, p in items):
            raise self.fail(start, "an OR alternative only excludes (NOT ...): "
                            "each alternative must find something")
        return Or(tuple(n for n, _ in items)), True

    def and_expr(self) -> tuple[Node, bool]:
        start = self.tok
        items = [self.not_expr()]
        while True:
            if self.tok.kind == "and":
                self.take()
                items.append(self.not_expr())
            elif self.tok.kind in ("word", "phrase", "field", "lparen", "not"):
                items.append(self.not_expr())
            else:
                break
        if len(items) == 1:
            return items[0]
        positive = any(p for _, p in items)
        if not positive:
            raise self.fail(start, "every part of this AND is a NOT: add a term to find")
        return And(tuple(n for n, _ in items)), True

    def not_expr(self) -> tuple[Node, bool]:
        if self.tok.kind == "not":
            tok = self.take()
            self.nest(tok)
            inner = self.tok
            node, positive = self.not_expr()
            if not positive:
                raise self.fail(inner, "NOT of something that only excludes: drop both NOTs")
            self.depth -= 1
            return Not(node), False
        return self.near()

    def near(self) -> tuple[Node, bool]:
        left_tok = self.tok
        left, positive = self.scoped()
        if self.tok.kind != "near":
            return left, positive
        near = self.take()
        right_tok = self.tok
        right, _ = self.scoped()
        for tok, node in ((left_tok, left), (right_tok, right)):
            if not isinstance(node, Term) or tok.kind != "word":
                raise self.fail(tok, "NEAR joins two single words (no phrases, fields or groups; "
                                "scope the whole: subject:(a NEAR/3 b))")
        assert isinstance(left, Term) and isinstance(right, Term)
        if self.tok.kind == "near":
            raise self.fail(self.tok, "NEAR joins two words: write (a NEAR b) AND (b NEAR c)")
        return Near(left, right, near.distance), True

    def scoped(self) -> tuple[Node, bool]:
        if self.tok.kind != "field":
            return self.primary()
        tok = self.take()
        if self.tok.kind == "field":
            raise self.fail(self.tok, "a field inside a field: use one field per term")
        inner = self.tok
        node, positive = self.primary()
        if not positive:
            raise self.fail(inner, f"'{tok.text}:' only excludes: write NOT {tok.text}:(...)")
        if _has_scope(node):
            raise self.fail(inner, "a field inside a field: use one field per term")
        return Scoped(tok.text, node), positive

    def primary(self) -> tuple[Node, bool]:
        tok = self.take()
        if tok.kind == "word":
            return self.words(tok, tok.text), True
        if tok.kind == "phrase":
            return self.words(tok, tok.text), True
        if tok.kind == "lparen":
            self.nest(tok)
            if self.tok.kind == "rparen":
                raise self.fail(self.tok, "empty parentheses")
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise self.fail(self.tok, "expected ')' to close the '(' at column "
                                f"{tok.pos + 1}")
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "end":
            raise self.fail(tok, "the query ends where a word, a phrase or '(' was expected")
        raise self.fail(tok, f"expected a word, a phrase or '(', not {tok.text!r}")

    def words(self, tok: _Tok, text: str) -> Node:
        found = tokens(text)
        if not found:
            what = "phrase" if tok.kind == "phrase" else "word"
            raise self.fail(tok, f"this {what} has no letters or digits to search for")
        if len(found) == 1:
            return Term(found[0], tok.prefix)
        return Phrase(tuple(found), tok.prefix)


def _has_scope(node: Node) -> bool:
    if isinstance(node, Scoped):
        return True
    if isinstance(node, Not):
        return _has_scope(node.expr)
    if isinstance(node, (And, Or)):
        return any(_has_scope(n) for n in node.items)
    return False


def parse(query: str) -> Node:
    """The tree of ``query``; raises QueryError (with the column) for anything else."""
    if len(query) > MAX_LENGTH:
        raise QueryError(query[:80], 81, f"the query is longer than {MAX_LENGTH} characters")
    return _Parser(query).parse()


def render(node: Node) -> str:
    """The canonical text of ``node``: ``parse(render(n)) == n`` for every valid tree."""
    if isinstance(node, Term):
        return node.word + ("*" if node.prefix else "")
    if isinstance(node, Phrase):
        return '"' + " ".join(node.words) + '"' + ("*" if node.prefix else "")
    if isinstance(node, Near):
        return f"{render(node.left)} NEAR/{node.distance} {render(node.right)}"
    if isinstance(node, Scoped):
        inner = node.expr
        text = render(inner)
        return f"{node.field}:" + (text if isinstance(inner, (Term, Phrase)) else f"({text})")
    if isinstance(node, Not):
        inner = node.expr
        text = render(inner)
        return "NOT " + (f"({text})" if isinstance(inner, (And, Or)) else text)
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(f"({render(n)})" if isinstance(n, (And, Or)) else render(n)
                       for n in node.items)


def leaves(node: Node) -> list[Leaf]:
    """The terms, phrases and proximities of ``node`` in order (for highlighting)."""
    if isinstance(node, (Term, Phrase, Near)):
        return [node]
    if isinstance(node, (Scoped, Not)):
        return leaves(node.expr)
    return [leaf for item in node.items for leaf in leaves(item)]
