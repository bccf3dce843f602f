"""The canonical encoding of chained rows: deterministic, driver-independent, frozen."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance import canonical

texts = st.text(max_size=30)
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.just(UTC))
numbers = st.floats(allow_nan=False, allow_infinity=False)


def value_for(code: str) -> st.SearchStrategy[Any]:
    return {"t": texts, "i": st.integers(-(2**62), 2**62), "f": numbers, "b": st.booleans(),
            "d": moments}[code]


@st.composite
def rows(draw: st.DrawFn, spec: canonical.Spec) -> dict[str, Any]:
    return {name: draw(st.none() | value_for(code)) for name, code in spec}


def message_children() -> st.SearchStrategy[dict[str, list[dict[str, Any]]]]:
    return st.fixed_dictionaries({table: st.lists(rows(spec), max_size=3)
                                  for table, spec in canonical.CHILDREN.items()})


@given(row=rows(canonical.MESSAGE), children=message_children(), seq=st.integers(1, 2**40))
def test_encoding_ignores_key_order_and_is_json(row: dict[str, Any], children: Any, seq: int) -> None:
    import json

    a = canonical.encode("message", "mx1", seq, row, children)
    b = canonical.encode("message", "mx1", seq, dict(reversed(list(row.items()))), children)
    assert a == b
    decoded = json.loads(a)
    assert decoded["v"] == 1 and decoded["seq"] == seq and set(decoded["row"]) == {
        n for n, _ in canonical.MESSAGE}


@given(row=rows(canonical.QUEUE_FAILURE), data=st.data())
def test_any_changed_field_changes_the_encoding(row: dict[str, Any], data: st.DataObject) -> None:
    name, code = data.draw(st.sampled_from(canonical.QUEUE_FAILURE))
    other = data.draw(st.none() | value_for(code))
    if canonical.normalize(other, code) == canonical.normalize(row[name], code):
        return
    changed = {**row, name: other}
    assert canonical.encode("queue_failed", "h", 1, row) != canonical.encode(
        "queue_failed", "h", 1, changed)


@given(when=moments, hours=st.integers(-12, 12))
def test_times_are_utc_whatever_the_driver_returns(when: datetime, hours: int) -> None:
    naive = when.replace(tzinfo=None)  # SQLite gives naive UTC back
    shifted = when.astimezone(timezone(timedelta(hours=hours)))  # PostgreSQL: session zone
    assert canonical.normalize(naive, "d") == canonical.normalize(shifted, "d") == \
        canonical.normalize(when, "d")
    assert canonical.normalize(when, "d").endswith("Z")


@given(n=st.integers(-(2**53), 2**53))
def test_integral_floats_and_sqlite_booleans(n: int) -> None:
    assert canonical.normalize(n, "f") == canonical.normalize(float(n), "f")
    assert canonical.normalize(1, "b") is True and canonical.normalize(0, "b") is False


@pytest.mark.parametrize(("value", "code"), [
    (math.nan, "f"), (math.inf, "f"), ("1", "i"), (True, "i"), (2, "b"), ("x", "d"), (1, "t"),
    (1.5, "i"),
])
def test_values_without_a_canonical_form(value: Any, code: str) -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.normalize(value, code)


def test_unknown_kind_and_bad_row() -> None:
    with pytest.raises(canonical.EncodingError, match="kind"):
        canonical.encode("release", "h", 1, {})
    row = {name: None for name, _ in canonical.DELETION} | {"time": "yesterday"}
    with pytest.raises(canonical.EncodingError, match="'time'"):
        canonical.encode("deletion", "h", 1, row)


@given(entries=st.lists(rows(canonical.QUEUE_FAILURE), min_size=2, max_size=6), data=st.data())
def test_a_change_breaks_every_later_link(entries: list[dict[str, Any]], data: st.DataObject) -> None:
    def chain(items: list[dict[str, Any]]) -> list[str]:
        out, prev = [], canonical.GENESIS
        for i, item in enumerate(items, 1):
            prev = canonical.link(prev, canonical.encode("queue_failed", "h", i, item))
            out.append(prev)
        return out

    i = data.draw(st.integers(0, len(entries) - 1))
    changed = [dict(e) for e in entries]
    changed[i]["exit_code"] = (changed[i]["exit_code"] or 0) + 1
    a, b = chain(entries), chain(changed)
    assert a[:i] == b[:i]
    assert all(x != y for x, y in zip(a[i:], b[i:], strict=True))


def test_version_1_is_frozen() -> None:
    """A golden vector: if this changes, old chains stop verifying. Add a version instead."""
    row = {"event_id": "e1", "ref_event_id": "m1", "time": datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
           "host": "mx1.example.com", "exit_code": 71}
    encoded = canonical.encode("queue_failed", "mx1.example.com", 7, row)
    assert encoded == (b'{"host":"mx1.example.com","kind":"queue_failed","row":{"event_id":"e1",'
                       b'"exit_code":71,"host":"mx1.example.com","ref_event_id":"m1",'
                       b'"time":"2026-11-25T10:00:00.000000Z"},"seq":7,"v":1}')
    assert canonical.link(canonical.GENESIS, encoded) == GOLDEN


# sha256("0" * 64 + "\n" + encoded), computed independently with hashlib
GOLDEN = "46df1ab5a1cfb72732f01edd11303c4ae4af9f157e9c33e474e00b55f776765f"
