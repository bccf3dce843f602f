"""The discovery query language: parse, render, errors (pure; hypothesis for the parser)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.discovery.compile import to_fts5, tsquery_text
from compliance.discovery.query import (
    FIELDS,
    MAX_NEAR,
    And,
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
)

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789éßж", min_size=1, max_size=8)
terms = st.builds(Term, words, st.booleans())
phrases = st.builds(Phrase, st.lists(words, min_size=2, max_size=4).map(tuple), st.booleans())
nears = st.builds(Near, terms, terms, st.integers(0, MAX_NEAR))
leaves = st.one_of(terms, phrases, nears)


def _unscoped(node: Node) -> bool:
    if isinstance(node, Scoped):
        return False
    if isinstance(node, Not):
        return _unscoped(node.expr)
    if isinstance(node, (And, Or)):
        return all(_unscoped(n) for n in node.items)
    return True


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    positive = children
    ands = st.tuples(positive, st.lists(st.one_of(positive, st.builds(Not, children)),
                                        min_size=1, max_size=3)).map(
        lambda t: And((t[0], *t[1])))
    ors = st.lists(positive, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
    scoped = st.builds(Scoped, st.sampled_from(FIELDS), positive.filter(_unscoped))
    return st.one_of(ands, ors, scoped)


# Valid trees: every NOT sits in an AND with a positive sibling (the language's rule).
trees = st.recursive(leaves, _extend, max_leaves=12)


@given(trees)
@settings(max_examples=400)
def test_render_parses_back(tree: Node) -> None:
    assert parse(render(tree)) == tree


@given(st.text(max_size=60))
@settings(max_examples=1000)
def test_garbage_parses_or_names_a_column(text: str) -> None:
    try:
        tree = parse(text)
    except QueryError as exc:
        assert 1 <= exc.column <= len(text) + 1
        assert "^" in str(exc)
    else:
        assert parse(render(tree)) == tree


_ALPHABET = st.sampled_from([*'ab"()*: ', "AND ", "OR ", "NOT ", "NEAR/3 ", "subject:",
                             "from:", "x'; DROP TABLE t; --", "\\"])


@given(st.lists(_ALPHABET, max_size=20).map("".join))
@settings(max_examples=1000)
def test_query_shaped_garbage(text: str) -> None:
    try:
        tree = parse(text)
    except QueryError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    # What reaches a database is quoted tokens of letters and digits only.
    fts = to_fts5(tree)
    assert "'" not in fts and ";" not in fts and "\\" not in fts


@pytest.mark.parametrize(("text", "tree"), [
    ("invoice", Term("invoice")),
    ("Invoice*", Term("invoice", True)),
    ('"wire transfer"', Phrase(("wire", "transfer"))),
    ('"wire tr"*', Phrase(("wire", "tr"), True)),
    ('"wire"', Term("wire")),
    ("e-mail", Phrase(("e", "mail"))),
    ("a b", And((Term("a"), Term("b")))),
    ("a AND b OR c", Or((And((Term("a"), Term("b"))), Term("c")))),
    ("a (b OR c)", And((Term("a"), Or((Term("b"), Term("c")))))),
    ("a NOT b", And((Term("a"), Not(Term("b"))))),
    ("a and b", And((Term("a"), Term("and"), Term("b")))),
    ("merger NEAR/5 acme", Near(Term("merger"), Term("acme"), 5)),
    ("merger NEAR acme*", Near(Term("merger"), Term("acme", True), 10)),
    ("subject:invoice", Scoped("subject", Term("invoice"))),
    ("From:bob@example.com", Scoped("from", Phrase(("bob", "example", "com")))),
    ("attachment:(budget OR forecast)",
     Scoped("attachment", Or((Term("budget"), Term("forecast"))))),
    ("subject:(a NEAR/2 b) NOT body:c",
     And((Scoped("subject", Near(Term("a"), Term("b"), 2)), Not(Scoped("body", Term("c")))))),
])
def test_examples(text: str, tree: Node) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(("text", "column", "words"), [
    ("", 1, "ends where"),
    ("a (b", 5, "expected ')'"),
    ("a)", 2, "')' without"),
    ('say "hello', 5, "unclosed quote"),
    ("a OR", 5, "ends where"),
    ("NOT a", 1, "only excludes"),
    ("a OR NOT b", 1, "OR alternative"),
    ("from:(NOT a)", 6, "only excludes"),
    ("title:x", 1, "unknown field 'title'"),
    ("subject: x", 9, "needs a word"),
    ("subject:from:x", 9, "field inside a field"),
    ("a NEAR/x b", 3, "NEAR/ needs a number"),
    ("a NEAR/99 b", 3, "between 0 and 50"),
    ('"a b" NEAR c', 1, "two single words"),
    ("a NEAR b NEAR c", 10, "two words"),
    ("*a", 1, "'*' may only end"),
    ("--", 1, "no letters or digits"),
    ("()", 2, "empty parentheses"),
    ("(" * 40 + "a" + ")" * 40, 33, "nested more than"),
])
def test_errors_name_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert info.value.column == column, str(info.value)
    assert words in info.value.message
    caret = str(info.value).splitlines()[-1]
    assert caret.index("^") == column + 1  # two spaces of indent


def test_fts5_and_tsquery_texts() -> None:
    tree = parse('subject:"wire tr"* NOT x NEAR/1 y*')
    assert to_fts5(tree) == '((({subject} : ("wire tr" *))) NOT NEAR("x" "y" *, 1))'
    near = parse("x NEAR/1 y*")
    assert isinstance(near, Near)
    assert tsquery_text(near) == ("( 'x' <0> 'y':* ) | ( 'x' <1> 'y':* ) | ( 'y':* <1> 'x' ) | "
                                  "( 'x' <2> 'y':* ) | ( 'y':* <2> 'x' )")


def test_double_negation_is_an_error() -> None:
    for text in ("a NOT NOT b", "a NOT (NOT b)"):
        with pytest.raises(QueryError, match="drop both NOTs"):
            parse(text)
