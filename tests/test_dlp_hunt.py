"""`qscan dlp hunt`: today's rules over past mail from the journal, the archive maildir and Kafka,
findings recorded in SQL (SQLite and PostgreSQL), masked, with a progress bar."""

from __future__ import annotations

import json
import random
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
