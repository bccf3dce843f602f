"""Engines, sessions and schema migrations for the SQL summary store.

There is no ``alembic.ini``: the Alembic config is built here from the qscan
config's URL, so ``qscan db upgrade`` is the only thing an administrator runs
and the URL (and its password) lives in one place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, TextIO

from alembic.command import downgrade as _downgrade
from alembic.command import upgrade as _upgrade
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from ingest.private import make_private_dirs, prepare_sqlite_file

# The migrations are package data (compliance/migrations/), found through importlib.resources by
# alembic's "package:directory" form: the same in a checkout, an editable install and a wheel.
SCRIPT_LOCATION = "compliance:migrations"
_BEGIN = "qscan_sqlite_begin"  # execution option: the statement that opens a transaction


class SchemaMissing(RuntimeError):
    """The database has no qscan schema, or not the one this version needs."""


def _sqlite_file(database: str | None) -> Path | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


SQLITE_CACHE_KIB = 64 * 1024
SQLITE_CHECKPOINT_PAGES = 16_384  # of 4 KiB: 64 MiB of WAL


def _on_sqlite_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # The sqlite3 module only opens a transaction before DML, so a consumer's
    # "which of these ids exist?" SELECT and a migration's DDL would run
    # outside it. Take transactions over from it (see _on_sqlite_begin).
    dbapi_conn.isolation_level = None
    # WAL: audit searches never block the consumer. FULL: every commit is on disk
    # when it returns (one fsync per consumer batch, ~8% of the summaries' rate):
    # holds, tombstones and releases written by commands exist only here until the
    # consumer projects their events, and a pruned journal cannot replay what a
    # power cut took. SQLite leaves foreign keys off unless asked, per connection.
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # SQLite's default page cache is 2 MB: once the indexes outgrow it, every batch
        # re-reads the index pages it inserts into (the consumer's rate halved by 20,000
        # messages). A bound, not an allocation: pages are taken as they are used.
        cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        # Checkpoint every 64 MiB of WAL, not SQLite's default 4 MB: a consumer batch
        # dirties index pages all over the file, and each checkpoint writes (and fsyncs)
        # every page the WAL holds, so checkpointing after every batch wrote the same
        # index pages again and again (the consumer's rate fell by a third).
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        # ... and once a checkpoint has emptied a WAL that grew past that (a long audit
        # read holds old pages), give the disk back down to 64 MiB.
        cur.execute(f"PRAGMA journal_size_limit={SQLITE_CHECKPOINT_PAGES * 4096}")
    finally:
        cur.close()
    # SQLite's lower() folds ASCII only; subject search needs "Ü" to find "ü".
    # A separate name, not an override: the lower(...) indexes stay valid for
    # any other tool that opens the file.
    dbapi_conn.create_function("qscan_lower", 1, _lower, deterministic=True)


def _on_sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front (waiting out busy_timeout): a
    # deferred transaction that read first would fail at once, not wait, if
    # another writer committed in between (WAL's BUSY_SNAPSHOT).
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN, "BEGIN"))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with qscan's SQLite settings; the file is created private (0600)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        if u.get_backend_name() == "postgresql" and "options" not in u.query:
            # Sessions in UTC: what psql shows an auditor matches what qscan prints.
            kwargs.setdefault("connect_args", {"options": "-c timezone=UTC"})
        return create_engine(u, **kwargs)
    path = _sqlite_file(u.database)
    if path is not None:
        # Summaries hold addresses and subjects: don't let the umask publish them, nor the
        # -wal/-shm files SQLite gives the database file's mode (ingest/private.py). Made
        # only when missing: closing any fd of an open database drops every POSIX lock
        # this process's connections hold on it, and another process may then checkpoint
        # and remove the WAL under them ("disk I/O error"); loose modes are fixed by path.
        make_private_dirs(path.parent)
        prepare_sqlite_file(path)
    engine = create_engine(u, **kwargs)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def session_factory(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``write=True`` for transactions that will write."""
    if write:
        engine = engine.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str = "") -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    # ConfigParser interpolates '%': URL-encoded passwords must survive it.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head() -> str:
    """The schema revision this version of qscan needs."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:  # pragma: no cover - the repo always ships 0001
        raise SchemaMissing(f"no migrations found in {SCRIPT_LOCATION}")
    return rev


def upgrade(url: str, revision: str = "head", *, sql: bool = False,
            output: TextIO | None = None) -> None:
    """Migrate to ``revision``; ``sql=True`` prints the DDL instead (for DBAs)."""
    cfg = alembic_config(url)
    if output is not None:
        cfg.output_buffer = output
    if sql:
        _upgrade(cfg, revision, sql=True)
        return
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            _upgrade(cfg, revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Step the schema back (tests and rollbacks; ``"base"`` drops every table)."""
    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            _downgrade(cfg, revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    # Alembic logs its dialect choice at INFO on every configure; qscan's log handler shows
    # libraries' INFO only under -v (qscan/logs.py). (Raising the logger's level around the
    # call, as this did, raced between threads and could leave it raised for good.)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def current(url: str) -> str | None:
    """The database's schema revision, ``None`` when it has no qscan schema yet."""
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Fail early, with the fix in the message, instead of a 'no such table' mid-batch."""
    rev = current_revision(engine)
    want = head()
    if rev == want:
        return
    where = engine.url.render_as_string(hide_password=True)
    if rev is None:
        raise SchemaMissing(f"no qscan schema in {where}: run `qscan db upgrade`")
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if rev not in known:
        raise SchemaMissing(
            f"the schema in {where} is at revision {rev}, newer than this qscan ({want}): "
            "upgrade qscan"
        )
    raise SchemaMissing(
        f"the schema in {where} is at revision {rev}, this qscan needs {want}: "
        "run `qscan db upgrade`"
    )
