"""Anchors: chain heads written outside the database, signed, and what verify makes of them.

An adversary who can rewrite the database (or the journal) recomputes the whole chain after
an edit, so the chain walk alone passes; the anchors written before must then name the
first entry that differs. Runs on SQLite and PostgreSQL through tests/compliance_site.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from compliance import anchor as a
from compliance import canonical
from compliance.verify import _stream
from ingest.journal_link import link
from qscan.cli import cli
from qscan.ops.anchors import AnchorWriter
from tests.compliance_site import Site, open_site
from tests.factories import make_event

HOST = "mx1.example.com"  # the events' journal host (SQL chain)
LOCAL = "admin.example.com"  # the site's own host (its journal)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "anchor.key", tmp_path / "anchor.pub"
    a.generate_keys(private, public)
    return private, public


@pytest.fixture
def site(migrated_url: str, tmp_path: Path, keys: tuple[Path, Path]) -> Iterator[Site]:
    extra = (f'\n[anchor]\nwitness_file = "{tmp_path / "witness.jsonl"}"\n'
             f'signing_key = "{keys[0]}"\npublic_key = "{keys[1]}"\n'
             f'[summary_log]\ntarget = "file"\npath = "{tmp_path / "summary.log"}"\n')
    yield from open_site(migrated_url, tmp_path, extra)


@pytest.fixture
def anchored(site: Site) -> list[Any]:
    """Eight messages, anchored after the third and after the last."""
    evs = [make_event(subject=f"m{i}") for i in range(8)]
    writer = AnchorWriter(site.cfg, site.journal)
    site.add(*evs[:3])
    writer.write()
    site.add(*evs[3:])
    writer.write()
    return evs


def problems(site: Site, *args: str) -> list[tuple[str, str, str | None]]:
    result = site.cli("verify", "--json", "--no-files", *args)
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.output
    return [(p["kind"], p["where"], p["event_id"]) for p in report["problems"]]


def rechain_sql(site: Site, event_id: str, subject: str) -> None:
    """Alter one message and recompute every link after it and the head, as an attacker would."""
    site.sql("UPDATE messages SET subject = :s WHERE event_id = :e", s=subject, e=event_id)
    with site.engine.connect() as conn:
        entries = list(_stream(conn, "message", HOST))
    prev = canonical.GENESIS
    for e in entries:
        digest = canonical.link(prev, canonical.encode("message", HOST, e.seq, e.row, e.children))
        site.sql("UPDATE messages SET chain_hash = :h WHERE event_id = :e", h=digest,
                 e=e.event_id)
        prev = digest
    site.sql("UPDATE chain_heads SET hash = :h WHERE host = :host", h=prev, host=HOST)


def rechain_journal(site: Site, seq: int, body: bytes) -> None:
    """Alter one journal event and recompute every link from it to the head."""
    db = sqlite3.connect(site.journal.path, isolation_level=None)
    try:
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq))
        rows = db.execute("SELECT seq, event_id, type, appended, body, raw, prev FROM events "
                          "WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
        prev = rows[0][6]
        for s, event_id, typ, appended, data, raw, _ in rows:
            digest = link(prev, s, appended, event_id, typ, data, raw)
            db.execute("UPDATE events SET prev = ?, chain = ? WHERE seq = ?", (prev, digest, s))
            prev = digest
    finally:
        db.close()


def test_anchors_go_everywhere_configured_and_verify_clean(site: Site, anchored: list[Any],
                                                           tmp_path: Path) -> None:
    lines = (tmp_path / "witness.jsonl").read_text().splitlines()
    assert len(lines) == 2
    second = json.loads(lines[1])
    assert second["sql"][HOST]["seq"] == 8 and second["journal"][LOCAL]["seq"] == 9
    assert second["trail"]["sql"][HOST]["from"] == 4 and len(second["trail"]["sql"][HOST]["h"]) == 5
    assert a.VerifyKey(site.cfg.anchor.public_key).valid(second)  # type: ignore[arg-type]
    logged = [x for x in (tmp_path / "summary.log").read_text().splitlines()
              if x.startswith("anchor {")]
    assert len(logged) == 2 and "trail" not in logged[1] and '"sig"' in logged[1]
    kinds = [e.type for e in site.journal.read(0, 100, with_raw=False)]
    assert kinds.count("chain.anchored") == 2  # the relay carries these to Kafka
    assert problems(site) == []


def test_a_recomputed_sql_chain_is_named_at_the_first_altered_row(
        site: Site, anchored: list[Any]) -> None:
    rechain_sql(site, anchored[5].event_id, "nothing to see")
    assert problems(site, "--no-log") == [("altered-row", f"messages {HOST}#6",
                                           anchored[5].event_id)]


def test_a_recomputed_journal_chain_is_named_at_the_first_altered_event(
        site: Site, anchored: list[Any]) -> None:
    entry = site.journal.read(1, 1, with_raw=False)[0]  # seq 2
    obj = json.loads(entry.body)
    obj["action"] = "drop"
    rechain_journal(site, 2, json.dumps(obj).encode())
    found = problems(site)
    assert ("altered-event", f"journal {LOCAL}#2", entry.event_id) in found
    assert [f for f in found if f[0].endswith("-event")] == [
        ("altered-event", f"journal {LOCAL}#2", entry.event_id)]


def test_an_unsigned_anchor_is_refused_when_a_key_is_configured(
        site: Site, anchored: list[Any], tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"heads": {HOST: {"seq": 8, "hash": "1" * 64}}}))
    assert problems(site, "--anchor", str(saved)) == [("anchor", str(saved), None)]


def test_a_forged_anchor_is_reported_not_used(site: Site, anchored: list[Any],
                                              tmp_path: Path) -> None:
    witness = tmp_path / "witness.jsonl"
    record = json.loads(witness.read_text().splitlines()[-1])
    record["sql"][HOST]["hash"] = "0" * 64  # someone covering a rewrite by editing the anchor
    with witness.open("a") as f:
        f.write(json.dumps(record) + "\n")
    assert problems(site) == [("anchor", f"{witness}:3", None)]


def test_without_a_trail_the_range_is_named(migrated_url: str, tmp_path: Path) -> None:
    for plain in open_site(migrated_url, tmp_path / "plain"):  # no keys, no witness
        evs = [make_event(subject=f"m{i}") for i in range(8)]
        plain.add(*evs)
        saved = tmp_path / "saved.json"
        assert plain.cli("verify", "--save-anchor", str(saved)).exit_code == 0
        rechain_sql(plain, evs[5].event_id, "nothing to see")
        assert problems(plain, "--no-log") == []  # the chain alone cannot tell
        found = problems(plain, "--no-log", "--anchor", str(saved))
        assert found == [("altered-row", f"messages {HOST}#1-#8", None)]


def test_the_summary_log_serves_as_an_anchor_source(site: Site, anchored: list[Any],
                                                     tmp_path: Path) -> None:
    os.unlink(tmp_path / "witness.jsonl")
    site.sql("DELETE FROM messages WHERE chain_seq = 8")
    site.sql("UPDATE chain_heads SET seq = 7, hash = (SELECT chain_hash FROM messages "
             "WHERE chain_seq = 7)")
    assert problems(site, "--no-log") == []  # the chain alone cannot tell
    assert problems(site, "--no-log", "--anchor", str(tmp_path / "summary.log")) == [
        ("deleted-row", f"{HOST}#8", None)]


def test_cli_keygen_and_write(site: Site, tmp_path: Path) -> None:
    private, public = tmp_path / "k" / "a.key", tmp_path / "k" / "a.pub"
    private.parent.mkdir()
    runner = CliRunner()
    made = runner.invoke(cli, ["anchor", "keygen", "--private", str(private),
                               "--public", str(public)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    again = runner.invoke(cli, ["anchor", "keygen", "--private", str(private),
                                "--public", str(public)])
    assert again.exit_code == 1 and "not overwritten" in again.output
    site.add(make_event())
    cfg_file = tmp_path / "qscan.toml"
    cfg_file.write_text(f'data_dir = "{site.root}"\n[sql]\nurl = "{site.url}"\n'
                        f'[daemon]\nhostname = "{LOCAL}"\n[anchor]\nsigning_key = "{private}"\n'
                        '[summary_log]\ntarget = "none"\n')
    wrote = runner.invoke(cli, ["-c", str(cfg_file), "anchor", "write", "--json"])
    assert wrote.exit_code == 0, wrote.output
    record = json.loads(wrote.stdout)
    assert record["sql"][HOST]["seq"] == 1 and a.VerifyKey(public).valid(record)
    ok = runner.invoke(cli, ["-c", str(cfg_file), "verify", "--no-files", "--anchor-key",
                             str(public)])
    assert ok.exit_code == 0, ok.output


SUPERVISE = r'''
import logging, os, signal, sys, threading
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
import qscan.ops.supervisor as sup
from qscan.config import parse_config
from pathlib import Path
cfg_path = Path(sys.argv[1])
cfg = parse_config(cfg_path.read_text(), cfg_path)
sup.components = lambda cfg, path: [
    sup.Child("idle", [sys.executable, "-c", "import time; time.sleep(60)"])]
threading.Timer(3.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
sys.exit(sup.supervise(cfg, str(cfg_path)))
'''


def test_qscan_run_anchors_periodically_and_at_shutdown(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ingest.journal import Journal

    with Journal(tmp_path / "journal.db") as j:
        j.append("e1", "message.scanned", b'{"n":1}')
    witness = tmp_path / "witness.jsonl"
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nhostname = "{LOCAL}"\n'
                   '[consumers]\nenabled = []\n[summary_log]\ntarget = "none"\n'
                   f'[anchor]\ninterval_minutes = 0.02\nwitness_file = "{witness}"\n')
    res = subprocess.run([sys.executable, "-c", SUPERVISE, str(cfg)], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    records = [json.loads(x) for x in witness.read_text().splitlines()]
    assert len(records) >= 3  # every 1.2 s for 3.5 s, then once more at shutdown
    # each anchor is itself a journal event, so the next one anchors a longer journal
    assert [r["journal"][LOCAL]["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["sql"] == {} for r in records)  # no summaries consumer here: journal only


def test_a_restarted_writer_trails_from_its_last_journal_anchor(migrated_url: str,
                                                                 tmp_path: Path) -> None:
    for plain in open_site(migrated_url, tmp_path / "plain"):  # no witness file
        plain.add(*[make_event() for _ in range(3)])
        AnchorWriter(plain.cfg, plain.journal).write()
        plain.add(*[make_event() for _ in range(2)])
        record = AnchorWriter(plain.cfg, plain.journal).write()  # as after a restart
        assert record["trail"]["sql"][HOST] == {"from": 4, "h": record["trail"]["sql"][HOST]["h"]}
        assert len(record["trail"]["sql"][HOST]["h"]) == 2


def test_qscan_run_refuses_an_unreadable_signing_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[consumers]\nenabled = []\n'
                   f'[anchor]\nsigning_key = "{tmp_path / "missing.key"}"\n')
    res = subprocess.run([sys.executable, "-c", SUPERVISE, str(cfg)], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert res.returncode == 78, res.stderr
    assert "anchor signing key" in res.stderr and "starting idle" not in res.stderr
