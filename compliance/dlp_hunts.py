"""Retro-hunt results in SQL: one row per hunt, one per (message, rule, detector) it found.

Why not ``dlp_findings``: that table holds what the inline scanner decided, as
children of the message row, and is sealed into the host's hash chain
(compliance.chain) - a hunt adding rows there months later would read as
tampering to ``qscan verify``. A hunt is a later, separate investigation with
its own rules file, so it gets its own tables (``compliance.models.hunts``):
``dlp_hunts`` (who ran which rules, over what, when, with what result) and
``dlp_hunt_findings``. No foreign
key to ``messages`` either: a hunt over the archive or Kafka may find mail the
SQL store never had (summaries consumer not run, or rows already expired).

Evidence is masked before it gets here, as everywhere in DLP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from compliance import db
from compliance.models import ADDRESS_LEN, DETAIL_LEN, DlpHunt, DlpHuntFinding
from scanners.text import display_safe

SOURCES = ("journal", "archive", "kafka")


def _clean(value: Any, limit: int) -> str:
    return display_safe(value, limit, ellipsis="")


def finding_rows(hunt_id: str, event_id: str, received_at: datetime | None, sender: str,
                 direction: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for one message's DLP records (the engine's ``Evaluation.records()``)."""
    rows = []
    for r in records:
        try:
            count = max(0, min(int(r.get("count") or 0), 2**31 - 1))
        except (TypeError, ValueError):
            count = 0
        rows.append({
            "hunt_id": hunt_id, "event_id": _clean(event_id, 36), "received_at": received_at,
            "sender": _clean(sender, ADDRESS_LEN), "direction": direction,
            "rule": _clean(r.get("rule"), 200), "detector": _clean(r.get("detector"), 200),
            "confidence": _clean(r.get("confidence"), 16), "count": count,
            "action": _clean(r.get("action"), 32), "location": _clean(r.get("location"), DETAIL_LEN),
            "evidence": _clean(r.get("evidence"), DETAIL_LEN), "notify": bool(r.get("notify")),
            "encrypted": bool(r.get("encrypted")),
        })
    return rows


class HuntStore:
    """Writes one hunt: its row first (state 'running'), findings in batches, totals at the end
    (``findings`` counted from the rows actually written, whatever stopped the hunt)."""

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)
        db.check_schema(self.engine)
        self._write = db.session_factory(self.engine, write=True)

    def close(self) -> None:
        self.engine.dispose()

    def start(self, hunt_id: str, *, actor: str, source: str, rules_path: str, rules_sha256: str,
              query: dict[str, Any]) -> None:
        with self._write.begin() as s:
            s.execute(insert(DlpHunt).values(
                hunt_id=hunt_id, started_at=datetime.now(UTC), finished_at=None, state="running", error=None,
                actor=_clean(actor, 255), source=source, rules_path=rules_path, rules_sha256=rules_sha256,
                query=json.dumps(query, sort_keys=True, default=str), examined=0, matched=0, findings=0,
                unreadable=0,
            ))

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self._write.begin() as s:
                s.execute(insert(DlpHuntFinding), list(rows))

    def finish(self, hunt_id: str, *, state: str, examined: int, matched: int, unreadable: int,
               error: str | None = None) -> int:
        """Close the hunt's row; returns its findings, counted in ``dlp_hunt_findings``."""
        with self._write.begin() as s:
            findings = s.execute(select(func.count()).select_from(DlpHuntFinding)
                                 .where(DlpHuntFinding.hunt_id == hunt_id)).scalar_one()
            s.execute(update(DlpHunt).where(DlpHunt.hunt_id == hunt_id).values(
                finished_at=datetime.now(UTC), state=state, examined=examined, matched=matched,
                findings=findings, unreadable=unreadable,
                error=_clean(error, 1000) if error else None))
        return int(findings)

    def hunt(self, hunt_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(DlpHunt).where(DlpHunt.hunt_id == hunt_id)).mappings().first()
        return dict(row) if row else None

    def findings(self, hunt_id: str) -> list[dict[str, Any]]:
        cols = [c for c in DlpHuntFinding.__table__.columns if c.key != "id"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(DlpHuntFinding.hunt_id == hunt_id)
                                .order_by(DlpHuntFinding.id)).mappings().all()
        return [dict(r) for r in rows]
