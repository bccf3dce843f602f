"""Retention rules, lawful deletion with tombstones, and legal holds (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance import holds, retention
from ingest.event import Action, Category, ClientInfo
from tests.compliance_site import Site, open_site
from tests.factories import make_event

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULES = """
[retention]
default_days = 365
[[retention.rules]]
name = "spam"
verdict = "spam"
days = 30
[[retention.rules]]
name = "legal-dept"
domain = "legal.example.com"
days = "forever"
[[retention.rules]]
name = "outbound"
direction = "outbound"
days = 3650
"""


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path, RULES)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def corpus(site: Site) -> dict[str, Any]:
    evs = {
        "spam-old": make_event(category=Category.SPAM, action=Action.QUARANTINE, when=ago(40)),
        "spam-new": make_event(category=Category.SPAM, action=Action.QUARANTINE, when=ago(20)),
        "legal-old": make_event(recipients=["counsel@legal.example.com"], when=ago(4000)),
        "out-old": make_event(relay=True, when=ago(400)),
        "plain-old": make_event(when=ago(400)),
        "plain-new": make_event(when=ago(300)),
        "custodian-old": make_event(sender="ceo@example.com", when=ago(500)),
        "rejected-old": make_event(action=Action.REJECT, when=ago(900)),
    }
    site.add(*evs.values())
    return evs


def gone(site: Site, ev: Any) -> bool:
    return not site.store.locate(facts(ev))


def facts(ev: Any) -> Any:
    from compliance.copystore import MessageFacts

    return MessageFacts(ev.event_id, ev.time, ev.envelope.sender, ev.envelope.recipients, None, None)


def journal_types(site: Site) -> list[str]:
    return [e.type for e in site.journal.read(0, 1000, with_raw=False)]


def test_rules_decide_in_order(site: Site, corpus: dict[str, Any]) -> None:
    result = site.cli("retention", "apply", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["deleted"] == {"spam": 1, "default": 2}
    deleted = {k for k, ev in corpus.items() if gone(site, ev) and k != "rejected-old"}
    assert deleted == {"spam-old", "plain-old", "custodian-old"}
    rows = site.sql("SELECT ref_event_id, rule, location, actor, reason FROM deletions")
    assert {r[0] for r in rows} == {corpus[k].event_id for k in deleted}
    spam = next(r for r in rows if r[0] == corpus["spam-old"].event_id)
    assert (spam[1], spam[2]) == ("spam", "quarantine/spam")
    assert spam[3].endswith("@admin.example.com") and "30 days" in spam[4]
    (state,) = site.sql("SELECT state FROM quarantine_entries WHERE event_id = :e",
                        e=corpus["spam-old"].event_id)
    assert state[0] == "deleted"
    assert journal_types(site).count("message.deleted") == 3
    assert site.verify_kinds() == []
    # the consumer meets its own deletions on the log: nothing new, nothing doubled
    site.consume()
    assert len(site.sql("SELECT event_id FROM deletions")) == 3
    assert site.verify_kinds() == []
    again = json.loads(site.cli("retention", "apply", "--now", NOW.isoformat(), "--json").stdout)
    assert again["deleted"] == {}


def test_dry_run_changes_nothing(site: Site, corpus: dict[str, Any]) -> None:
    result = site.cli("retention", "apply", "--dry-run", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert "spam: would delete 1 stored copies" in result.stdout
    assert "would delete 3 in all" in result.stdout
    assert not any(gone(site, ev) for k, ev in corpus.items() if k != "rejected-old")
    assert site.sql("SELECT count(*) FROM deletions") == [(0,)]
    assert "message.deleted" not in journal_types(site)


def test_holds_win_and_release_hands_back(site: Site, corpus: dict[str, Any]) -> None:
    created = site.cli("hold", "create", "Acme v. Example", "--custodian", "CEO@example.com",
                       "--since", "2020-01-01", "--reason", "litigation notice")
    assert created.exit_code == 0, created.output
    assert "1 stored messages covered now" in created.stdout
    by_query = site.cli("hold", "create", "Spam probe", "--verdict", "spam", "--reason", "regulator")
    assert by_query.exit_code == 0, by_query.output
    report = json.loads(site.cli("retention", "apply", "--now", NOW.isoformat(), "--json").stdout)
    assert report["deleted"] == {"default": 1} and report["held"] == 2
    assert not gone(site, corpus["custodian-old"]) and not gone(site, corpus["spam-old"])
    listing = json.loads(site.cli("hold", "list", "--json").stdout)
    assert [(h["matter"], h["messages"], h["custodians"]) for h in listing] == [
        ("Acme v. Example", 1, ["CEO@example.com"]), ("Spam probe", 2, [])]
    # a custodian's new mail is covered without touching the hold
    later = make_event(recipients=["ceo@example.com"], when=ago(10))
    site.add(later)
    assert json.loads(site.cli("hold", "list", "--json").stdout)[0]["messages"] == 2
    released = site.cli("hold", "release", "Acme v. Example", "--reason", "settled")
    assert released.exit_code == 0, released.output
    assert [h["matter"] for h in json.loads(site.cli("hold", "list", "--json").stdout)] == ["Spam probe"]
    everything = json.loads(site.cli("hold", "list", "--all", "--json").stdout)
    assert everything[0]["released_by"].endswith("@admin.example.com")
    assert everything[0]["release_reason"] == "settled"
    report = json.loads(site.cli("retention", "apply", "--now", NOW.isoformat(), "--json").stdout)
    assert report["deleted"] == {"default": 1} and report["held"] == 1
    assert gone(site, corpus["custodian-old"]) and not gone(site, corpus["spam-old"])
    types = journal_types(site)
    assert types.count("hold.created") == 2 and types.count("hold.released") == 1
    site.consume()
    assert site.sql("SELECT count(*) FROM holds") == [(2,)]
    assert site.verify_kinds() == []


def test_hold_mistakes(site: Site, corpus: dict[str, Any]) -> None:
    assert site.cli("hold", "create", "M", "--custodian", "a@example.com", "--reason", "r").exit_code == 0
    dup = site.cli("hold", "create", "M", "--custodian", "b@example.com", "--reason", "r")
    assert dup.exit_code == 1 and "already has an active hold" in dup.output
    nothing = site.cli("hold", "create", "N", "--reason", "r")
    assert nothing.exit_code == 2 and "needs custodians" in nothing.output
    no_reason = site.cli("hold", "create", "N", "--custodian", "a@example.com")
    assert no_reason.exit_code == 2
    unknown = site.cli("hold", "release", "Nope", "--reason", "r")
    assert unknown.exit_code == 1 and "no active hold for matter 'Nope'" in unknown.output
    bad = site.cli("hold", "create", "N", "--custodian", "a@x", "--client-ip", "x", "--reason", "r")
    assert bad.exit_code == 2 and "not an IP" in bad.output
    assert site.cli("hold", "list").stdout.splitlines()[2].startswith("M  ")  # the one hold, alone


def test_a_tampered_copy_is_kept_and_reported(site: Site, corpus: dict[str, Any]) -> None:
    path = site.copy_path(corpus["plain-old"])
    path.write_bytes(path.read_bytes().replace(b"Hi there", b"Hi THERE"))
    site.copy_path(corpus["out-old"]).unlink()  # missing, but not yet expired: not retention's concern
    result = site.cli("retention", "apply", "--now", NOW.isoformat())
    assert result.exit_code == 1
    assert "does not hash to the recorded raw_sha256 (not deleted" in result.stderr
    assert path.exists()
    assert "deleted 2 in all" in result.stdout


def test_an_interrupted_deletion_is_finished(site: Site, corpus: dict[str, Any]) -> None:
    path = site.copy_path(corpus["plain-old"])
    saved = path.read_bytes()
    assert site.cli("retention", "apply", "--now", NOW.isoformat()).exit_code == 0
    path.write_bytes(saved)  # as if the run died between the commit and the unlink
    verify = site.cli("verify")
    assert verify.exit_code == 0 and "still on disk" in verify.stderr
    again = site.cli("retention", "apply", "--now", NOW.isoformat())
    assert "finished 1 interrupted deletions" in again.stdout
    assert not path.exists()


def test_archive_filter_and_missing_copies(migrated_url: str, tmp_path: Path) -> None:
    config = RULES + '\n[archive]\nfilter = "sales@example\\\\.com"\n'
    for s in open_site(migrated_url, tmp_path, config):
        kept = make_event(recipients=["sales@example.com"], when=ago(400))
        skipped = make_event(when=ago(400))
        s.add(kept, skipped)
        s.copy_path(kept).unlink()
        result = s.cli("retention", "apply", "--now", NOW.isoformat())
        assert result.exit_code == 1
        assert f"{kept.event_id}: its stored copy is missing" in result.stderr
        assert "deleted 0 in all" in result.stdout  # the unarchived one had nothing to delete


def test_retention_show_and_policy_checks(site: Site) -> None:
    shown = site.cli("retention", "show").stdout.splitlines()
    assert shown == ["spam: verdict=spam -> 30 days", "legal-dept: domain=legal.example.com -> forever",
                     "outbound: direction=outbound -> 3650 days", "default: 365 days"]
    with pytest.raises(retention.RetentionError, match="unique"):
        retention.RetentionPolicy(rules=(retention.RetentionRule("a", 1), retention.RetentionRule("a", 2)))
    with pytest.raises(retention.RetentionError, match="at least 1"):
        retention.RetentionRule("a", 0)
    with pytest.raises(retention.RetentionError, match="direction"):
        retention.RetentionRule("a", 1, direction="up")


def test_address_rule_and_local_mail(site: Site) -> None:
    local = make_event(when=ago(100)).model_copy(update={"client": ClientInfo(local=True)})
    vip = make_event(sender="boss@example.com", when=ago(100))
    site.add(local, vip)
    policy = retention.RetentionPolicy(rules=(retention.RetentionRule("vip", None, address="boss@*"),
                                     retention.RetentionRule("local", 50, direction="local")),
                              default_days=None)
    with site.cli_context() as (engine, append):
        outcome = retention.apply(engine, site.store, append, policy, archived=lambda e, s, r: True,
                                  actor="t@h", host="h", now=NOW)
    assert outcome.deleted == {"local": 1}
    assert gone(site, local) and not gone(site, vip)


def test_holds_api_directly(site: Site, corpus: dict[str, Any]) -> None:
    spec = holds.HoldSpec(matter="Direct", custodians=("*@legal.example.com",))
    with site.cli_context() as (engine, append):
        ev = holds.create(engine, append, spec, reason="r", actor="t@h", host="h")
        [covering] = holds.covering(engine, corpus["legal-old"].event_id)
        assert covering.hold_id == ev.event_id
        assert holds.covering(engine, corpus["plain-old"].event_id) == []
        with pytest.raises(holds.HoldError, match="own since/until"):
            from compliance.audit import Filters

            holds.HoldSpec(matter="X", custodians=("a@x",), query=Filters(since=NOW))
