"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from compliance import db
from compliance.models import Base
from compliance.summaries import SummarySink

# SQLite cannot reflect expression indexes, so Alembic warns it skips them;
# test_expression_indexes checks those directly.
pytestmark = pytest.mark.filterwarnings("ignore:.*expression-based index")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sub' / 'qscan.db'}"


def test_upgrade_matches_models(url: str) -> None:
    assert db.current(url) is None
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert tables == {"messages", "recipients", "findings", "consumer_positions", "alembic_version"}


def test_expression_indexes(url: str) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        sql = dict(conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).all())
    engine.dispose()
    expected = {i.name for t in Base.metadata.tables.values() for i in t.indexes}
    assert set(sql) == expected
    assert "lower(sender), received_at" in sql["ix_messages_sender_received"]
    assert "lower(address), event_id" in sql["ix_recipients_address_event"]


def test_current_is_head_and_upgrade_is_idempotent(url: str) -> None:
    db.upgrade(url)
    db.upgrade(url)
    assert db.current(url) == db.head() == "0001"


def test_downgrade_round_trip(url: str) -> None:
    db.upgrade(url)
    db.downgrade(url, "base")
    assert db.current(url) is None
    engine = db.make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    db.upgrade(url)
    assert db.current(url) == db.head()


def test_sqlite_settings_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "qscan.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_schema_names_the_fix(url: str) -> None:
    with pytest.raises(db.SchemaMissing, match="qscan db upgrade"):
        SummarySink(url)


def test_unknown_revision_is_reported_as_newer(url: str) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(db.SchemaMissing, match="newer than this qscan"):
        db.check_schema(engine)
    engine.dispose()


def test_offline_sql_for_postgresql() -> None:
    out = io.StringIO()
    db.upgrade("postgresql://qscan:p%40ss@db.example.com/qscan", sql=True, output=out)
    ddl = out.getvalue()
    assert "CREATE TABLE messages" in ddl
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert "CREATE INDEX ix_recipients_address_event ON recipients (lower(address), event_id)" in ddl
    assert "BIGSERIAL" in ddl
