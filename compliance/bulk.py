"""Bulk inserts of plain-dict rows, at the driver's speed where that is safe.

SQLAlchemy's Core executemany builds every row's parameters through the
compiled statement (a dict per row, a lookup per bind); on SQLite that costs
more than the insert itself. Here the statement is compiled once per table
and column set, each row becomes a tuple with the column types' own bind
processors applied (the same functions SQLAlchemy would call: datetimes
to SQLite's text form, booleans to 0/1), and the driver's ``executemany``
takes the lot. Other databases keep SQLAlchemy's path: its PostgreSQL
dialect already batches rows into multi-VALUES statements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table

Row = dict[str, Any]
_Plan = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]
# Keyed by the Table itself: two tables of one name in different metadata are two plans.
_plans: dict[tuple[str, str, Table, tuple[str, ...]], _Plan | None] = {}


def _plan(conn: Connection, table: Table, columns: tuple[str, ...]) -> _Plan | None:
    """The statement and bind processors for these columns; None when SQLAlchemy must
    fill a left-out column (a Python-side default) and so keeps the insert."""
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, table, columns)
    if key in _plans:
        return _plans[key]
    plan: _Plan | None = None
    if not any(c.default is not None for c in table.c if c.key not in columns):
        prep = dialect.identifier_preparer
        names = ", ".join(prep.format_column(table.c[c]) for c in columns)
        sql = (f"INSERT INTO {prep.format_table(table)} ({names}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        procs = tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                      for c in columns)
        plan = (sql, columns, procs)
    _plans[key] = plan
    return plan


def insert_rows(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """INSERT ``rows`` into ``table``: dicts with the same keys, each a column of ``table``."""
    if not rows:
        return
    plan = _plan(conn, table, tuple(rows[0])) if conn.dialect.name == "sqlite" else None
    if plan is None:
        conn.execute(table.insert(), list(rows))
        return
    sql, columns, procs = plan
    if not any(procs):
        params = [tuple([row[c] for c in columns]) for row in rows]
    else:
        pairs = tuple(zip(columns, procs, strict=True))
        params = [tuple([row[c] if p is None or row[c] is None else p(row[c]) for c, p in pairs])
                  for row in rows]
    conn.exec_driver_sql(sql, params)
