"""`qscan dlp hunt`: today's rules over past mail from the journal, the archive maildir and Kafka,
findings recorded in SQL (SQLite and PostgreSQL), masked, with a progress bar."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from compliance import db
from ingest.event import MessageScanned, to_json
from ingest.journal import Journal
from qscan.cli import cli
from tests.dlp_docs import mail, pdf
from tests.dlp_samples import card, iban, iban_print, spaced
from tests.factories import make_event

RNG = random.Random(4242)
CARDS = [card(RNG, "52", 16) for _ in range(6)]
IBAN = iban(RNG, "NL")
RULES = """
[[rule]]
id = "cards-out"
detectors = ["payment_card"]
direction = "outbound"
min_count = 2
action = "quarantine"

[[rule]]
id = "iban"
detectors = ["iban"]
action = "monitor"
"""


def nov(day: int) -> datetime:
    return datetime(2026, 11, day, 10, 0, tzinfo=UTC)


def corpus() -> list[MessageScanned]:
    """Eight past messages: which the rules above should find, inside and outside the dates."""
    two_cards = mail(body=f"Card numbers: {spaced(CARDS[0])} and {spaced(CARDS[1])}")
    in_pdf = mail(attachments=[("cards.pdf", "application/pdf", pdf([f"card {spaced(CARDS[2])}",
                                                                        f"card {spaced(CARDS[3])}"]))])
    return [
        make_event(raw=two_cards, relay=True, when=nov(10), sender="alice@example.com"),  # cards-out
        make_event(raw=two_cards, relay=False, when=nov(11)),  # inbound: no rule
        make_event(raw=in_pdf, relay=True, when=nov(12), sender="carol@example.com"),  # cards-out (pdf)
        make_event(raw=mail(body=f"IBAN {iban_print(IBAN)}"), when=nov(13)),  # iban
        make_event(raw=mail(body="Lunch on Friday?"), when=nov(14)),  # nothing
        make_event(raw=mail(body=f"one card {spaced(CARDS[4])}"), relay=True, when=nov(15)),  # below min_count
        make_event(raw=two_cards, relay=True, when=nov(2)),  # before --since
        make_event(raw=two_cards, relay=True, when=nov(29)),  # after --until
    ]


def write_journal(path: Path, events: list[MessageScanned]) -> None:
    with Journal(path) as j:
        for ev in events:
            j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)


def setup(tmp_path: Path, url: str, extra: str = "") -> tuple[Path, Path, list[MessageScanned]]:
    db.upgrade(url)
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{url}"\n[summary_log]\ntarget = "none"\n{extra}')
    rules = tmp_path / "dlp.toml"
    rules.write_text(RULES)
    events = corpus()
    write_journal(tmp_path / "journal.db", events)
    return cfg, rules, events


def sql(url: str, query: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(query)).mappings()]
    finally:
        engine.dispose()


def assert_no_full_values(rows: list[dict[str, object]]) -> None:
    blob = json.dumps(rows, default=str)
    for number in CARDS:
        assert number not in blob and spaced(number) not in blob
    assert IBAN not in blob and iban_print(IBAN) not in blob


def test_hunt_over_the_journal_records_masked_findings(db_url: str, tmp_path: Path) -> None:
    cfg, rules, events = setup(tmp_path, db_url)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--since", "2026-11-05",
                                   "--until", "2026-11-20", "--progress"])
    assert out.exit_code == 0, out.output
    assert "6 messages examined, 3 matched, 3 findings, 0 unreadable, 2 outside the selection" in out.output
    assert "dlp hunt" in out.output and "8/8" in out.output  # the progress bar, to the end
    [hunt] = sql(db_url, "SELECT * FROM dlp_hunts")
    assert (hunt["state"], hunt["examined"], hunt["matched"], hunt["findings"]) == ("finished", 6, 3, 3)
    assert hunt["source"] == "journal" and len(str(hunt["rules_sha256"])) == 64
    assert json.loads(str(hunt["query"]))["since"].startswith("2026-11-05")
    rows = sql(db_url, "SELECT * FROM dlp_hunt_findings ORDER BY received_at")
    got = [(r["event_id"], r["rule"], r["detector"], r["count"], r["direction"]) for r in rows]
    assert got == [(events[0].event_id, "cards-out", "payment_card", 2, "outbound"),
                   (events[2].event_id, "cards-out", "payment_card", 2, "outbound"),
                   (events[3].event_id, "iban", "iban", 1, "inbound")]
    assert rows[0]["evidence"] == f"{CARDS[0][:4]} **** **** {CARDS[0][-4:]}, " \
                                  f"{CARDS[1][:4]} **** **** {CARDS[1][-4:]}"
    assert rows[1]["location"] == "2/cards.pdf" and rows[0]["notify"] and not rows[2]["notify"]
    assert_no_full_values(rows)


def test_hunt_filters_dry_run_and_json(tmp_path: Path) -> None:
    cfg, rules, _events = setup(tmp_path, f"sqlite:///{tmp_path / 'qscan.db'}")
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--dry-run", "--json",
                                   "--direction", "outbound", "--sender", "carol@*"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output)
    assert (stats["examined"], stats["matched"], stats["by_rule"]) == (1, 1, {"cards-out": 1})
    assert sql(f"sqlite:///{tmp_path / 'qscan.db'}", "SELECT * FROM dlp_hunts") == []
    bad = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--since", "soon"])
    assert bad.exit_code == 2 and "is not a date" in bad.output


def test_hunt_needs_the_schema_and_a_good_rules_file(tmp_path: Path) -> None:
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n')
    write_journal(tmp_path / "journal.db", corpus()[:1])
    rules = tmp_path / "dlp.toml"
    rules.write_text(RULES)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules)])
    assert out.exit_code == 1 and "db upgrade" in out.output
    rules.write_text("[[rule]]\nid = 'x'\ndetectors = ['nope']\n")
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules)])
    assert out.exit_code == 1 and "detector 'nope'" in out.output


@pytest.mark.integration
def test_hunt_over_the_archive_maildir(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'qscan.db'}"
    cfg, rules, events = setup(tmp_path, url)
    runner = CliRunner()
    out = runner.invoke(cli, ["-c", str(cfg), "consume", "archive", "--once"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--source", "archive",
                              "--since", "2026-11-05", "--until", "2026-11-20", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "6 messages examined, 3 matched, 3 findings, 0 unreadable" in out.output
    rows = sql(url, "SELECT event_id, rule, direction FROM dlp_hunt_findings ORDER BY received_at")
    assert [(r["event_id"], r["rule"], r["direction"]) for r in rows] == [
        (events[0].event_id, "cards-out", "outbound"), (events[2].event_id, "cards-out", "outbound"),
        (events[3].event_id, "iban", "inbound")]
    [hunt] = sql(url, "SELECT source, state FROM dlp_hunts")
    assert hunt == {"source": "archive", "state": "finished"}


@pytest.mark.integration
def test_hunt_over_kafka(broker: object, tmp_path: Path) -> None:
    from ingest.kafka_log import KafkaSettings, Relay, init_topic
    from ingest.log import Stop

    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    url = f"sqlite:///{tmp_path / 'qscan.db'}"
    cfg, rules, events = setup(tmp_path, url, f'[log.kafka]\nbootstrap_servers = ["{bootstrap}"]\n'
                                             "partitions = 2\nrequest_timeout_ms = 5000\n")
    settings = KafkaSettings(bootstrap_servers=[bootstrap], partitions=2, request_timeout_ms=5000)
    init_topic(settings)
    with Journal(tmp_path / "journal.db") as j:
        Relay(j, settings, "mx1").run(Stop(), once=True)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--source", "kafka",
                                   "--since", "2026-11-05", "--until", "2026-11-20", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "6 messages examined, 3 matched, 3 findings" in out.output
    rows = sql(url, "SELECT event_id, rule FROM dlp_hunt_findings")
    assert sorted((r["event_id"], r["rule"]) for r in rows) == sorted([
        (events[0].event_id, "cards-out"), (events[2].event_id, "cards-out"), (events[3].event_id, "iban")])


# -- bookkeeping: interrupted and failed hunts leave a true row ------------------------------------
def big_journal(path: Path, n: int) -> None:
    """``n`` outbound messages with two cards each: every one is a cards-out finding."""
    two_cards = mail(body=f"Card numbers: {spaced(CARDS[0])} and {spaced(CARDS[1])}")
    with Journal(path) as j:
        for i in range(n):
            ev = make_event(raw=two_cards, relay=True, when=nov(1 + i % 28))
            j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)


def hunt_store(url: str) -> tuple[object, str]:
    from compliance.dlp_hunts import HuntStore
    from ingest.ids import uuid7

    store = HuntStore(url)
    hunt_id = str(uuid7())
    store.start(hunt_id, actor="test@host", source="journal", rules_path="dlp.toml", rules_sha256="0" * 64,
                query={})
    return store, hunt_id


def test_stopped_hook_and_keyboard_interrupt_flush_pending_findings(db_url: str, tmp_path: Path) -> None:
    from compliance.hunt import BATCH, HuntFilter, journal_source, run_hunt
    from scanners.dlp.engine import DlpEngine
    from scanners.dlp.rules import parse_rules

    db.upgrade(db_url)
    journal = tmp_path / "journal.db"
    big_journal(journal, BATCH + 50)
    engine = DlpEngine(parse_rules(RULES))
    # the stopped hook: asked to stop after BATCH + 30 messages, one batch written and 30 pending
    store, hunt_id = hunt_store(db_url)
    _total, items = journal_source(journal)
    seen = 0

    def stopped() -> bool:
        return seen >= BATCH + 30

    def advance(_stats: object) -> None:
        nonlocal seen
        seen += 1

    stats = run_hunt(engine, items, store, filt=HuntFilter(), hunt_id=hunt_id,  # type: ignore[arg-type]
                     advance=advance, stopped=stopped)
    assert (stats.state, stats.examined, stats.matched, stats.findings) == ("interrupted", BATCH + 29,
                                                                            BATCH + 29, BATCH + 29)
    written = store.finish(hunt_id, state=stats.state, examined=stats.examined,  # type: ignore[attr-defined]
                           matched=stats.matched, unreadable=0)
    assert written == BATCH + 29
    [row] = sql(db_url, f"SELECT state, examined, findings FROM dlp_hunts WHERE hunt_id = '{hunt_id}'")
    assert row == {"state": "interrupted", "examined": BATCH + 29, "findings": BATCH + 29}

    # Ctrl-C arriving while the source is read: what was evaluated is written, then 'interrupted'
    store, hunt_id = hunt_store(db_url)
    _total, items = journal_source(journal)

    def interrupted() -> Iterator[object]:
        for i, item in enumerate(items):
            if i == BATCH + 10:
                raise KeyboardInterrupt
            yield item

    stats = run_hunt(engine, interrupted(), store, filt=HuntFilter(), hunt_id=hunt_id)  # type: ignore[arg-type]
    assert (stats.state, stats.examined, stats.findings) == ("interrupted", BATCH + 10, BATCH + 10)
    assert len(store.findings(hunt_id)) == BATCH + 10  # type: ignore[attr-defined]
    store.close()  # type: ignore[attr-defined]


def test_a_failing_source_marks_the_hunt_failed_with_findings_so_far(db_url: str, tmp_path: Path) -> None:
    from compliance.hunt import BATCH, HuntFailed, HuntFilter, journal_source, run_hunt
    from scanners.dlp.engine import DlpEngine
    from scanners.dlp.rules import parse_rules

    db.upgrade(db_url)
    journal = tmp_path / "journal.db"
    big_journal(journal, BATCH + 50)
    store, hunt_id = hunt_store(db_url)
    _total, items = journal_source(journal)

    def failing() -> Iterator[object]:
        for i, item in enumerate(items):
            if i == BATCH + 20:
                raise OSError(5, "Input/output error", "journal.db")
            yield item

    with pytest.raises(HuntFailed) as caught:
        run_hunt(DlpEngine(parse_rules(RULES)), failing(), store,  # type: ignore[arg-type]
                 filt=HuntFilter(), hunt_id=hunt_id)
    stats = caught.value.stats
    assert stats.state == "failed" and "Input/output error" in stats.error
    assert isinstance(caught.value.__cause__, OSError)
    assert stats.findings == BATCH + 20 == len(store.findings(hunt_id))  # type: ignore[attr-defined]
    store.close()  # type: ignore[attr-defined]


def test_cli_hunt_that_fails_says_so_and_marks_the_row(db_url: str, tmp_path: Path) -> None:
    """The database refuses the findings (a trigger stands in for a full disk or a revoked grant):
    the row says failed, with the error text; the command says so and exits 1."""
    cfg, rules, _ = setup(tmp_path, db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        if db_url.startswith("sqlite"):
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON dlp_hunt_findings "
                              "BEGIN SELECT RAISE(ABORT, 'quota exceeded for dlp'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'quota exceeded for dlp'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON dlp_hunt_findings "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    engine.dispose()
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--no-progress"])
    assert out.exit_code == 1, out.output
    assert "failed after 8 messages (0 findings recorded; state failed in dlp_hunts)" in out.output
    assert "quota exceeded for dlp" in out.output and "Traceback" not in out.output
    [row] = sql(db_url, "SELECT state, error, examined, findings, finished_at FROM dlp_hunts")
    assert row["state"] == "failed" and "quota exceeded for dlp" in str(row["error"])
    assert (row["examined"], row["findings"]) == (8, 0) and row["finished_at"] is not None


@pytest.mark.integration
def test_sigint_mid_hunt_keeps_the_findings_and_says_interrupted(tmp_path: Path) -> None:
    """A real `qscan dlp hunt` process sent SIGINT once batches are in SQL: it stops after the
    current message, writes what is pending, closes its row as 'interrupted', exits 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'qscan.db'}"
    cfg, rules, _ = setup(tmp_path, url)
    journal = tmp_path / "journal.db"
    journal.unlink()
    big_journal(journal, 4000)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("qscan")), "-c", str(cfg), "dlp", "hunt", "--rules",
                             str(rules), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = sql(url, "SELECT count(*) AS n FROM dlp_hunt_findings")
            if int(str(rows[0]["n"])) >= 400:  # two batches written
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    [row] = sql(url, "SELECT hunt_id, state, examined, matched, findings, error FROM dlp_hunts")
    written = sql(url, "SELECT count(*) AS n FROM dlp_hunt_findings")[0]["n"]
    assert row["state"] == "interrupted" and row["error"] is None
    # every examined message had its finding written, the pending ones included
    assert row["examined"] == row["matched"] == row["findings"] == written
    assert 400 <= int(str(written)) < 4000
    assert f"hunt {row['hunt_id']} interrupted after {written} messages" in err.decode()
    assert f"{written} findings" in out.decode()


# -- the archive source: no symlinks, filters before reading -----------------------------------------
@pytest.mark.integration
def test_archive_hunt_never_follows_a_planted_symlink_and_filters_early(tmp_path: Path) -> None:
    import os

    from archive.copies import copy_name, received_of
    from archive.hunt import archive_source
    from compliance.hunt import HuntFilter

    url = f"sqlite:///{tmp_path / 'qscan.db'}"
    cfg, rules, _events = setup(tmp_path, url)
    assert CliRunner().invoke(cli, ["-c", str(cfg), "consume", "archive", "--once"]).exit_code == 0
    new = tmp_path / "archive" / "new"
    # a file outside the maildir full of card numbers, and a link to it named like a copy
    secret = tmp_path / "secret.eml"
    secret.write_bytes(mail(body=f"Card numbers: {spaced(CARDS[4])} {spaced(CARDS[5])}"))
    link = new / copy_name("0193aaaa-0000-7000-8000-000000000001", nov(12))
    os.symlink(secret, link)
    assert received_of(link.name) == nov(12)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "hunt", "--rules", str(rules), "--source", "archive",
                                   "--since", "2026-11-05", "--until", "2026-11-20", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "6 messages examined, 3 matched, 3 findings, 1 unreadable" in out.output
    rows = sql(url, "SELECT evidence FROM dlp_hunt_findings")
    assert not any(CARDS[4][-4:] in str(r["evidence"]) for r in rows)  # the link target was never read
    # outside the dates: the file is not even opened (a second link, dated 2 November, would be
    # reported unreadable if it were)
    early = new / copy_name("0193aaaa-0000-7000-8000-000000000002", nov(2))
    os.symlink(secret, early)
    _n, items = archive_source(tmp_path / "archive", tmp_path / "quarantine",
                               HuntFilter(since=nov(5), until=nov(20)))
    unreadable = [getattr(i, "where", "") for i in items if getattr(i, "where", "")]
    assert unreadable == [str(link)]
    _n, items = archive_source(tmp_path / "archive", tmp_path / "quarantine", HuntFilter())
    assert sorted(getattr(i, "where", "") for i in items if getattr(i, "where", "")) == sorted(
        [str(link), str(early)])  # without dates both are opened, and refused
    # a sender outside the selection: the envelope at the file's tail decides, the message is not read
    _n, items = archive_source(tmp_path / "archive", tmp_path / "quarantine",
                               HuntFilter(sender="nobody@*"))
    assert [i for i in items if getattr(i, "sender", None)] == []
