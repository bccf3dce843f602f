"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from compliance import db
from compliance.discovery import schema as discovery_schema
from compliance.models import Base
from compliance.summaries import SummarySink
from ingest.event import Action, Category, Timings
from ingest.log import LogRecord
from tests.factories import make_event

# SQLite cannot reflect expression indexes, so Alembic warns it skips them;
# test_expression_indexes checks those directly.
pytestmark = pytest.mark.filterwarnings("ignore:.*expression-based index")

TABLES = {"messages", "recipients", "findings", "consumer_positions", "parts", "dlp_findings",
          "quarantine_entries", "queue_failures", "deletions", "chain_heads", "holds", "exports",
          "export_items", "alembic_version",
          "notifications",  # 0003 (compliance/notify)
          "dlp_hunts", "dlp_hunt_findings",  # 0005 (compliance/dlp_hunts)
          "quarantine_releases",  # 0006 (compliance/quarantine_records)
          "quarantine_release_requests",  # 0009 (four-eyes, compliance/quarantine_records)
          "hold_items",  # 0013 (holds by discovery query, compliance/holds)
          "web_accounts",  # 0015 (the web console, compliance/accounts)
          "console_activity"}  # 0017 (the console's activity, compliance/activity)
# 0011 (compliance/discovery/schema.py), PostgreSQL only: SQLite keeps the index in its own file
DISCOVERY_PG = {"discovery_docs", "discovery_participants", "discovery_text"}


def _tables(keep: Any) -> Any:
    """An Alembic include_object that compares only the tables ``keep(name)`` accepts."""
    return lambda obj, name, type_, reflected, compare_to: type_ != "table" or keep(name)


def engine_for(url: str) -> Engine:
    return db.make_engine(url)


def index_sql(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        else:
            query = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                     "AND indexname NOT LIKE 'pk_%%' AND indexname NOT LIKE 'uq_%%' AND tablename <> 'alembic_version'")
        found = dict(conn.exec_driver_sql(query).all())  # type: ignore[arg-type]
    # PostgreSQL shows lower((sender)::text); compare in SQLite's spelling
    return {k: re.sub(r"\(\((\w+)\)::text\)", r"(\1)", v) for k, v in found.items()}


def test_upgrade_matches_models(db_url: str) -> None:
    assert db.current(db_url) is None
    db.upgrade(db_url)
    engine = engine_for(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "compare_type": True, "include_object": _tables(lambda n: n not in DISCOVERY_PG)})
            assert compare_metadata(ctx, Base.metadata) == []
            if conn.dialect.name == "postgresql":
                ctx = MigrationContext.configure(conn, opts={
                    "compare_type": True, "include_object": _tables(DISCOVERY_PG.__contains__)})
                assert compare_metadata(ctx, discovery_schema.metadata) == []
            tables = set(inspect(conn).get_table_names())
            views = set(inspect(conn).get_view_names())
    finally:
        engine.dispose()
    assert tables == TABLES | (DISCOVERY_PG if db_url.startswith("postgresql") else set())
    assert views == {"summary_lines"}


def test_expression_indexes(db_url: str) -> None:
    db.upgrade(db_url)
    engine = engine_for(db_url)
    sql = index_sql(engine)
    engine.dispose()
    expected = {i.name for t in Base.metadata.tables.values() for i in t.indexes}
    if engine.dialect.name == "postgresql":
        expected |= {i.name for t in discovery_schema.metadata.tables.values()
                     if t.name in DISCOVERY_PG for i in t.indexes}
    assert set(sql) == expected
    assert "lower(sender), received_at, event_id" in sql["ix_messages_sender_received"]
    assert "sender_domain, received_at, event_id" in sql["ix_messages_sender_domain_received"]
    assert "lower(address), received_at, event_id" in sql["ix_recipients_address_received"]
    if engine.dialect.name == "postgresql":  # 0016: read from the index alone
        assert "INCLUDE (sender)" in sql["ix_messages_sender_received"]
        assert "INCLUDE (address)" in sql["ix_recipients_address_received"]
    assert "lower" in sql["ix_parts_filename_event"] and "lower" in sql["ix_findings_name_event"]


def test_current_is_head_and_upgrade_is_idempotent(db_url: str) -> None:
    db.upgrade(db_url)
    db.upgrade(db_url)
    assert db.current(db_url) == db.head() == "0017"


def test_downgrade_round_trip(db_url: str) -> None:
    db.upgrade(db_url)
    db.downgrade(db_url, "0001")
    assert db.current(db_url) == "0001"
    db.downgrade(db_url, "base")
    assert db.current(db_url) is None
    engine = engine_for(db_url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert inspect(engine).get_view_names() == []
    engine.dispose()
    db.upgrade(db_url)
    assert db.current(db_url) == db.head()


def test_downgrade_keeps_the_messages(db_url: str) -> None:
    db.upgrade(db_url)
    sink = SummarySink(db_url)
    sink.apply([LogRecord(1, make_event(recipients=["a@example.org", "b@example.org"]))], 1)
    sink.close()
    db.downgrade(db_url, "0001")
    engine = engine_for(db_url)
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("messages", "recipients")]
    engine.dispose()
    assert counts == [1, 2]


def _insert_legacy(engine: Engine) -> list[str]:
    """Rows as revision 0001 wrote them (no chain, no parts)."""
    ids = []
    with engine.begin() as conn:
        for i, (host, status) in enumerate([("mx1", "queued"), ("mx2", "queued"),
                                            ("mx1", "failed")]):
            event_id = f"0192f1c0-0000-7000-8000-00000000000{i}"
            ids.append(event_id)
            conn.execute(text(
                "INSERT INTO messages (event_id, position, received_at, host, action, category, "
                "reason, client_ip, client_host, relay, auth_user, sender, sender_domain, subject, "
                "message_id, size, sha256, attachments, parts_count, recipients_count, spam_score, "
                "processing_ms, queue_status, queue_exit_code, summary) VALUES (:e, :p, :t, :h, "
                "'deliver', 'clean', 'clean', :ip, NULL, :relay, NULL, 'a@example.com', "
                "'example.com', 'Hello', '<m@x>', 10, :sha, '', 1, 1, NULL, 1.5, :st, :code, 'line')"
            ), {"e": event_id, "p": i + 1, "t": datetime(2026, 1, 1, i, tzinfo=UTC), "h": host,
                "ip": None if i == 1 else "192.0.2.1", "relay": i == 2, "sha": "a" * 64,
                "st": status, "code": 53 if status == "failed" else None})
            conn.execute(text("INSERT INTO recipients (event_id, address, domain) "
                              "VALUES (:e, 'b@example.org', 'example.org')"), {"e": event_id})
    return ids


def test_upgrade_seals_existing_rows(db_url: str) -> None:
    from compliance.verify import verify_chain

    db.upgrade(db_url, "0001")
    engine = engine_for(db_url)
    ids = _insert_legacy(engine)
    db.upgrade(db_url)
    with engine.connect() as conn:
        rows = {r.event_id: r for r in conn.execute(text(
            "SELECT event_id, host, chain_seq, direction FROM messages"))}
        failures = conn.execute(text("SELECT ref_event_id, exit_code, chain_seq FROM queue_failures")
                                ).all()
        quarantined = conn.execute(text("SELECT count(*) FROM quarantine_entries")).scalar()
    assert [(rows[i].host, rows[i].chain_seq, rows[i].direction) for i in ids] == [
        ("mx1", 1, "inbound"), ("mx2", 1, "local"), ("mx1", 2, "outbound")]
    assert [tuple(f) for f in failures] == [(ids[2], 53, 3)]
    assert quarantined == 0
    report = verify_chain(engine)
    engine.dispose()
    assert report.problems == []
    assert report.entries == 4


def test_summary_view(db_url: str) -> None:
    db.upgrade(db_url)
    sink = SummarySink(db_url)
    ev = make_event(sender="alice@example.com", recipients=["bob@example.org", "carol@example.net"],
                    subject="Quarterly report", attachments=[("r.pdf", "application/pdf", 9)],
                    when=datetime(2026, 11, 25, 10, 0, 5, tzinfo=UTC), action=Action.QUARANTINE,
                    category=Category.VIRUS, timings=Timings(total_ms=4.0))
    sink.apply([LogRecord(1, ev)], 1)
    sink.close()
    engine = engine_for(db_url)
    with engine.connect() as conn:
        got: dict[str, Any] = dict(conn.execute(text(
            "SELECT * FROM summary_lines WHERE event_id = :e"), {"e": ev.event_id}).mappings().one())
    engine.dispose()
    assert got["line"].split("\t") == [
        "2026-11-25 10:00:05", "Virus:RC:0(192.0.2.10):virus:quarantine:", "0.004",
        str(ev.size), "alice@example.com", "bob@example.org,carol@example.net",
        "Quarterly report", "<m1@example.com>", ev.event_id, "r.pdf"]
    assert got["summary"].startswith(f"event={ev.event_id} action=quarantine")
    assert got["deleted_at"] is None


def test_sqlite_settings_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "qscan.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16_384
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == 64 * 1024 * 1024
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_postgresql_sessions_are_utc(db_url: str) -> None:
    engine = engine_for(db_url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "UTC"
        else:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_missing_schema_names_the_fix(db_url: str) -> None:
    with pytest.raises(db.SchemaMissing, match="qscan db upgrade"):
        SummarySink(db_url)


def test_unknown_revision_is_reported_as_newer(db_url: str) -> None:
    db.upgrade(db_url)
    engine = engine_for(db_url)
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
    assert "CREATE VIEW summary_lines" in ddl and "string_agg" in ddl
    assert "not sealed into the hash chain" in ddl
