"""`qscan consume index` then `qscan discover search`, through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from ingest.event import DiscoverySearched, from_json, to_json
from ingest.journal import Journal
from qscan.cli import cli
from tests.dlp_docs import mail, pdf
from tests.factories import make_event


def setup(tmp_path: Path, url: str) -> tuple[Path, list[str]]:
    from compliance import db

    db.upgrade(url)
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{url}"\n'
                   '[summary_log]\ntarget = "none"\n')
    events = [
        make_event(subject="Project Falcon", recipients=["ceo@example.com", "cfo@example.com"],
                   when=datetime(2026, 10, 3, tzinfo=UTC),
                   raw=mail(body="Wire transfer to Acme before Friday.", subject="Project Falcon")),
        make_event(subject="lunch", sender="bob@example.org", when=datetime(2026, 11, 4, tzinfo=UTC),
                   raw=mail(body="See attached.", subject="lunch", attachments=[
                       ("terms.pdf", "application/pdf", pdf(["Acme wire transfer terms"]))])),
        make_event(subject="other", when=datetime(2026, 11, 5, tzinfo=UTC),
                   raw=mail(body="nothing relevant", subject="other")),
    ]
    with Journal(tmp_path / "journal.db") as j:
        for ev in events:
            j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)
    return cfg, [ev.event_id for ev in events]


def test_consume_then_search(tmp_path: Path, migrated_url: str) -> None:
    cfg, ids = setup(tmp_path, migrated_url)
    runner = CliRunner()
    out = runner.invoke(cli, ["-c", str(cfg), "discover", "search", "acme"])
    assert out.exit_code == 0 and "index is empty" in out.stderr, out.output
    out = runner.invoke(cli, ["-c", str(cfg), "consume", "index", "--once"])
    assert out.exit_code == 0, out.output

    out = runner.invoke(cli, ["-c", str(cfg), "discover", "search", '"wire transfer" acme'])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("2 messages\n")
    assert "per month:\n         1  2026-10\n         1  2026-11" in out.output
    # FTS5 brackets a phrase whole, ts_headline each word of it
    assert re.search(r"\[wire(\] \[| )transfer\] to \[acme\]", out.output.lower())

    out = runner.invoke(cli, ["-c", str(cfg), "discover", "search", "attachment:acme",
                              "--format", "json", "--since", "2026-11-01"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["total"] == 1 and [h["event_id"] for h in doc["hits"]] == [ids[1]]
    assert {"address": "bob@example.org", "messages": 1} in doc["per_custodian"]

    out = runner.invoke(cli, ["-c", str(cfg), "discover", "search", "falcon OR lunch",
                              "--format", "csv", "--recipient", "CFO@example.com"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["event_id"] for r in rows] == [ids[0]]

    out = runner.invoke(cli, ["-c", str(cfg), "discover", "search", "acme AND (wire"])
    assert out.exit_code == 2
    assert "column 15" in out.output and "expected ')'" in out.output

    with Journal(tmp_path / "journal.db") as j:
        searches = [from_json(e.body, type_=e.type) for e in j.read(0, 100, with_raw=False)
                    if e.type == "discovery.searched"]
    assert [s.query for s in searches if isinstance(s, DiscoverySearched)] == [
        "acme", '"wire transfer" acme', "attachment:acme", "falcon OR lunch"]
    assert isinstance(searches[0], DiscoverySearched) and searches[0].total == 0
    searches = searches[1:]
    first = searches[0]
    assert isinstance(first, DiscoverySearched)
    assert first.total == 2 and "@" in first.actor and first.canonical == '"wire transfer" AND acme'
    assert isinstance(searches[2], DiscoverySearched)
    assert searches[2].filters == {"recipient": "CFO@example.com"}
