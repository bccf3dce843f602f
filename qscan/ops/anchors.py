"""Writing anchors: when, from which host, and to where (compliance/anchor.py has the format).

**Who writes them: the daemon master** (`qscan run`'s supervisor), every
``anchor.interval_minutes`` and once more at shutdown after its children
stopped, and ``qscan anchor write`` whenever run (cron on a host without
``qscan run``). The supervisor lives as long as the host takes mail, holds the
journal open already and, where the summaries consumer runs, can read the SQL
heads; a consumer would have to stop consuming to take them, and on the Kafka
path no single consumer sees every partition. So each host anchors its own
journal, and the host(s) running the summaries consumer also anchor the SQL
heads (every journal host's SQL chain).

Where each anchor goes, each independently (one failing does not stop the others):
1. the local journal, as a ``chain.anchored`` event - and so, by the relay, the
   Kafka topic when one is configured;
2. the witness file (``anchor.witness_file``), one JSON line, fsynced;
3. the summary log (syslog or its file), one line ``anchor {...}`` without the trail:
   syslog forwarded to a log host is a copy beyond this host.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from compliance import anchor as a
from ingest.event import ChainAnchored, to_json
from ingest.ids import uuid7
from ingest.journal import Journal
from ingest.summary_log import open_summary_log
from qscan.config import Config

log = logging.getLogger(__name__)


def anchors_sql(cfg: Config) -> bool:
    """This host anchors the SQL heads: it runs the summaries consumer."""
    return "summaries" in cfg.consumers.enabled


class AnchorWriter:
    def __init__(self, cfg: Config, journal: Journal) -> None:
        self.cfg = cfg
        self.journal = journal
        self.signer = a.Signer(cfg.anchor.signing_key) if cfg.anchor.signing_key else None
        witness = cfg.anchor.witness_file
        self.previous: dict[str, Any] | None = a.last_record(witness) if witness else None
        if self.previous is None:  # the last anchor this host wrote to its journal
            last = journal.last_of_type("chain.anchored")
            if last is not None:
                self.previous = json.loads(last.body).get("anchor")
        self.summary = open_summary_log(cfg.summary_log, cfg.summary_log_path)

    def write(self, now: datetime | None = None) -> dict[str, Any]:
        """Take the heads and write them everywhere configured; returns the record."""
        from sqlalchemy.exc import SQLAlchemyError

        from compliance.db import make_engine

        engine = make_engine(self.cfg.sql_url) if anchors_sql(self.cfg) else None
        try:
            try:
                doc = a.take(writer=self.cfg.hostname, engine=engine, journal=self.journal,
                             journal_host=self.cfg.hostname, now=now)
                trail = a.trail(doc, self.previous, engine=engine, journal=self.journal)
            except SQLAlchemyError as exc:  # the journal's head still leaves the host
                log.error("anchor: the SQL heads could not be read (%s); anchoring the "
                          "journal only", exc)
                doc = a.take(writer=self.cfg.hostname, engine=None, journal=self.journal,
                             journal_host=self.cfg.hostname, now=now)
                trail = a.trail(doc, self.previous, engine=None, journal=self.journal)
        finally:
            if engine is not None:
                engine.dispose()
        signed = self.signer.sign(doc) if self.signer else dict(doc)
        record = {**signed, "trail": trail}
        failures = []
        try:
            ev = ChainAnchored(event_id=str(uuid7()), time=now or datetime.now(UTC),
                               host=self.cfg.hostname, anchor=signed, trail=trail)
            self.journal.append(ev.event_id, ev.type, to_json(ev))
        except Exception as exc:
            failures.append(f"journal: {exc}")
        if self.cfg.anchor.witness_file is not None:
            try:
                a.witness_append(self.cfg.anchor.witness_file, record)
            except OSError as exc:
                failures.append(f"witness file {self.cfg.anchor.witness_file}: {exc}")
        try:
            self.summary.write(a.summary_line(signed))
        except OSError as exc:
            failures.append(f"summary log: {exc}")
        for failure in failures:
            log.error("anchor not written to the %s", failure)
        self.previous = record
        return record
