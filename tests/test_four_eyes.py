"""Four-eyes release from the DLP and virus quarantines (SQLite and PostgreSQL).

Through the real journal and consumers and the stand-in qmail-queue (tests/test_quarantine.py's
QSite). Operators are told apart by login: the tests run as root, so each "operator" is
root run through sudo by another user (SUDO_USER), as qscan.cli.quarantine.operator reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance.summaries import SummarySink
from ingest.event import Category, Finding
from ingest.log import JournalReader, run_consumer
from tests.test_quarantine import EICAR, QSite, quarantined

CARDS = Finding(scanner="dlp", verdict=Category.DLP, name="card-numbers")


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[QSite]:
    s = QSite(migrated_url, tmp_path, '[quarantine]\nrelease_officers = ["carol"]\n')
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def dlp(site: QSite) -> Any:
    ev = quarantined(Category.DLP, "dlp", findings=[CARDS], recipients=["partner@outside.test"])
    site.add(ev)
    return ev


def as_user(monkeypatch: pytest.MonkeyPatch, site: QSite, user: str, *args: str) -> Any:
    monkeypatch.setenv("SUDO_USER", user)
    return site.q(*args)


def events(site: QSite, kind: str) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in site.journal.read(0, 1000, with_raw=False)
            if e.type == kind]


@pytest.mark.integration
def test_dlp_release_needs_a_second_operator(site: QSite, dlp: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    asked = as_user(monkeypatch, site, "alice", "release", dlp.event_id, "--reason", "test data")
    assert asked.exit_code == 0, asked.output
    assert "requested" in asked.output and "second operator" in asked.output
    assert site.queued() == [] and site.state(dlp.event_id) == "quarantined"
    [req] = events(site, "release.requested")
    assert req["operator"] == "alice" and req["ref_event_id"] == dlp.event_id

    pending = json.loads(site.q("list", "--pending", "--format", "json").stdout)
    assert [(p["event_id"], p["request_id"]) for p in pending] == [(dlp.event_id, req["event_id"])]
    assert pending[0]["requested_by"] == "alice@admin.example.com"

    again = as_user(monkeypatch, site, "bob", "release", dlp.event_id, "--reason", "me too")
    assert again.exit_code == 1 and "already has a release request" in again.output

    own = as_user(monkeypatch, site, "alice", "approve", dlp.event_id, "--reason", "fine")
    assert own.exit_code == 1 and "cannot approve" in own.output
    assert site.queued() == []

    ok = as_user(monkeypatch, site, "bob", "approve", dlp.event_id[:10], "--reason", "checked")
    assert ok.exit_code == 0, ok.output
    assert len(site.queued()) == 1 and site.state(dlp.event_id) == "released"
    [rel] = events(site, "message.released")
    assert (rel["operator"], rel["requested_by"], rel["request_id"]) == ("bob", "alice",
                                                                        req["event_id"])
    assert rel["actor"] == "bob@admin.example.com" and rel["forced"] is False

    # exactly once: a second approval and a plain release are refused, nothing more queued
    twice = as_user(monkeypatch, site, "dave", "approve", dlp.event_id, "--reason", "again")
    assert twice.exit_code == 1 and "already released" in twice.output
    assert len(site.queued()) == 1
    assert json.loads(site.q("list", "--pending", "--format", "json").stdout) == []
    assert site.verify_kinds("--no-files") == []


@pytest.mark.integration
def test_force_is_for_release_officers_only_and_recorded(
        site: QSite, monkeypatch: pytest.MonkeyPatch) -> None:
    virus = quarantined(Category.VIRUS, "virus", findings=[EICAR])
    site.add(virus)
    refused = as_user(monkeypatch, site, "alice", "release", virus.event_id, "--reason", "fp",
                      "--force")
    assert refused.exit_code == 1 and "release_officers" in refused.output
    assert site.queued() == [] and events(site, "release.requested") == []
    forced = as_user(monkeypatch, site, "carol", "release", virus.event_id, "--reason", "fp",
                     "--force")
    assert forced.exit_code == 0, forced.output
    assert len(site.queued()) == 1
    [rel] = events(site, "message.released")
    assert rel["forced"] is True and rel["operator"] == "carol" and rel["request_id"] is None


@pytest.mark.integration
def test_folders_outside_four_eyes_release_in_one_step(site: QSite,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spam = quarantined()
    site.add(spam)
    done = as_user(monkeypatch, site, "alice", "release", spam.event_id, "--reason", "fp")
    assert done.exit_code == 0 and "released" in done.output
    assert len(site.queued()) == 1


@pytest.mark.integration
def test_concurrent_approvals_release_once(site: QSite, dlp: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from compliance import quarantine as q

    as_user(monkeypatch, site, "alice", "release", dlp.event_id, "--reason", "test data")
    (site.record / "sleep").write_text("1")
    import threading

    results: list[Any] = []

    def approve() -> None:
        results.append(site.q("approve", dlp.event_id, "--reason", "ok"))

    monkeypatch.setenv("SUDO_USER", "bob")
    threads = [threading.Thread(target=approve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.exit_code for r in results) == [0, 1]
    assert len(site.queued()) == 1
    assert len(events(site, "message.released")) == 1
    assert q.pending(site.engine) == []


@pytest.mark.integration
def test_verify_checks_release_records(site: QSite, dlp: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, site, "alice", "release", dlp.event_id, "--reason", "test data")
    as_user(monkeypatch, site, "bob", "approve", dlp.event_id, "--reason", "checked")
    assert site.verify_kinds("--no-files") == []
    # the approver rewritten to be the requester in SQL: the journal disagrees
    site.sql("UPDATE quarantine_releases SET requested_by = 'bob'")
    assert site.verify_kinds("--no-files") == ["log-mismatch"]
    site.sql("UPDATE quarantine_releases SET requested_by = 'alice'")
    site.sql("DELETE FROM quarantine_release_requests")
    assert site.verify_kinds("--no-files") == ["missing-row", "missing-row"]


@pytest.mark.integration
def test_requests_and_approvals_replay_into_an_empty_database(
        site: QSite, dlp: Any, monkeypatch: pytest.MonkeyPatch, fresh_db: Any) -> None:
    as_user(monkeypatch, site, "alice", "release", dlp.event_id, "--reason", "test data")
    other = quarantined(Category.DLP, "dlp", findings=[CARDS])
    site.add(other)
    as_user(monkeypatch, site, "alice", "release", other.event_id, "--reason", "later")
    as_user(monkeypatch, site, "bob", "approve", dlp.event_id, "--reason", "checked")
    url = fresh_db()
    sink = SummarySink(url)
    try:
        run_consumer(JournalReader(site.journal), sink, once=True)
    finally:
        sink.close()
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = sorted(conn.execute(text(
                "SELECT ref_event_id, operator, state FROM quarantine_release_requests")).all())
    finally:
        engine.dispose()
    assert rows == sorted([(dlp.event_id, "alice", "released"),
                           (other.event_id, "alice", "pending")])


@pytest.mark.integration
def test_a_request_for_mail_deleted_meanwhile_is_not_pending(
        site: QSite, dlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, site, "alice", "release", dlp.event_id, "--reason", "test data")
    deleted = as_user(monkeypatch, site, "carol", "delete", dlp.event_id, "--reason", "phish")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(site.q("list", "--pending", "--format", "json").stdout) == []
    late = as_user(monkeypatch, site, "bob", "approve", dlp.event_id, "--reason", "ok")
    assert late.exit_code == 1 and "deleted" in late.output
    assert site.queued() == []
