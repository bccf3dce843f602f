"""compliance.bulk: the driver-level insert stores exactly what SQLAlchemy's insert stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, select

from compliance.bulk import insert_rows
from compliance.db import make_engine

meta = MetaData()
things = Table(
    "things", meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(20)),
    Column("at", DateTime(timezone=True)),
    Column("flag", Boolean),
    Column("score", Float),
)
with_default = Table(
    "with_default", meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(20)),
    Column("kind", String(10), default="plain"),
)

ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "a", "at": datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC),
     "flag": True, "score": 2},
    {"id": 2, "name": "ü\u2028", "at": datetime(2026, 12, 2, 12, 0, tzinfo=timezone(timedelta(hours=2))),
     "flag": False, "score": 0.1},
    {"id": 3, "name": None, "at": None, "flag": None, "score": None},
    {"id": 4, "name": "", "at": datetime(2026, 1, 1), "flag": True, "score": -1.5e300},
]


def stored(url: str, table: Table) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(table).order_by(table.c.id))]
    engine.dispose()
    return rows


def load(url: str, table: Table, rows: list[dict[str, Any]], *, bulk: bool) -> None:
    engine = make_engine(url)
    meta.create_all(engine)
    with engine.begin() as conn:
        if bulk:
            insert_rows(conn, table, rows)
        else:
            conn.execute(table.insert(), rows)
    engine.dispose()


def test_same_rows_as_sqlalchemy(tmp_path: Path) -> None:
    fast, slow = f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'slow.db'}"
    load(fast, things, ROWS, bulk=True)
    load(slow, things, ROWS, bulk=False)
    assert stored(fast, things) == stored(slow, things)
    assert stored(fast, things)[0][2:] == (datetime(2026, 12, 2, 10, 0, 0, 123456), True, 2.0)
    # also one row alone (the driver's execute, not executemany), and nothing at all
    one = f"sqlite:///{tmp_path / 'one.db'}"
    load(one, things, ROWS[:1], bulk=True)
    load(one, things, [], bulk=True)
    assert stored(one, things) == stored(slow, things)[:1]


def test_left_out_column_with_a_default_is_filled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    load(url, with_default, [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}], bulk=True)
    assert stored(url, with_default) == [(1, "x", "plain"), (2, "y", "plain")]
