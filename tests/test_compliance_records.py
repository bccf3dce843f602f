"""Holds and exports are tamper-evident through the log; exports never re-produce deleted mail.

Also: the export's order of durable steps, interrupted deletions that are re-checked,
tombstone paging, `--save-anchor` refusing a failed verification and escaped file names.
Runs on SQLite and PostgreSQL (tests/compliance_site.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance import export as ex
from compliance import retention
from compliance.audit import Filters
from compliance.verify import verify_chain
from ingest.event import Action, AnyEvent, Category
from tests.compliance_site import Site, open_site
from tests.factories import make_event

MATTER = "Acme v. Example"
NOW = datetime.now(UTC)


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path, "[retention]\ndefault_days = 30\n")


@pytest.fixture
def mail(site: Site) -> dict[str, Any]:
    old = NOW - timedelta(days=60)
    evs = {
        "old": make_event(sender="ceo@example.com", subject="old", when=old),
        "old2": make_event(sender="ceo@example.com", subject="old2", when=old),
        "new": make_event(sender="ceo@example.com", subject="new"),
        "rejected": make_event(sender="ceo@example.com", subject="rejected",
                               action=Action.REJECT, category=Category.POLICY),
        "other": make_event(sender="someone@example.com", subject="other", when=old),
    }
    site.add(*evs.values())
    return evs


def problems(site: Site, *args: str) -> list[tuple[str, str, str | None]]:
    result = site.cli("verify", "--json", *args)
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.output
    return sorted((p["kind"], p["where"], p["event_id"]) for p in report["problems"])


def hold(site: Site, *extra: str) -> None:
    result = site.cli("hold", "create", MATTER, "--custodian", "ceo@example.com",
                      "--reason", "litigation", *extra)
    assert result.exit_code == 0, result.output


def export(site: Site, out: Path) -> list[dict[str, Any]]:
    result = site.cli("export", "--matter", MATTER, "--out", str(out))
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads((out / "manifest.json").read_bytes())["documents"]
    return docs


# -- 1. holds and exports against their events ----------------------------------------
def test_a_narrowed_hold_is_caught(site: Site, mail: dict[str, Any]) -> None:
    hold(site)
    assert problems(site) == []
    [(hold_id,)] = site.sql("SELECT hold_id FROM holds")
    site.sql("UPDATE holds SET custodians = '[\"nobody@example.com\"]'")
    assert problems(site) == [("log-mismatch", "holds", hold_id)]
    report = json.loads(site.cli("verify", "--json").stdout)
    assert "differs from its hold.created event in: custodians" in report["problems"][0]["detail"]
    site.sql("UPDATE holds SET custodians = '[\"ceo@example.com\"]', until = :t",
             t=NOW - timedelta(days=365))
    assert problems(site) == [("log-mismatch", "holds", hold_id)]


def test_released_holds_and_forged_or_deleted_hold_rows(site: Site, mail: dict[str, Any]) -> None:
    hold(site)
    [(hold_id,)] = site.sql("SELECT hold_id FROM holds")
    # released in SQL only: retention would delete held mail
    site.sql("UPDATE holds SET released_at = :t", t=NOW)
    assert problems(site) == [("inconsistent", "holds", hold_id)]
    site.sql("UPDATE holds SET release_event_id = :e", e="01a2ffff-0000-7000-8000-0000000000aa")
    assert problems(site) == [("unlogged-row", "holds", hold_id)]
    site.sql("UPDATE holds SET released_at = NULL, release_event_id = NULL")
    assert problems(site) == []
    assert site.cli("hold", "release", MATTER, "--reason", "settled").exit_code == 0
    site.sql("UPDATE holds SET released_by = 'someone@else'")
    assert problems(site) == [("log-mismatch", "holds", hold_id)]
    site.sql("DELETE FROM holds")
    assert problems(site) == []  # the consumer has not reached the events: it will restore it
    site.consume()
    site.sql("DELETE FROM holds")
    assert problems(site) == [("missing-row", "holds", hold_id)]
    # a hold row made up in SQL, from a time the journal still covers
    site.sql("INSERT INTO holds (hold_id, matter, custodians, query, reason, created_by, "
             "created_at) VALUES ('01a2ffff-0000-7000-8000-0000000000bb', 'Forged', '[]', '{}', "
             "'r', 'root@admin.example.com', :t)", t=NOW)
    assert ("unlogged-row", "holds", "01a2ffff-0000-7000-8000-0000000000bb") in problems(site)


def test_a_tampered_export_row_is_caught(site: Site, mail: dict[str, Any], tmp_path: Path) -> None:
    hold(site)
    export(site, tmp_path / "prod")
    assert problems(site) == []
    [(export_id,)] = site.sql("SELECT export_id FROM exports")
    site.sql("UPDATE exports SET actor = 'someone-else@admin.example.com'")
    assert problems(site) == [("log-mismatch", "exports", export_id)]
    site.sql("UPDATE exports SET actor = (SELECT created_by FROM holds)")
    assert problems(site) == []
    site.sql("UPDATE export_items SET sha256 = NULL")
    assert problems(site) == [("log-mismatch", "exports", export_id)]
    site.consume()
    site.sql("DELETE FROM export_items")
    site.sql("DELETE FROM exports")
    assert problems(site) == [("missing-row", "exports", export_id)]


def test_events_the_consumer_has_not_reached_are_not_missing(site: Site, mail: dict[str, Any]) -> None:
    from ingest.event import HoldCreated

    ev = HoldCreated(event_id="01a2ffff-0000-7000-8000-0000000000dd", time=NOW,
                     host="admin.example.com", matter="Pending", custodians=["a@example.com"],
                     reason="r", actor="root@admin.example.com")
    site.add(ev, consume=False)  # on the log; the command's SQL write "failed"
    assert problems(site) == []
    site.consume()
    assert site.sql("SELECT matter FROM holds") == [("Pending",)]
    assert problems(site) == []


def test_rows_older_than_the_journal_are_not_unlogged(site: Site, mail: dict[str, Any]) -> None:
    site.sql("INSERT INTO holds (hold_id, matter, custodians, query, reason, created_by, "
             "created_at) VALUES ('01a2ffff-0000-7000-8000-0000000000cc', 'Ancient', '[]', '{}', "
             "'r', 'root@admin.example.com', :t)", t=NOW - timedelta(days=3650))
    assert problems(site) == []  # the journal no longer covers that time: nothing to compare


# -- 2. exports list deleted, not stored and missing messages -------------------------
def test_export_never_produces_deleted_mail(site: Site, mail: dict[str, Any], tmp_path: Path) -> None:
    applied = site.cli("retention", "apply")  # no hold yet: the old mail is deleted lawfully
    assert applied.exit_code == 0, applied.output
    tombstones = dict(site.sql("SELECT ref_event_id, event_id FROM deletions"))
    assert set(tombstones) == {mail["old"].event_id, mail["old2"].event_id, mail["other"].event_id}
    hold(site)
    # the journal still holds every raw message: it must not bring deleted mail back
    assert site.journal.get(mail["old"].event_id, with_raw=True).raw == mail["old"].raw_message
    docs = export(site, tmp_path / "p1")
    by_id = {d["event_id"]: d for d in docs}
    for key in ("old", "old2"):
        doc = by_id[mail[key].event_id]
        assert (doc["source"], doc["file"], doc["sha256"]) == ("deleted", "", None)
        assert doc["tombstone"] == tombstones[mail[key].event_id]
    assert by_id[mail["new"].event_id]["source"] == "archive"
    assert by_id[mail["rejected"].event_id]["source"] == "journal"  # while the journal has it
    assert sorted(p.name for p in (tmp_path / "p1" / "messages").iterdir()) == [
        "QSCAN0000003.eml", "QSCAN0000004.eml"]
    custody = json.loads((tmp_path / "p1" / "custody.json").read_bytes())
    assert custody["counts"]["deleted"] == 2 and custody["counts"]["missing"] == 2
    dat = (tmp_path / "p1" / "loadfile.dat").read_bytes().decode("utf-8-sig")
    assert "TOMBSTONE" in dat.splitlines()[0] and tombstones[mail["old"].event_id] in dat
    # now lose the archive copy of "new" and let the journal go
    site.copy_path(mail["new"]).unlink()
    site.journal.prune([], keep_seconds=0)
    docs = export(site, tmp_path / "p2")
    assert {d["event_id"]: d["source"] for d in docs} == {
        mail["old"].event_id: "deleted", mail["old2"].event_id: "deleted",
        mail["new"].event_id: "missing", mail["rejected"].event_id: "not stored"}
    assert site.cli("export", "verify", str(tmp_path / "p2")).exit_code == 0


# -- 3. an export is on the log only once it exists -----------------------------------
def _request(site: Site, out: Path) -> ex.ExportRequest:
    return ex.ExportRequest(matter=MATTER, out=out, actor="t@admin.example.com",
                            host="admin.example.com", tool_version="test", filters=Filters())


def test_export_order_and_a_refused_log_append(site: Site, mail: dict[str, Any],
                                               tmp_path: Path) -> None:
    hold(site)
    out = tmp_path / "prod"
    seen: list[tuple[bool, int]] = []

    def refusing(ev: AnyEvent) -> None:
        # the production is complete and in place before the event is appended
        seen.append(((out / "custody.json").is_file(),
                     site.sql("SELECT count(*) FROM exports")[0][0]))
        raise OSError("journal refuses the append (disk full)")

    with pytest.raises(OSError, match="disk full"):
        ex.run(site.engine, site.store, refusing, _request(site, out))
    assert seen == [(True, 0)]
    assert not out.exists() and list(tmp_path.glob(".prod*")) == []
    assert site.sql("SELECT count(*) FROM exports") == [(0,)]

    events: list[AnyEvent] = []
    with site.cli_context() as (engine, append):
        def recording(ev: AnyEvent) -> None:
            assert (out / "custody.json").is_file()
            append(ev)
            events.append(ev)

        ev = ex.run(engine, site.store, recording, _request(site, out))
    assert [e.event_id for e in events] == [ev.event_id]
    assert site.sql("SELECT export_id FROM exports") == [(ev.event_id,)]
    site.consume()  # the summaries consumer meets the event and finds the row in place
    assert site.sql("SELECT count(*) FROM exports") == [(1,)]
    assert problems(site) == []


# -- 4. interrupted deletions are re-checked -----------------------------------------
def test_interrupted_deletions_are_rechecked(site: Site, mail: dict[str, Any]) -> None:
    saved = {k: site.copy_path(mail[k]).read_bytes() for k in ("old", "old2")}
    assert site.cli("retention", "apply").exit_code == 0
    for k, data in saved.items():  # as if the run died between the commit and the unlinks
        site.copy_path(mail[k]).write_bytes(data)
    tampered = site.copy_path(mail["old"])
    tampered.write_bytes(saved["old"].replace(b"old", b"OLD"))
    hold(site)  # a hold now covers both
    outcome = retention.finish_pending(site.engine, site.store)
    assert outcome == 0
    assert tampered.exists() and site.copy_path(mail["old2"]).exists()
    site.sql("UPDATE holds SET released_at = :t, release_event_id = 'x'", t=NOW)  # bypass the log
    result = site.cli("retention", "apply", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["finished"] == 1
    assert len(report["problems"]) == 1 and "interrupted deletion, not finished" in report["problems"][0]
    assert tampered.exists() and not site.copy_path(mail["old2"]).exists()


# -- 5. every tombstone is checked, page by page -------------------------------------
def test_tombstones_are_paged_through(site: Site, mail: dict[str, Any]) -> None:
    assert site.cli("retention", "apply").exit_code == 0
    rows = site.sql("SELECT event_id, ref_event_id FROM deletions ORDER BY event_id")
    assert len(rows) == 3
    assert verify_chain(site.engine, page=1).ok
    site.sql("UPDATE messages SET deleted_at = NULL WHERE event_id = :e", e=rows[-1][1])
    report = verify_chain(site.engine, page=1)
    assert [(p.kind, p.event_id) for p in report.problems if p.kind == "inconsistent"] == [
        ("inconsistent", rows[-1][1])]
    assert [p.event_id for p in verify_chain(site.engine, page=2).problems] == [rows[-1][1]]


# -- 8. anchors only from a clean verification; file names escaped ---------------------
def test_save_anchor_refuses_a_failed_verification(site: Site, mail: dict[str, Any],
                                                   tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.json"
    site.sql("UPDATE messages SET subject = 'forged' WHERE event_id = :e", e=mail["new"].event_id)
    result = site.cli("verify", "--save-anchor", str(anchor))
    assert result.exit_code == 1 and not anchor.exists()
    assert "--save-anchor: not written" in result.stderr
    site.sql("UPDATE messages SET subject = 'new' WHERE event_id = :e", e=mail["new"].event_id)
    assert site.cli("verify", "--save-anchor", str(anchor)).exit_code == 0
    assert json.loads(anchor.read_text())["heads"]


def test_export_verify_escapes_file_names(site: Site, mail: dict[str, Any], tmp_path: Path) -> None:
    hold(site)
    out = tmp_path / "prod"
    export(site, out)
    (out / "messages" / "evil\x1b[2J\rname.eml").write_bytes(b"x")
    result = site.cli("export", "verify", str(out))
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "messages/evil\\x1b[2J\\rname.eml: not part of the production" in result.stdout
