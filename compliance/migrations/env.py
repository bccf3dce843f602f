"""Alembic environment for qscan's SQL store.

Run through ``qscan db upgrade`` (compliance.db builds the config; there is no
alembic.ini). A connection handed over in ``config.attributes["connection"]``
is used as is, so the migration runs in the caller's transaction with the
caller's SQLite pragmas.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from compliance.db import make_engine
from compliance.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    # Its DDL is transactional (compliance.db makes pysqlite emit BEGIN), so a
    # failed migration leaves the previous schema, not half of the new one.
    _configure(connection=connection, render_as_batch=sqlite,
               transactional_ddl=True if sqlite else None)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
