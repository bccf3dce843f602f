"""Tamper evidence: each kind of alteration, insertion and deletion is caught; lawful ones are not.

Runs on SQLite and PostgreSQL, through the real journal and consumers (tests/compliance_site.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ingest.event import Action, Category
from tests.compliance_site import Site, open_site
from tests.factories import make_event, make_queue_failed


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


@pytest.fixture
def events(site: Site) -> list:  # type: ignore[type-arg]
    evs = [make_event(recipients=[f"r{i}@example.org", "bob@example.org"], subject=f"m{i}")
           for i in range(5)]
    evs.append(make_event(action=Action.QUARANTINE, category=Category.VIRUS, subject="virus"))
    evs.append(make_event(action=Action.REJECT, category=Category.POLICY, subject="rejected"))
    site.add(*evs)
    return evs


def test_an_untouched_store_verifies(site: Site, events: list) -> None:  # type: ignore[type-arg]
    result = site.cli("verify")
    assert result.exit_code == 0, result.output
    assert "OK: 7 chain entries (mx1.example.com#7), 6 stored copies, 7 journal events" in result.stderr


def test_altered_row(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.sql("UPDATE messages SET subject = 'nothing to see' WHERE event_id = :e", e=events[2].event_id)
    assert site.verify_kinds("--no-files", "--no-log") == ["altered-row"]


def test_altered_child_rows(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.sql("UPDATE recipients SET address = 'eve@example.org' WHERE event_id = :e AND "
             "address = 'bob@example.org'", e=events[1].event_id)
    site.sql("DELETE FROM parts WHERE event_id = :e", e=events[3].event_id)
    report = json.loads(site.cli("verify", "--json", "--no-files", "--no-log").stdout)
    assert sorted((p["kind"], p["event_id"]) for p in report["problems"]) == sorted(
        [("altered-row", events[1].event_id), ("altered-row", events[3].event_id)])
    # the journal's events say which: the recipients of one, the parts of the other
    report = json.loads(site.cli("verify", "--json", "--no-files").stdout)
    assert sorted((p["kind"], p["event_id"], p["detail"]) for p in report["problems"]
                  if p["kind"] == "log-mismatch") == sorted(
        [("log-mismatch", events[1].event_id, "differs from its journal event in: recipients"),
         ("log-mismatch", events[3].event_id, "differs from its journal event in: parts")])


def test_a_recipient_moved_out_of_date_searches(site: Site, events: list) -> None:  # type: ignore[type-arg]
    from datetime import UTC, datetime

    site.sql("UPDATE recipients SET received_at = :t WHERE event_id = :e",
             t=datetime(2000, 1, 1, tzinfo=UTC), e=events[2].event_id)
    assert site.verify_kinds("--no-files", "--no-log") == ["inconsistent"]


def test_rehashed_row_is_caught_at_the_next_link(site: Site, events: list) -> None:  # type: ignore[type-arg]
    from compliance import canonical
    from compliance.verify import _stream

    site.sql("UPDATE messages SET subject = 'forged' WHERE event_id = :e", e=events[1].event_id)
    with site.engine.connect() as conn:  # recompute the forged row's own link, as an attacker would
        entries = list(_stream(conn, "message", "mx1.example.com"))
    prev = entries[0].chain_hash
    forged = canonical.link(prev, canonical.encode("message", "mx1.example.com", 2, entries[1].row,
                                                   entries[1].children))
    site.sql("UPDATE messages SET chain_hash = :h WHERE event_id = :e", h=forged, e=events[1].event_id)
    report = json.loads(site.cli("verify", "--json", "--no-files", "--no-log").stdout)
    assert [(p["kind"], p["event_id"]) for p in report["problems"]] == [
        ("altered-row", events[2].event_id)]


def test_inserted_rows(site: Site, events: list) -> None:  # type: ignore[type-arg]
    cols = ("position, received_at, host, action, category, reason, client_ip, client_host, relay, "
            "auth_user, sender, sender_domain, subject, message_id, size, sha256, attachments, "
            "parts_count, recipients_count, spam_score, processing_ms, queue_status, queue_exit_code, "
            "summary, direction, header_from, header_to, header_cc, header_date, raw_sha256")
    site.sql(f"INSERT INTO messages (event_id, {cols}) SELECT '01a2ffff-0000-7000-8000-000000000001', "
             f"{cols} FROM messages WHERE event_id = :e", e=events[0].event_id)
    assert site.verify_kinds("--no-files", "--no-log") == ["inserted-row"]
    # one forged after the head, and a queue failure forged at a taken position
    site.sql("UPDATE messages SET chain_seq = 8, chain_hash = :h WHERE event_id = "
             "'01a2ffff-0000-7000-8000-000000000001'", h="f" * 64)
    site.sql("INSERT INTO queue_failures (event_id, ref_event_id, time, host, exit_code, chain_seq, "
             "chain_hash) VALUES ('01a2ffff-0000-7000-8000-000000000002', :e, :t, "
             "'mx1.example.com', 71, 3, :h)", e=events[0].event_id, t=events[0].time, h="e" * 64)
    # (the forged failure also contradicts the message's queue_status)
    assert site.verify_kinds("--no-files", "--no-log") == ["altered-row", "inconsistent",
                                                           "inserted-row", "inserted-row"]


def test_deleted_row_in_the_middle(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.sql("DELETE FROM messages WHERE event_id = :e", e=events[2].event_id)
    # the chain gap, the journal that still has it, and its archive file that no row explains
    assert site.verify_kinds() == ["deleted-row", "inserted-file", "missing-row"]


def test_deleted_tail(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.sql("DELETE FROM messages WHERE event_id = :e", e=events[-1].event_id)  # the rejected one
    assert site.verify_kinds("--no-log") == ["deleted-row"]


def test_rewritten_tail_and_head_need_the_log_or_an_anchor(site: Site, events: list,  # type: ignore[type-arg]
                                                           tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.json"
    assert site.cli("verify", "--save-anchor", str(anchor)).exit_code == 0
    assert json.loads(anchor.read_text())["heads"]["mx1.example.com"]["seq"] == 7
    last = events[-1].event_id
    (prev,) = site.sql("SELECT chain_hash FROM messages WHERE chain_seq = 6")
    site.sql("DELETE FROM messages WHERE event_id = :e", e=last)
    site.sql("UPDATE chain_heads SET seq = 6, hash = :h", h=prev[0])
    assert site.verify_kinds("--no-log") == []  # the chain alone cannot tell
    assert site.verify_kinds() == ["missing-row"]  # the journal still has the event
    assert site.verify_kinds("--no-log", "--anchor", str(anchor)) == ["deleted-row"]


def test_queue_status_must_match_the_chained_failures(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.add(make_queue_failed(events[0], exit_code=53))
    assert site.verify_kinds() == []
    site.sql("UPDATE messages SET queue_status = 'queued', queue_exit_code = NULL WHERE event_id = :e",
             e=events[0].event_id)
    site.sql("UPDATE messages SET queue_status = 'failed' WHERE event_id = :e", e=events[1].event_id)
    # (the second is marked failed without a failure, and without the failure's exit code)
    assert site.verify_kinds("--no-files") == ["inconsistent"] * 3
    site.sql("UPDATE messages SET queue_status = 'queued' WHERE event_id = :e", e=events[1].event_id)
    site.sql("UPDATE messages SET queue_status = 'failed', queue_exit_code = 71 WHERE event_id = :e",
             e=events[0].event_id)
    assert site.verify_kinds("--no-files") == ["inconsistent"]  # 53 was chained, not 71


def test_altered_deleted_and_inserted_files(site: Site, events: list) -> None:  # type: ignore[type-arg]
    changed = site.copy_path(events[0])
    changed.write_bytes(changed.read_bytes().replace(b"Hi there", b"Hi THERE"))
    site.copy_path(events[1]).unlink()
    virus = site.copy_path(events[5], "viruses")
    virus.write_bytes(virus.read_bytes().replace(b"<bob@example.org>", b"<eve@example.org>"))
    stray = site.cfg.archive_maildir / "new" / "1700000000.01a2ffff-0000-7000-8000-000000000009.qscan"
    stray.write_bytes(b"Subject: planted\n\nx\n")
    misplaced = site.cfg.quarantine_dir / "spam" / "new" / site.copy_path(events[3]).name
    misplaced.parent.mkdir(parents=True)
    site.copy_path(events[3]).rename(misplaced)
    report = json.loads(site.cli("verify", "--json").stdout)
    got = sorted((p["kind"], p["event_id"]) for p in report["problems"])
    assert got == sorted([
        ("altered-file", events[0].event_id), ("deleted-file", events[1].event_id),
        ("altered-file", events[5].event_id), ("inserted-file", "01a2ffff-0000-7000-8000-000000000009"),
        ("misplaced-file", events[3].event_id), ("deleted-file", events[3].event_id)])


def test_files_of_events_not_yet_in_sql_are_not_tampering(site: Site, events: list) -> None:  # type: ignore[type-arg]
    from archive.consumer import ArchiveSink
    from ingest.log import JournalReader, run_consumer

    late = make_event(subject="late")
    site.add(late, consume=False)
    sink = ArchiveSink(site.cfg.archive_maildir, site.cfg.quarantine_dir, fsync_workers=1)
    run_consumer(JournalReader(site.journal), sink, once=True)  # archive ahead of summaries
    sink.close()
    result = site.cli("verify")
    assert result.exit_code == 0, result.output
    assert "not in SQL yet" in result.stderr


def test_lawful_deletion_is_not_tampering(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.cfg.retention = dataclasses.replace(site.cfg.retention, default_days=1)
    result = site.cli("retention", "apply", "--now", "2099-01-01")
    assert result.exit_code == 0, result.output
    assert "deleted 6 in all" in result.stdout
    assert site.verify_kinds() == []
    # a tombstone removed to make the deletion look like an accident is caught too
    (tomb,) = site.sql("SELECT event_id FROM deletions WHERE ref_event_id = :e", e=events[0].event_id)
    site.sql("DELETE FROM deletions WHERE event_id = :e", e=tomb[0])
    assert site.verify_kinds() == ["deleted-file", "deleted-row", "inconsistent"]


def test_altered_tombstone(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.cfg.retention = dataclasses.replace(site.cfg.retention, default_days=1)
    assert site.cli("retention", "apply", "--now", "2099-01-01").exit_code == 0
    site.sql("UPDATE deletions SET reason = 'court order' WHERE ref_event_id = :e", e=events[0].event_id)
    assert site.verify_kinds() == ["altered-row"]


def test_the_cli_reports_in_words(site: Site, events: list) -> None:  # type: ignore[type-arg]
    site.sql("UPDATE messages SET sender = 'ceo@example.com' WHERE event_id = :e", e=events[4].event_id)
    result = site.cli("verify", "--no-files", "--no-log")
    assert result.exit_code == 1
    assert f"altered-row: messages mx1.example.com#5 {events[4].event_id}: content does not match" \
        in result.stdout
    assert "1 PROBLEM(S)" in result.stderr
    bad_anchor = site.root / "bad.json"
    bad_anchor.write_text("[]")
    assert site.cli("verify", "--anchor", str(bad_anchor)).exit_code == 2


def test_a_forged_row_appended_with_a_valid_link_and_head_is_unlogged(site: Site, events: list  # type: ignore[type-arg]
                                                                      ) -> None:
    import random

    from tests.tamper import forge_append

    forged = forge_append(site, random.Random(1))
    assert site.verify_kinds("--no-log") == []  # the chain and the copies alone cannot tell
    report = json.loads(site.cli("verify", "--json").stdout)
    assert [(p["kind"], p["event_id"], p["where"]) for p in report["problems"]] == [
        ("unlogged-row", forged.event_ids[0], "messages mx1.example.com#8")]


@pytest.mark.parametrize(("column", "value"), [("subject", "nothing to see"), ("category", "spam"),
                                               ("spam_score", 0.5)])
def test_a_row_altered_and_the_whole_chain_rehashed_is_named(site: Site, events: list,  # type: ignore[type-arg]
                                                             column: str, value: Any) -> None:
    from tests.tamper import rehash_chains

    site.sql(f"UPDATE messages SET {column} = :v WHERE event_id = :e", v=value, e=events[2].event_id)
    rehash_chains(site)
    assert site.verify_kinds("--no-log") == []
    report = json.loads(site.cli("verify", "--json").stdout)
    assert [(p["kind"], p["where"], p["event_id"], p["detail"]) for p in report["problems"]] == [
        ("log-mismatch", "messages mx1.example.com#3", events[2].event_id,
         f"differs from its journal event in: {column}")]


def test_spamd_negative_zero_is_no_false_alarm(site: Site) -> None:
    """spamd reports -0.0; SQLite gives it back as 0.0, PostgreSQL keeps the sign."""
    evs = [make_event(spam_score=-0.0, subject="zero"), make_event(spam_score=0.0),
           make_event(spam_score=-0.0, action=Action.QUARANTINE, category=Category.SPAM)]
    site.add(*evs)
    result = site.cli("verify", "--save-anchor", str(site.root / "anchor.json"))
    assert result.exit_code == 0, result.output
    assert (site.root / "anchor.json").exists()


def test_rows_sealed_before_version_3_keep_verifying(site: Site) -> None:
    """A row hashed by an earlier qscan (no chain_version; -0.0 hashed with its sign, which
    SQLite then dropped) verifies; the same row with the zero made 0.5 does not."""
    from compliance import canonical

    ev = make_event(spam_score=-0.0)
    site.add(ev)
    site.sql("UPDATE messages SET chain_version = NULL, crypto = NULL WHERE event_id = :e",
             e=ev.event_id)
    with site.engine.connect() as conn:  # seal it as the previous release did
        from compliance.verify import _stream

        (entry,) = list(_stream(conn, "message", "mx1.example.com"))
    legacy = canonical.link(canonical.GENESIS, canonical.encode(
        "message", "mx1.example.com", 1, {**entry.row, "spam_score": -0.0}, entry.children))
    assert b'"v":1' in canonical.encode("message", "h", 1, entry.row, entry.children)
    site.sql("UPDATE messages SET chain_hash = :h", h=legacy)
    site.sql("UPDATE chain_heads SET hash = :h", h=legacy)
    assert site.verify_kinds("--no-log") == []
    site.sql("UPDATE messages SET spam_score = 0.5")
    assert site.verify_kinds("--no-log") == ["altered-row"]


def test_old_copies_are_judged_by_the_decision_recorded_when_archived(site: Site) -> None:
    """Archive under filter A, change to filter B: verify stays clean, for old and new mail."""
    site.cfg.archive = replace(site.cfg.archive, filter=r"@sales\.example\.org$")
    a = [make_event(recipients=["x@sales.example.org"]), make_event(recipients=["y@hr.example.org"]),
         make_event(recipients=["z@sales.example.org"], action=Action.DROP)]
    site.add(*a)
    assert site.copy_path(a[0]).exists() and not site.copy_path(a[1]).exists()
    site.cfg.archive = replace(site.cfg.archive, filter=r"@hr\.example\.org$")  # filter B
    b = [make_event(recipients=["x@sales.example.org"]), make_event(recipients=["y@hr.example.org"])]
    site.add(*b)
    assert not site.copy_path(b[0]).exists() and site.copy_path(b[1]).exists()
    result = site.cli("verify")
    assert result.exit_code == 0, result.output
    site.cfg.archive = replace(site.cfg.archive, enabled=False)  # and with the archive switched off today
    assert site.verify_kinds() == []
    # the record is what verify trusts: an archived copy deleted still shows
    site.copy_path(a[0]).unlink()
    report = json.loads(site.cli("verify", "--json").stdout)
    assert [(p["kind"], p["event_id"]) for p in report["problems"]] == [("deleted-file", a[0].event_id)]


def test_a_decision_rewritten_to_hide_a_deleted_copy_is_inconsistent(site: Site) -> None:
    ev = make_event()
    site.add(ev)
    record = site.cfg.archive_maildir / ".qscan-archive-decisions"
    site.copy_path(ev).unlink()
    record.write_text(record.read_text().replace(f"D {ev.event_id} 1 ", f"D {ev.event_id} 0 "))
    report = json.loads(site.cli("verify", "--json").stdout)
    assert [(p["kind"], p["event_id"]) for p in report["problems"]] == [("inconsistent", ev.event_id)]
    assert "settings recorded with it" in report["problems"][0]["detail"]
    record.write_text(record.read_text() + "garbage\n")
    assert site.verify_kinds() == ["altered-file", "deleted-file"]


def test_raw_sha256_of_events_older_than_the_field_is_checked_against_the_raw_bytes(
        site: Site, events: list) -> None:  # type: ignore[type-arg]
    """The rejected message has no copy to check, and its event (like every event written
    before the daemon hashed the queued message) no raw_sha256: the journal's bytes decide."""
    from tests.tamper import rehash_chains

    rejected = events[-1]
    assert rejected.raw_sha256 is None and rejected.action == Action.REJECT
    site.sql("UPDATE messages SET raw_sha256 = :h WHERE event_id = :e", h="0" * 64,
             e=rejected.event_id)
    rehash_chains(site)
    report = json.loads(site.cli("verify", "--json").stdout)
    assert [(p["kind"], p["event_id"], p["detail"]) for p in report["problems"]] == [
        ("log-mismatch", rejected.event_id, "differs from its journal event in: raw_sha256")]
