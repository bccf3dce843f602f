"""Compliance store: parts, DLP findings, quarantine entries, queue failures, tombstones,
hash chain, legal holds, exports, and the summary-line view.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Rows already in ``messages`` are sealed into their host's hash chain here
(online upgrades only: ``--sql`` output cannot compute hashes, it says so in a
comment, and ``qscan verify`` then reports those rows as outside the chain).
Their parts and DLP findings were never stored, so they are chained without.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from compliance import canonical

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
VIEW = "summary_lines"

# The folder archive/consumer.py files a quarantined message under, by category.
_FOLDER_CASE = (
    "CASE category WHEN 'virus' THEN 'viruses' WHEN 'spam' THEN 'spam' "
    "WHEN 'dlp' THEN 'dlp' ELSE 'policy' END"
)

_VIEW_SQL = {
    # Qmail-Scanner's log line, tab-separated:
    # time, TAG:RC:relay(ip):category:action, seconds, size, sender, recipients,
    # subject, message-id, event id, attachments.
    "sqlite": """
CREATE VIEW summary_lines AS
SELECT m.received_at, m.event_id, m.host, m.action, m.category, m.direction,
  substr(m.received_at, 1, 19) || char(9)
  || CASE WHEN m.category = 'clean' THEN 'Clear'
          ELSE upper(substr(m.category, 1, 1)) || substr(m.category, 2) END
  || ':RC:' || CASE WHEN m.relay THEN '1' ELSE '0' END
  || '(' || coalesce(m.client_ip, '127.0.0.1') || '):' || m.category || ':' || m.action || ':'
  || char(9) || printf('%.3f', m.processing_ms / 1000.0)
  || char(9) || m.size
  || char(9) || m.sender
  || char(9) || coalesce((SELECT group_concat(address, ',') FROM
       (SELECT r.address FROM recipients r WHERE r.event_id = m.event_id ORDER BY r.id)), '')
  || char(9) || m.subject
  || char(9) || m.message_id
  || char(9) || m.event_id
  || char(9) || m.attachments AS line,
  m.summary, m.deleted_at
FROM messages m
""",
    "postgresql": """
CREATE VIEW summary_lines AS
SELECT m.received_at, m.event_id, m.host, m.action, m.category, m.direction,
  to_char(m.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || chr(9)
  || CASE WHEN m.category = 'clean' THEN 'Clear'
          ELSE upper(substr(m.category, 1, 1)) || substr(m.category, 2) END
  || ':RC:' || CASE WHEN m.relay THEN '1' ELSE '0' END
  || '(' || coalesce(m.client_ip, '127.0.0.1') || '):' || m.category || ':' || m.action || ':'
  || chr(9) || to_char(m.processing_ms / 1000.0, 'FM999999990.000')
  || chr(9) || m.size
  || chr(9) || m.sender
  || chr(9) || coalesce((SELECT string_agg(r.address, ',' ORDER BY r.id) FROM recipients r
                         WHERE r.event_id = m.event_id), '')
  || chr(9) || m.subject
  || chr(9) || m.message_id
  || chr(9) || m.event_id
  || chr(9) || m.attachments AS line,
  m.summary, m.deleted_at
FROM messages m
""",
}


def _chain_columns() -> list[sa.Column[object]]:
    return [sa.Column("chain_seq", sa.BigInteger(), nullable=True),
            sa.Column("chain_hash", sa.String(64), nullable=True)]


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for column in (
        sa.Column("direction", sa.String(8), nullable=False, server_default="inbound"),
        sa.Column("header_from", sa.String(998), nullable=False, server_default=""),
        sa.Column("header_to", sa.Text(), nullable=False, server_default=""),
        sa.Column("header_cc", sa.Text(), nullable=False, server_default=""),
        sa.Column("header_date", sa.String(200), nullable=False, server_default=""),
        sa.Column("raw_sha256", sa.String(64), nullable=True),
        *_chain_columns(),
        sa.Column("deleted_at", TS, nullable=True),
    ):
        op.add_column("messages", column)
    op.execute(
        "UPDATE messages SET direction = CASE WHEN relay THEN 'outbound' "
        "WHEN client_ip IS NULL THEN 'local' ELSE 'inbound' END"
    )
    op.create_index("ix_messages_direction_received", "messages", ["direction", "received_at"])
    op.create_index("ix_messages_category_received", "messages", ["category", "received_at"])
    op.create_index("ix_messages_message_id", "messages", [sa.text("lower(message_id)")])
    op.create_index("ix_messages_host_chain_seq", "messages", ["host", "chain_seq"], unique=True)

    op.create_table(
        "parts",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(100), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("detected_type", sa.String(255), nullable=True),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("extension", sa.String(32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["messages.event_id"],
                                name="fk_parts_event_id_messages", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_parts"),
    )
    op.create_index("ix_parts_event_id", "parts", ["event_id"])
    op.create_index("ix_parts_filename_event", "parts", [sa.text("lower(filename)"), "event_id"])
    op.create_index("ix_parts_extension_event", "parts", ["extension", "event_id"])
    op.create_index("ix_parts_content_type_event", "parts", ["content_type", "event_id"])
    op.create_index("ix_parts_detected_type_event", "parts", ["detected_type", "event_id"])

    op.create_index("ix_findings_name_event", "findings", [sa.text("lower(name)"), "event_id"])
    op.create_index("ix_findings_scanner_event", "findings", ["scanner", "event_id"])

    op.create_table(
        "dlp_findings",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("detector", sa.String(200), nullable=False),
        sa.Column("confidence", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("location", sa.String(1000), nullable=False),
        sa.Column("evidence", sa.String(1000), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["messages.event_id"],
                                name="fk_dlp_findings_event_id_messages", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_dlp_findings"),
    )
    op.create_index("ix_dlp_findings_event_id", "dlp_findings", ["event_id"])
    op.create_index("ix_dlp_findings_rule_event", "dlp_findings", ["rule", "event_id"])

    op.create_table(
        "quarantine_entries",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("folder", sa.String(32), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["messages.event_id"],
                                name="fk_quarantine_entries_event_id_messages", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", name="pk_quarantine_entries"),
    )
    op.create_index("ix_quarantine_entries_folder_received", "quarantine_entries",
                    ["folder", "received_at"])
    op.execute(
        "INSERT INTO quarantine_entries (event_id, folder, received_at, reason, state, updated_at) "
        f"SELECT event_id, {_FOLDER_CASE}, received_at, reason, 'quarantined', received_at "
        "FROM messages WHERE action = 'quarantine'"
    )

    op.create_table(
        "queue_failures",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("ref_event_id", sa.String(36), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        *_chain_columns(),
        sa.PrimaryKeyConstraint("event_id", name="pk_queue_failures"),
    )
    op.create_index("ix_queue_failures_ref_event_id", "queue_failures", ["ref_event_id"])
    op.create_index("ix_queue_failures_host_chain_seq", "queue_failures", ["host", "chain_seq"],
                    unique=True)
    # The queue_failed events of older rows are not kept: one stands in for each, under
    # the message's own id (a replayed real event adds a second row, which is harmless).
    op.execute(
        "INSERT INTO queue_failures (event_id, ref_event_id, time, host, exit_code) "
        "SELECT event_id, event_id, received_at, host, coalesce(queue_exit_code, 0) "
        "FROM messages WHERE queue_status = 'failed'"
    )

    op.create_table(
        "deletions",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("ref_event_id", sa.String(36), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=True),
        sa.Column("message_hash", sa.String(64), nullable=True),
        *_chain_columns(),
        sa.PrimaryKeyConstraint("event_id", name="pk_deletions"),
        sa.UniqueConstraint("ref_event_id", name="uq_deletions_ref_event_id"),
    )
    op.create_index("ix_deletions_host_chain_seq", "deletions", ["host", "chain_seq"], unique=True)

    op.create_table(
        "chain_heads",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("host", name="pk_chain_heads"),
    )

    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(36), nullable=False),
        sa.Column("matter", sa.String(200), nullable=False),
        sa.Column("custodians", sa.Text(), nullable=False),
        sa.Column("since", TS, nullable=True),
        sa.Column("until", TS, nullable=True),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("released_by", sa.String(255), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.Column("release_event_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("hold_id", name="pk_holds"),
    )
    op.create_index("ix_holds_matter", "holds", ["matter"])

    op.create_table(
        "exports",
        sa.Column("export_id", sa.String(36), nullable=False),
        sa.Column("matter", sa.String(200), nullable=False),
        sa.Column("hold_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("tool_version", sa.String(64), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("out_dir", sa.Text(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("custody_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("export_id", name="pk_exports"),
    )
    op.create_index("ix_exports_matter", "exports", ["matter"])
    op.create_table(
        "export_items",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("export_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("doc_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["export_id"], ["exports.export_id"],
                                name="fk_export_items_export_id_exports", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_export_items"),
    )
    op.create_index("ix_export_items_export_id", "export_items", ["export_id"])
    op.create_index("ix_export_items_event_id", "export_items", ["event_id"])

    op.execute(_VIEW_SQL.get(dialect, _VIEW_SQL["postgresql"]))

    if op.get_context().as_sql:
        op.execute("-- rows already in messages are not sealed into the hash chain by --sql "
                   "output; run `qscan db upgrade` online to seal them")
    else:
        _seal_existing(op.get_bind())


def _utc(value: object) -> datetime:
    if isinstance(value, str):  # SQLite without type information
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seal_existing(conn: sa.Connection) -> None:
    """Chain the rows written before this revision, per host, in journal order.

    Plain SQL with the column names of this revision: later revisions may
    change the models, never what this step saw.
    """
    names = [name for name, _ in canonical.MESSAGE]
    messages = conn.execute(sa.text(
        f"SELECT {', '.join(names)}, position FROM messages ORDER BY host, position, event_id"
    )).mappings().all()
    failures = conn.execute(sa.text(
        "SELECT event_id, ref_event_id, time, host, exit_code FROM queue_failures "
        "ORDER BY host, time, event_id"
    )).mappings().all()
    if not messages:
        return
    recipients: dict[str, list[dict[str, object]]] = {}
    for row in conn.execute(sa.text("SELECT event_id, address, domain FROM recipients ORDER BY id")
                            ).mappings():
        recipients.setdefault(row["event_id"], []).append(dict(row))
    findings: dict[str, list[dict[str, object]]] = {}
    for row in conn.execute(sa.text(
        "SELECT event_id, scanner, verdict, name, score, detail, duration_ms FROM findings "
        "ORDER BY id"
    )).mappings():
        findings.setdefault(row["event_id"], []).append(dict(row))

    heads: dict[str, tuple[int, str]] = {}
    for row in messages:
        values = dict(row)
        values["received_at"] = _utc(values["received_at"])
        values["relay"] = bool(values["relay"])
        host = values["host"]
        seq, prev = heads.get(host, (0, canonical.GENESIS))
        children = {"recipients": recipients.get(values["event_id"], []),
                    "findings": findings.get(values["event_id"], [])}
        digest = canonical.link(prev, canonical.encode("message", host, seq + 1, values, children))
        conn.execute(sa.text("UPDATE messages SET chain_seq = :s, chain_hash = :h "
                             "WHERE event_id = :e"),
                     {"s": seq + 1, "h": digest, "e": values["event_id"]})
        heads[host] = (seq + 1, digest)
    for row in failures:
        values = dict(row)
        values["time"] = _utc(values["time"])
        host = values["host"]
        seq, prev = heads.get(host, (0, canonical.GENESIS))
        digest = canonical.link(prev, canonical.encode("queue_failed", host, seq + 1, values))
        conn.execute(sa.text("UPDATE queue_failures SET chain_seq = :s, chain_hash = :h "
                             "WHERE event_id = :e"),
                     {"s": seq + 1, "h": digest, "e": values["event_id"]})
        heads[host] = (seq + 1, digest)
    now = datetime.now(UTC)
    for host, (seq, digest) in heads.items():
        conn.execute(sa.text("INSERT INTO chain_heads (host, seq, hash, updated_at) "
                             "VALUES (:host, :seq, :hash, :now)"),
                     {"host": host, "seq": seq, "hash": digest, "now": now})


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.drop_table("export_items")
    op.drop_table("exports")
    op.drop_table("holds")
    op.drop_table("chain_heads")
    op.drop_table("deletions")
    op.drop_table("queue_failures")
    op.drop_table("quarantine_entries")
    op.drop_table("dlp_findings")
    op.drop_index("ix_findings_scanner_event", table_name="findings")
    op.drop_index("ix_findings_name_event", table_name="findings")
    op.drop_table("parts")
    for name in ("ix_messages_host_chain_seq", "ix_messages_message_id",
                 "ix_messages_category_received", "ix_messages_direction_received"):
        op.drop_index(name, table_name="messages")
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: rebuilding drops the old
    # table, and with foreign keys on that cascades into recipients and findings.
    for column in ("deleted_at", "chain_hash", "chain_seq", "raw_sha256", "header_date",
                   "header_cc", "header_to", "header_from", "direction"):
        op.drop_column("messages", column)
