"""From discovery search to hold and export (issue 25), on SQLite and PostgreSQL: the hold
and export records say how their messages were chosen (query, canonical form, filters,
result set), a message held by query survives `retention apply`, `qscan verify` checks the
records against their events, and `hold show --rerun` lists what changed since."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance.discovery.consumer import IndexSink
from ingest.event import DiscoverySearched, HoldCreated, from_json
from ingest.log import JournalReader, run_consumer
from tests.compliance_site import Site, open_site
from tests.dlp_docs import mail
from tests.factories import make_event

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RULES = """
[retention]
default_days = 30
[discovery]
workers = 1
"""


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path, RULES)


def index(site: Site) -> None:
    sink = IndexSink(site.cfg.sql_url, site.cfg.discovery_path, site.cfg.discovery)
    try:
        run_consumer(JournalReader(site.journal), sink, once=True)
    finally:
        sink.close()


def add(site: Site, *events: Any) -> None:
    site.add(*events)
    index(site)


@pytest.fixture
def corpus(site: Site) -> dict[str, Any]:
    wire = mail(body="Please send the wire transfer to Acme today.", subject="payment")
    evs = {
        # one message delivered twice (same bytes): one message found, two copies held
        "wire": make_event(recipients=["cfo@example.com"], when=ago(100), raw=wire),
        "wire-copy": make_event(recipients=["cfo@example.com"], when=ago(100), raw=wire),
        "wire-late": make_event(sender="bob@example.org", when=ago(50), raw=mail(
            body="The wire transfer to Acme is late.", subject="late")),
        "other": make_event(when=ago(90), raw=mail(body="lunch on friday", subject="lunch")),
        "acme-only": make_event(when=ago(80), raw=mail(body="Acme merger talks", subject="m")),
    }
    add(site, *evs.values())
    return evs


def events(site: Site, type_: str) -> list[Any]:
    return [from_json(e.body, type_=e.type) for e in site.journal.read(0, 10_000, with_raw=False)
            if e.type == type_]


def gone(site: Site, ev: Any) -> bool:
    from compliance.copystore import MessageFacts

    return not site.store.locate(MessageFacts(ev.event_id, ev.time, ev.envelope.sender,
                                              ev.envelope.recipients, None, None))


def test_hold_by_query_is_recorded_and_holds(site: Site, corpus: dict[str, Any]) -> None:
    out = site.cli("hold", "create", "Falcon", "--query", '"wire  transfer" acme',
                   "--until", NOW.date().isoformat(), "--reason", "subpoena 12/01")
    assert out.exit_code == 0, out.output
    assert "3 stored messages covered now (2 found by the query, 3 copies held by id)" in out.stdout

    held = {corpus[k].event_id for k in ("wire", "wire-copy", "wire-late")}
    (ev,) = events(site, "hold.created")
    assert isinstance(ev, HoldCreated) and ev.discovery is not None
    assert (ev.discovery.query, ev.discovery.canonical) == ('"wire  transfer" acme',
                                                            '"wire transfer" AND acme')
    assert ev.discovery.filters == {"until": "2026-12-02T00:00:00+00:00"}
    assert ev.discovery.total == 2 and ev.custodians == [] and ev.query == {}
    assert {i.event_id for i in ev.items} == held
    assert {i.sha256 for i in ev.items} == {corpus["wire"].sha256, corpus["wire-late"].sha256}
    searched = [s for s in events(site, "discovery.searched") if isinstance(s, DiscoverySearched)]
    assert [(s.purpose, s.total) for s in searched] == [("hold Falcon", 2)]

    rows = site.sql("SELECT discovery FROM holds")
    assert json.loads(rows[0][0])["canonical"] == '"wire transfer" AND acme'
    assert {r[0] for r in site.sql("SELECT event_id FROM hold_items")} == held
    listing = json.loads(site.cli("hold", "list", "--json").stdout)
    assert listing[0]["messages"] == 3 and listing[0]["discovery"]["total"] == 2
    table = site.cli("hold", "list", "--wide").stdout
    assert '--query "\\"wire transfer\\" AND acme"' in table

    shown = site.cli("hold", "show", "Falcon")
    assert shown.exit_code == 0, shown.output
    assert "canonical  \"wire transfer\" AND acme" in shown.stdout
    assert "found      2 messages; 3 copies held by id" in shown.stdout

    # everything is past its 30 days: only what the query found is kept
    report = json.loads(site.cli("retention", "apply", "--now", NOW.isoformat(), "--json").stdout)
    assert report["held"] == 3 and report["deleted"] == {"default": 2}
    assert {k for k, e in corpus.items() if gone(site, e)} == {"other", "acme-only"}
    site.consume()
    assert site.verify_kinds() == []


def test_tampered_hold_by_query_is_detected(site: Site, corpus: dict[str, Any]) -> None:
    assert site.cli("hold", "create", "Falcon", "--query", '"wire transfer"',
                    "--reason", "r").exit_code == 0
    assert site.verify_kinds() == []
    original = site.sql("SELECT discovery FROM holds")[0][0]
    site.sql("UPDATE holds SET discovery = :d", d=original.replace("wire transfer", "wire"))
    assert site.verify_kinds() == ["log-mismatch"]
    site.sql("UPDATE holds SET discovery = :d", d=original)
    assert site.verify_kinds() == []
    # a held message taken out of the set (retention could then delete it)
    site.sql("DELETE FROM hold_items WHERE event_id = :e", e=corpus["wire-late"].event_id)
    result = site.cli("verify", "--json")
    problems = json.loads(result.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["log-mismatch"] and "hold_items" in problems[0]["detail"]


def test_rerun_shows_what_changed(site: Site, corpus: dict[str, Any]) -> None:
    assert site.cli("hold", "create", "Falcon", "--query", '"wire transfer"',
                    "--reason", "r").exit_code == 0
    same = json.loads(site.cli("hold", "show", "Falcon", "--rerun", "--json").stdout)
    assert same["rerun"]["added"] == [] and same["rerun"]["removed"] == []
    newer = make_event(when=ago(5), raw=mail(body="another wire transfer", subject="again"))
    add(site, newer)
    # the new message is not held: a hold by query is the set found when it was made
    assert json.loads(site.cli("hold", "show", "Falcon", "--json").stdout)["messages"] == 3
    assert site.cli("hold", "release", "Falcon", "--reason", "settled").exit_code == 0
    assert site.cli("retention", "apply", "--now", NOW.isoformat()).exit_code == 0
    index(site)  # the tombstones leave the index
    out = site.cli("hold", "show", "Falcon", "--rerun", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert [m["event_id"] for m in doc["rerun"]["added"]] == [newer.event_id]
    removed = {m["event_id"]: m["deleted_at"] for m in doc["rerun"]["removed"]}
    assert set(removed) == {corpus[k].event_id for k in ("wire", "wire-copy", "wire-late")}
    assert all(removed.values())
    text = site.cli("hold", "show", "Falcon", "--rerun").stdout
    assert "1 added, 3 removed since the hold" in text
    assert f"+ {newer.event_id}" in text and "(deleted " in text
    purposes = [s.purpose for s in events(site, "discovery.searched")]
    assert purposes == ["hold Falcon", "rerun of hold Falcon", "rerun of hold Falcon",
                        "rerun of hold Falcon"]
    assert site.verify_kinds() == []
    custodian = site.cli("hold", "create", "C", "--custodian", "x@example.com", "--reason", "r")
    assert custodian.exit_code == 0
    refused = site.cli("hold", "show", "C", "--rerun")
    assert refused.exit_code == 1 and "not made from a discovery query" in refused.output


def test_export_by_query_records_how_the_set_was_chosen(site: Site, corpus: dict[str, Any],
                                                        tmp_path: Path) -> None:
    out_dir = tmp_path / "prod-1"
    out = site.cli("export", "--matter", "Falcon", "--query", "acme",
                   "--sender", "BOB@example.org", "--out", str(out_dir))
    assert out.exit_code == 0, out.output
    custody = json.loads((out_dir / "custody.json").read_text())
    assert custody["hold_id"] is None and custody["query"]["hold"] is None
    found = custody["query"]["discovery"]
    assert (found["query"], found["canonical"], found["filters"]) == (
        "acme", "acme", {"sender": "BOB@example.org"})
    assert found["results"] == [{"event_id": corpus["wire-late"].event_id,
                                 "sha256": corpus["wire-late"].sha256}]
    assert custody["counts"]["messages"] == 1 and custody["counts"]["search_results"] == 1
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["query"]["discovery"]["canonical"] == "acme"
    assert site.cli("export", "verify", str(out_dir)).exit_code == 0
    # re-running the export's recorded search later shows what changed since
    same = json.loads(site.cli("export", "rerun", str(out_dir), "--json").stdout)
    assert (same["added"], same["removed"], same["then"], same["now"]) == (
        [], [], {"total": 1, "copies": 1}, {"total": 1, "copies": 1})
    newer = make_event(sender="bob@example.org", when=ago(3), raw=mail(
        body="Acme again", subject="follow-up"))
    add(site, newer)
    rerun = site.cli("export", "rerun", str(out_dir))
    assert rerun.exit_code == 0, rerun.output
    assert "then: 1 messages (1 copies); now: 2 messages (2 copies); 1 added, 0 removed" \
        in rerun.stdout
    assert f"+ {newer.event_id}" in rerun.stdout and "(not in the export)" in rerun.stdout
    assert [s.purpose for s in events(site, "discovery.searched")][-1] == \
        f"rerun of export {custody['export_id']}"
    plain = site.cli("export", "rerun", str(tmp_path))  # no custody record there
    assert plain.exit_code == 1 and "no readable custody record" in plain.output

    # within a hold: the query narrows what the hold covers
    assert site.cli("hold", "create", "Falcon", "--query", '"wire transfer"',
                    "--reason", "r").exit_code == 0
    out = site.cli("export", "--matter", "Falcon", "--query", "late OR today",
                   "--verdict", "clean", "--out", str(tmp_path / "prod-2"))
    assert out.exit_code == 0, out.output
    custody = json.loads((tmp_path / "prod-2" / "custody.json").read_text())
    assert custody["query"]["hold"]["discovery"]["canonical"] == '"wire transfer"'
    assert custody["query"]["filters"] == {"category": "clean"}
    assert custody["counts"]["messages"] == 3 and custody["counts"]["search_results"] == 3
    (doc,) = json.loads(site.cli("hold", "list", "--json").stdout)
    assert doc["messages"] == 3
    # the search alone finds nothing more than the hold
    out = site.cli("export", "--matter", "Falcon", "--query", "lunch",
                   "--out", str(tmp_path / "prod-3"))
    assert out.exit_code == 0 and "0 messages" in out.stdout, out.output
    assert site.verify_kinds() == []
    site.sql("UPDATE exports SET query = :q WHERE export_id = :e",
             q=json.dumps({"hold": None, "filters": {}}), e=custody["export_id"])
    assert site.verify_kinds() == ["log-mismatch"]


def test_query_mistakes(site: Site, corpus: dict[str, Any], tmp_path: Path) -> None:
    bad = site.cli("hold", "create", "M", "--query", "acme AND (wire", "--reason", "r")
    assert bad.exit_code == 2 and "column 15" in bad.output
    both = site.cli("hold", "create", "M", "--query", "acme", "--custodian", "a@example.com",
                    "--subject", "x", "--reason", "r")
    assert both.exit_code == 2 and "not --custodian, --subject" in both.output
    pattern = site.cli("hold", "create", "M", "--query", "acme", "--sender", "*@example.org",
                       "--reason", "r")
    assert pattern.exit_code == 2 and "exact address" in pattern.output
    nothing = site.cli("hold", "create", "M", "--query", "zebra", "--reason", "r")
    assert nothing.exit_code == 2 and "finds no messages" in nothing.output
    export = site.cli("export", "--matter", "M", "--query", "zebra", "--out", str(tmp_path / "x"))
    assert export.exit_code == 2 and not (tmp_path / "x").exists()
    assert site.sql("SELECT count(*) FROM holds") == [(0,)]
    # a matter without a hold needs --query to be exported
    plain = site.cli("export", "--matter", "M", "--out", str(tmp_path / "y"))
    assert plain.exit_code == 1 and "no hold" in plain.output
