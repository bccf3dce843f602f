"""Audit search: every filter, the output formats, and the ``qscan db``/``audit`` CLI.

The store-backed tests run on SQLite and PostgreSQL (tests/pg.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from compliance import audit, db
from compliance.summaries import SummarySink
from ingest.event import Action, Category
from ingest.log import LogRecord
from qscan.cli.db import AUDIT_COLUMNS, _audit_cell, parse_when
from qscan.cli.db import audit as audit_group
from qscan.cli.db import db as db_group
from qscan.cli.output import render_table
from qscan.config import parse_config
from tests.factories import make_event, make_queue_failed
from tests.pg import DB_PARAMS, FreshDatabases


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, 11, day, hour, minute, second, tzinfo=UTC)


# name: (sender, recipients, subject, action, time)
CORPUS: dict[str, tuple[str, list[str], str, Action, datetime]] = {
    "e1": ("alice@example.com", ["bob@example.org"], "Quarterly report", Action.DELIVER, at(20, 10)),
    "e2": ("Bob@Example.ORG", ["alice@example.com", "carol@example.net"], "Re: Überweisung",
           Action.QUARANTINE, at(21, 9)),
    "e3": ("", ["alice@example.com"], "Delivery failure", Action.DELIVER, at(22)),
    "e4": ("mallory@evil.test", ["dave@Example.NET"], "=cmd|' /C calc'!A0", Action.REJECT,
           at(23, 23, 59, 59)),
    "e5": ("a_b%c@example.com", ["bob@example.org"], "100% off_sale", Action.DROP, at(24, 12)),
    "e6": ("sales@shop.example.com", ["bob@example.org"], "[red]promo[/red]", Action.DELIVER,
           at(25, 8)),
}


def populate(url: str, extra: list[Any] | None = None) -> dict[str, str]:
    """Project CORPUS into the store; returns name → event id."""
    events = {}
    for name, (sender, rcpts, subject, action, when) in CORPUS.items():
        category = Category.VIRUS if action == Action.QUARANTINE else Category.CLEAN
        attachments = [("promo.pdf", "application/pdf", 100)] if name == "e6" else None
        events[name] = make_event(sender=sender, recipients=rcpts, subject=subject, action=action,
                                  category=category, when=when, attachments=attachments)
    stream = [*events.values(), make_queue_failed(events["e6"], exit_code=53), *(extra or [])]
    sink = SummarySink(url)
    sink.apply([LogRecord(i, ev) for i, ev in enumerate(stream, 1)], len(stream))
    sink.close()
    return {name: ev.event_id for name, ev in events.items()}


@pytest.fixture(scope="module", params=DB_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Engine, dict[str, str]]]:
    databases = FreshDatabases(request.param, request, tmp_path_factory.mktemp("audit"))
    url = databases()
    ids = populate(url)
    engine = db.make_engine(url)
    yield engine, ids
    engine.dispose()
    databases.close()


def names(store: tuple[Engine, dict[str, str]], **filters: Any) -> list[str]:
    engine, ids = store
    by_id = {v: k for k, v in ids.items()}
    found = [by_id[r["event_id"]] for r in audit.search(engine, limit=None, **filters)]
    assert audit.count(engine, **filters) == len(found)
    return found


def test_everything_newest_first(store: Any) -> None:
    assert names(store) == ["e6", "e5", "e4", "e3", "e2", "e1"]


def test_result_fields(store: Any) -> None:
    engine, ids = store
    (r,) = audit.search(engine, subject="Überweisung")
    assert tuple(r) == audit.FIELDS
    assert r["event_id"] == ids["e2"]
    assert r["time"] == at(21, 9)
    assert r["recipients"] == ["alice@example.com", "carol@example.net"]  # a list, not one string
    assert (r["action"], r["category"], r["queue_status"]) == ("quarantine", "virus", "n/a")
    (promo,) = audit.search(engine, sender="sales@shop.example.com")
    assert promo["attachments"] == "promo.pdf"
    assert promo["queue_status"] == "failed"


@pytest.mark.parametrize(("sender", "expected"), [
    ("alice@example.com", ["e1"]),
    ("ALICE@Example.Com", ["e1"]),
    ("<alice@example.com>", ["e1"]),
    ("bob@example.org", ["e2"]),
    ("<>", ["e3"]),
    ("*@example.com", ["e5", "e1"]),
    ("*example.com", ["e6", "e5", "e1"]),
    ("alice*", ["e1"]),
    ("a_b%c@example.com", ["e5"]),
    ("*b%c*", ["e5"]),
    ("_lice@example.com", []),  # '_' and '%' are not wildcards
    ("%", []),
    ("nobody@example.com", []),
    ("alice", ["e1"]),  # no '@': the local part in any domain (alice@*), not nothing
    ("ALICE", ["e1"]),
    ("<alice>", ["e1"]),
])
def test_sender(store: Any, sender: str, expected: list[str]) -> None:
    assert names(store, sender=sender) == expected


@pytest.mark.parametrize(("recipient", "expected"), [
    ("BOB@example.org", ["e6", "e5", "e1"]),
    ("dave@example.net", ["e4"]),
    ("*@example.net", ["e4", "e2"]),
    ("carol*", ["e2"]),
])
def test_recipient(store: Any, recipient: str, expected: list[str]) -> None:
    assert names(store, recipient=recipient) == expected


@pytest.mark.parametrize(("domain", "expected"), [
    ("example.com", ["e5", "e3", "e2", "e1"]),  # sender's domain or any recipient's
    ("@EXAMPLE.COM", ["e5", "e3", "e2", "e1"]),
    ("example.net", ["e4", "e2"]),
    ("*.example.com", ["e6"]),
    ("evil.test", ["e4"]),
])
def test_domain(store: Any, domain: str, expected: list[str]) -> None:
    assert names(store, domain=domain) == expected


def test_date_range(store: Any) -> None:
    assert names(store, since=at(22)) == ["e6", "e5", "e4", "e3"]  # inclusive
    assert names(store, until=at(22)) == ["e2", "e1"]  # exclusive
    assert names(store, since=at(21), until=at(24)) == ["e4", "e3", "e2"]
    # an offset-aware bound is compared in UTC; a naive one is UTC
    assert names(store, since=datetime(2024, 11, 25, 9, 0, tzinfo=UTC) + timedelta(hours=-1)) == ["e6"]
    assert names(store, until=datetime(2024, 11, 20, 10, 0, 1)) == ["e1"]


@pytest.mark.parametrize(("subject", "expected"), [
    ("report", ["e1"]),
    ("REPORT", ["e1"]),
    ("überweisung", ["e2"]),  # non-ASCII case folding, on SQLite too
    ("100%", ["e5"]),
    ("off_sale", ["e5"]),
    ("0% off", ["e5"]),
    ("[red]", ["e6"]),
    ("no such subject", []),
])
def test_subject(store: Any, subject: str, expected: list[str]) -> None:
    assert names(store, subject=subject) == expected


def test_action_and_combined_filters(store: Any) -> None:
    assert names(store, action="quarantine") == ["e2"]
    assert names(store, action="deliver") == ["e6", "e3", "e1"]
    assert names(store, action="deliver", domain="example.com") == ["e3", "e1"]
    assert names(store, recipient="bob@example.org", since=at(21), subject="sale") == ["e5"]


def test_pagination(store: Any) -> None:
    engine, ids = store
    pages = [[r["event_id"] for r in audit.search(engine, limit=2, offset=o)] for o in (0, 2, 4, 6)]
    assert pages == [[ids["e6"], ids["e5"]], [ids["e4"], ids["e3"]], [ids["e2"], ids["e1"]], []]
    assert audit.count(engine) == 6
    assert len(audit.search(engine, limit=None)) == 6


def test_csv_parses_back(store: Any) -> None:
    engine, _ = store
    rows = audit.search(engine, limit=None)
    parsed = list(csv.DictReader(io.StringIO(audit.render_csv(rows))))
    assert [p["event_id"] for p in parsed] == [r["event_id"] for r in rows]
    for p, r in zip(parsed, rows, strict=True):
        assert datetime.fromisoformat(p["time"]) == r["time"]
        assert int(p["size"]) == r["size"]
        if r["subject"].startswith("="):  # formulas from mail are defused for spreadsheets
            assert p["subject"] == "'" + r["subject"]
        else:
            assert p["subject"] == r["subject"]
        assert p["recipients"] == ",".join(r["recipients"])  # one cell, comma-separated


def test_json_parses_back(store: Any) -> None:
    engine, _ = store
    rows = audit.search(engine, limit=None)
    parsed = json.loads(audit.render_json(rows))
    for p, r in zip(parsed, rows, strict=True):
        assert datetime.fromisoformat(p.pop("time")) == r["time"]
        assert p == {k: v for k, v in r.items() if k != "time"}


def test_table_shows_mail_text_literally(store: Any) -> None:
    engine, ids = store
    out = render_table(audit.search(engine, limit=None), AUDIT_COLUMNS, width=400, wide=True,
                       cells=_audit_cell)
    assert ids["e1"] in out  # --wide: whole ids
    assert "[red]promo[/red]" in out  # not taken as markup
    assert "2024-11-25 08:00" in out
    assert "\x1b" not in out


def test_parse_when() -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert parse_when("7d", now=now) == now - timedelta(days=7)
    assert parse_when("12h", now=now) == now - timedelta(hours=12)
    assert parse_when("30m", now=now) == now - timedelta(minutes=30)
    assert parse_when("2026-11-25") == datetime(2026, 11, 25, tzinfo=UTC)
    assert parse_when("2026-11-25", end=True) == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_when("2026-11-25T10:00") == now
    assert parse_when("2026-11-25 12:00+02:00") == now
    assert parse_when("2026-11-25T10:00:00Z") == now
    for bad in ("yesterday", "7x", "2026-13-01", ""):
        with pytest.raises(ValueError):
            parse_when(bad)


# -- CLI ---------------------------------------------------------------------
@pytest.fixture
def run(tmp_path: Path, db_url: str) -> Any:
    cfg = parse_config(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{db_url}"\n', tmp_path / "q.toml")

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})  # as qscan's own root:
    # click caches each command's help option, and the man pages are drawn from the same objects
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        ctx.obj = {"config": lambda: cfg}

    cli.add_command(db_group)
    cli.add_command(audit_group)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args))

    invoke.url = cfg.sql_url  # type: ignore[attr-defined]
    return invoke


def test_cli_without_schema(run: Any) -> None:
    result = run("audit", "search")
    assert result.exit_code == 3  # a database problem, not "tampering found"
    assert "qscan db upgrade" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    current = run("db", "current")
    assert current.exit_code == 0 and "(none)" in current.output


def test_cli_db_upgrade_and_current(run: Any) -> None:
    first = run("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"(empty) -> {db.head()}" in first.output
    again = run("db", "upgrade")
    assert f"already at {db.head()}" in again.output
    assert run("db", "current").output.strip() == f"{db.head()} (head)"
    ddl = run("db", "upgrade", "--sql")
    assert ddl.exit_code == 0 and "CREATE TABLE messages" in ddl.stdout


def test_cli_search(run: Any) -> None:
    assert run("db", "upgrade").exit_code == 0
    recent = make_event(sender="recent@example.com", when=datetime.now(UTC) - timedelta(minutes=10))
    ids = populate(run.url, extra=[recent])

    as_json = run("audit", "search", "--sender", "ALICE@example.com", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert [r["event_id"] for r in json.loads(as_json.stdout)] == [ids["e1"]]

    as_csv = run("audit", "search", "--domain", "example.net", "--format", "csv")
    assert [r["event_id"] for r in csv.DictReader(io.StringIO(as_csv.stdout))] == [ids["e4"], ids["e2"]]

    # e1, e5, e6 and the recent one (the factory sends to bob@example.org)
    assert run("audit", "search", "--recipient", "*@example.org", "--count").stdout.strip() == "4"
    assert run("audit", "search", "--since", "1h", "--count").stdout.strip() == "1"
    assert run("audit", "search", "--since", "2024-11-21", "--until", "2024-11-23",
               "--count").stdout.strip() == "3"  # --until DATE includes the whole day
    assert run("audit", "search", "--action", "quarantine", "--subject", "ÜBER",
               "--count").stdout.strip() == "1"

    page = run("audit", "search", "--limit", "2", "--offset", "1", "--format", "json")
    assert len(json.loads(page.stdout)) == 2
    everything = run("audit", "search", "--limit", "0", "--format", "json")
    assert len(json.loads(everything.stdout)) == 7

    table = run("audit", "search", "--sender", "<>", "--wide")
    assert table.exit_code == 0
    assert "Delivery failure" in table.stdout
    assert "1-1 of 1 matching messages" in table.stderr


def test_cli_rejects_bad_options(run: Any) -> None:
    bad_date = run("audit", "search", "--since", "last tuesday")
    assert bad_date.exit_code == 2 and "is not a date" in bad_date.output
    bad_action = run("audit", "search", "--action", "bounce")
    assert bad_action.exit_code == 2
    assert run("audit", "search", "--limit", "-1").exit_code == 2


def test_cli_help_teaches() -> None:
    from qscan.cli import cli

    result = CliRunner().invoke(cli, ["audit", "search", "--help"])
    assert "qscan audit search --sender alice@example.com" in result.output
    assert "7d" in result.output


def test_table_shortens_long_recipient_lists() -> None:
    row = {k: "" for k in audit.FIELDS} | {
        "time": at(1), "size": 1, "recipients": [f"u{i}@example.org" for i in range(40)]}
    out = render_table([row], AUDIT_COLUMNS, width=400, cells=_audit_cell)
    assert "u1@example.org (+38)" in out and "u2@example.org" not in out
    assert "u39@example.org" in audit.render_csv([row])


# -- 0002: the rest of the filters, paging, show ------------------------------------
def rich_corpus() -> dict[str, Any]:
    """Messages that differ in direction, client, attachments, findings and DLP hits."""
    from ingest.event import ClientInfo
    from ingest.event import Finding as EventFinding

    av = EventFinding(scanner="clamav", verdict=Category.VIRUS, name="Eicar-Test-Signature")
    clean_av = EventFinding(scanner="clamav", verdict=Category.CLEAN, name="")
    spam = EventFinding(scanner="spamd", verdict=Category.SPAM, name="BAYES_99", score=7.5)
    events = {
        "in1": make_event(client_ip="192.0.2.10", attachments=[("Invoice.PDF", "application/pdf", 9)],
                          findings=[clean_av], when=at(20, 1), subject="plain"),
        "in2": make_event(client_ip="192.0.2.200", attachments=[("setup.exe", "application/x-msdownload", 9)],
                          findings=[av], category=Category.VIRUS, action=Action.QUARANTINE,
                          when=at(20, 2)),
        "out1": make_event(client_ip="198.51.100.7", relay=True, findings=[spam],
                           category=Category.SPAM, when=at(20, 3),
                           attachments=[("photo.jpeg", "image/jpeg", 9)],
                           dlp_findings=[{"rule": "cards", "detector": "payment_card", "count": 2}]),
        "loc1": make_event(client_ip=None, when=at(20, 4), attachments=[("x.tar.gz", "application/gzip", 9)],
                           dlp_findings=[{"rule": "iban-eu", "detector": "iban"}]),
        "v6": make_event(client_ip="2001:db8::1", when=at(20, 5)),
    }
    events["loc1"] = events["loc1"].model_copy(update={"client": ClientInfo(local=True)})
    in2 = events["in2"]
    events["in2"] = in2.model_copy(
        update={"headers": in2.headers.model_copy(update={"message_id": "<Virus-1@example.net>"})})
    return events


@pytest.fixture(scope="module", params=DB_PARAMS)
def rich(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Engine, dict[str, str]]]:
    databases = FreshDatabases(request.param, request, tmp_path_factory.mktemp("rich"))
    url = databases()
    events = rich_corpus()
    sink = SummarySink(url)
    sink.apply([LogRecord(i, ev) for i, ev in enumerate(events.values(), 1)], len(events))
    sink.close()
    engine = db.make_engine(url)
    yield engine, {k: ev.event_id for k, ev in events.items()}
    engine.dispose()
    databases.close()


@pytest.mark.parametrize(("filters", "expected"), [
    ({"direction": "inbound"}, ["v6", "in2", "in1"]),
    ({"direction": "outbound"}, ["out1"]),
    ({"direction": "local"}, ["loc1"]),
    ({"category": "virus"}, ["in2"]),
    ({"attachment": "invoice.pdf"}, ["in1"]),
    ({"attachment": "*.EXE"}, ["in2"]),
    ({"attachment": "*.gz"}, ["loc1"]),
    ({"attachment": "x.tar*"}, ["loc1"]),
    ({"attachment": "*"}, ["loc1", "out1", "in2", "in1"]),
    ({"attachment_type": "application/pdf"}, ["in1"]),
    ({"attachment_type": "IMAGE/*"}, ["out1"]),
    ({"attachment_type": "text/plain"}, ["v6", "loc1", "out1", "in2", "in1"]),
    ({"client_ip": "192.0.2.10"}, ["in1"]),
    ({"client_ip": "192.0.2.0/24"}, ["in2", "in1"]),
    ({"client_ip": "192.0.2.128/25"}, ["in2"]),
    ({"client_ip": "192.0.0.0/22"}, ["in2", "in1"]),
    ({"client_ip": "198.51.100.7/32"}, ["out1"]),
    ({"client_ip": "192.*"}, ["in2", "in1"]),
    ({"client_ip": "2001:0db8::0001"}, ["v6"]),
    ({"client_ip": "0.0.0.0/0"}, ["v6", "out1", "in2", "in1"]),
    ({"finding": "Eicar*"}, ["in2"]),
    ({"finding": "clamav:*"}, ["in2"]),  # a clean result is not a finding
    ({"finding": "spamd:bayes_99"}, ["out1"]),
    ({"finding": "*"}, ["out1", "in2"]),
    ({"dlp_rule": "cards"}, ["out1"]),
    ({"dlp_rule": "iban*"}, ["loc1"]),
    ({"message_id": "virus-1@example.net"}, ["in2"]),
    ({"message_id": "<VIRUS-1@example.net>"}, ["in2"]),
    ({"direction": "inbound", "attachment": "*.exe", "finding": "Eicar*"}, ["in2"]),
])
def test_more_filters(rich: Any, filters: dict[str, Any], expected: list[str]) -> None:
    assert names(rich, **filters) == expected


@pytest.mark.parametrize(("filters", "message"), [
    ({"client_ip": "not-an-ip"}, "not an IP"),
    ({"client_ip": "2001:db8::/32"}, "IPv6 networks"),
    ({"client_ip": "192.0.2.0/33"}, "not an IP network"),
    ({"category": "ham"}, "unknown verdict"),
    ({"direction": "sideways"}, "unknown direction"),
    ({"action": "bounce"}, "unknown action"),
    ({"since": at(5), "until": at(4)}, "before"),
])
def test_bad_filters(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(audit.FilterError, match=message):
        audit.Filters(**filters)


def test_filters_round_trip_as_json() -> None:
    f = audit.Filters(sender="a@example.com", since=at(3, 4), attachment="*.exe", client_ip="192.0.2.0/24")
    data = json.loads(json.dumps(f.as_json()))
    assert data["since"] == "2024-11-03T04:00:00+00:00"
    assert audit.Filters.from_json(data) == f
    with pytest.raises(audit.FilterError, match="unknown filters"):
        audit.Filters.from_json({"colour": "red"})


def test_event_ids_in_batches(rich: Any) -> None:
    engine, ids = rich
    batches = list(audit.event_ids(engine, audit.Filters(), batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b] == [ids[k] for k in ("in1", "in2", "out1", "loc1", "v6")]


def test_details(rich: Any) -> None:
    engine, ids = rich
    info = audit.details(engine, audit.resolve_id(engine, ids["in2"][:30]))
    assert info["message"]["event_id"] == ids["in2"]
    assert info["message"]["received_at"] == at(20, 2)
    assert [p["filename"] for p in info["parts"]] == [None, "setup.exe"]
    assert [(f["scanner"], f["name"]) for f in info["findings"]] == [("clamav", "Eicar-Test-Signature")]
    assert info["quarantine"]["folder"] == "viruses"
    assert info["deletion"] is None and info["exports"] == [] and info["queue_failures"] == []
    with pytest.raises(audit.NotFound, match="8"):
        audit.resolve_id(engine, "0192")
    with pytest.raises(audit.NotFound, match="no message"):
        audit.resolve_id(engine, "ffffffff-ffff")


def test_cli_new_filters_paging_and_errors(run: Any) -> None:
    assert run("db", "upgrade").exit_code == 0
    ids = populate(run.url)
    first = run("audit", "search", "--limit", "2", "--page", "1", "--format", "json")
    second = run("audit", "search", "--limit", "2", "--page", "2", "--format", "json")
    assert [r["event_id"] for r in json.loads(first.stdout)] == [ids["e6"], ids["e5"]]
    assert [r["event_id"] for r in json.loads(second.stdout)] == [ids["e4"], ids["e3"]]
    table = run("audit", "search", "--limit", "2", "--page", "3")
    assert "5-6 of 6 matching messages, page 3 of 3" in table.stderr
    assert run("audit", "search", "--verdict", "virus", "--count").stdout.strip() == "1"
    assert run("audit", "search", "--attachment", "*.pdf", "--count").stdout.strip() == "1"
    assert run("audit", "search", "--direction", "inbound", "--client-ip", "192.0.2.0/24",
               "--count").stdout.strip() == "6"
    both = run("audit", "search", "--page", "2", "--offset", "3")
    assert both.exit_code == 2 and "cannot be combined" in both.output
    bad_ip = run("audit", "search", "--client-ip", "300.1.2.3")
    assert bad_ip.exit_code == 2 and "not an IP" in bad_ip.output
    assert run("audit", "search", "--verdict", "ham").exit_code == 2


def test_cli_show(run: Any) -> None:
    assert run("db", "upgrade").exit_code == 0
    ids = populate(run.url)
    shown = run("audit", "show", ids["e2"][:30])
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert f"event={ids['e2']}" in out.splitlines()[0]
    assert "<carol@example.net>" in out and "Re: Überweisung" in out
    assert "MISSING: expected in quarantine/viruses" in out  # no archive consumer ran here
    as_json = json.loads(run("audit", "show", ids["e6"], "--json").stdout)
    assert as_json["message"]["subject"] == "[red]promo[/red]"
    assert as_json["queue_failures"][0]["exit_code"] == 53
    assert any("none kept" in c for c in as_json["copies"])  # qmail-queue refused it
    missing = run("audit", "show", "ffffffff-0000-7000-8000-000000000000")
    assert missing.exit_code == 1 and "no message" in missing.output
