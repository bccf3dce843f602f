"""Four-eyes: a pending release request denied by another login, or withdrawn by its
requester (``qscan quarantine deny``), on SQLite and PostgreSQL.

Operators are told apart as tests/test_four_eyes.py does: root run through sudo by
another user (SUDO_USER).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance.summaries import SummarySink
from ingest.event import Category
from ingest.log import JournalReader, run_consumer
from tests.test_four_eyes import CARDS, as_user, events
from tests.test_quarantine import QSite, quarantined

pytestmark = pytest.mark.integration


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[QSite]:
    s = QSite(migrated_url, tmp_path, '[quarantine]\nrelease_officers = ["carol"]\n')
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def requested(site: QSite, monkeypatch: pytest.MonkeyPatch) -> Any:
    ev = quarantined(Category.DLP, "dlp", findings=[CARDS], recipients=["partner@outside.test"])
    site.add(ev)
    asked = as_user(monkeypatch, site, "alice", "release", ev.event_id, "--reason", "test data")
    assert asked.exit_code == 0, asked.output
    return ev


def _request_row(site: QSite, event_id: str) -> tuple[Any, ...]:
    (row,) = site.sql("SELECT state, denied_by, denied_operator, denial_reason, "
                      "denial_event_id FROM quarantine_release_requests "
                      "WHERE ref_event_id = :e", e=event_id)
    return tuple(row)


@pytest.mark.parametrize("who, state", [("bob", "denied"), ("alice", "withdrawn")])
def test_a_pending_request_is_denied_or_withdrawn(site: QSite, requested: Any, who: str,
                                                  state: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    done = as_user(monkeypatch, site, who, "deny", requested.event_id[:10], "--reason",
                   "real card numbers")
    assert done.exit_code == 0, done.output
    assert ("withdrew" if who == "alice" else "denied") in done.output
    [den] = events(site, "release.denied")
    [req] = events(site, "release.requested")
    assert (den["operator"], den["withdrawn"], den["request_id"], den["ref_event_id"]) == (
        who, who == "alice", req["event_id"], requested.event_id)
    assert den["actor"] == f"{who}@admin.example.com"
    assert _request_row(site, requested.event_id) == (
        state, f"{who}@admin.example.com", who, "real card numbers", den["event_id"])
    # nothing was released, nothing is pending, and it cannot be approved or requested again
    assert site.queued() == [] and site.state(requested.event_id) == "quarantined"
    assert json.loads(site.q("list", "--pending", "--format", "json").stdout) == []
    late = as_user(monkeypatch, site, "dave", "approve", requested.event_id, "--reason", "ok")
    assert late.exit_code == 1 and "no release request is pending" in late.output
    again = as_user(monkeypatch, site, "dave", "release", requested.event_id, "--reason", "x")
    assert again.exit_code == 1 and state in again.output
    twice = as_user(monkeypatch, site, "dave", "deny", requested.event_id, "--reason", "x")
    assert twice.exit_code == 1 and f"is {state}" in twice.output
    # the history shows on the message
    shown = site.q("show", requested.event_id)
    assert f"{state}:" in shown.output and "real card numbers" in shown.output
    assert site.verify_kinds("--no-files") == []
    # a release officer may still release it in one step, recorded as forced
    forced = as_user(monkeypatch, site, "carol", "release", requested.event_id, "--reason",
                     "checked again", "--force")
    assert forced.exit_code == 0, forced.output
    assert _request_row(site, requested.event_id)[0] == state
    assert site.verify_kinds("--no-files") == []


def test_deny_needs_a_pending_request_and_a_reason(site: QSite, requested: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    blank = as_user(monkeypatch, site, "bob", "deny", requested.event_id, "--reason", " ")
    assert blank.exit_code == 1 and "say why" in blank.output
    other = quarantined(Category.DLP, "dlp", findings=[CARDS])
    site.add(other)
    none = as_user(monkeypatch, site, "bob", "deny", other.event_id, "--reason", "no")
    assert none.exit_code == 1 and "no pending release request" in none.output
    ok = as_user(monkeypatch, site, "bob", "approve", requested.event_id, "--reason", "fine")
    assert ok.exit_code == 0, ok.output
    late = as_user(monkeypatch, site, "dave", "deny", requested.event_id, "--reason", "no")
    assert late.exit_code == 1 and "no pending release request" in late.output
    assert events(site, "release.denied") == []


def test_verify_holds_denials_to_their_events_both_ways(site: QSite, requested: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, site, "bob", "deny", requested.event_id, "--reason", "real cards")
    assert site.verify_kinds("--no-files") == []
    [den] = events(site, "release.denied")
    # reopened in SQL, so it could be approved after its denial
    site.sql("UPDATE quarantine_release_requests SET state = 'pending', denial_event_id = NULL")
    # the event disagrees, and the row keeps a denial's facts without the denial
    assert site.verify_kinds("--no-files") == ["inconsistent", "log-mismatch"]
    site.sql("UPDATE quarantine_release_requests SET denied_at = NULL, denied_by = NULL, "
             "denied_operator = NULL, denial_reason = NULL")
    assert site.verify_kinds("--no-files") == ["log-mismatch"]
    site.sql("UPDATE quarantine_release_requests SET state = 'denied', denied_at = :t, "
             "denied_by = 'bob@admin.example.com', denied_operator = 'bob', "
             "denial_reason = 'real cards'", t=den["time"])
    # reopened, the denial's id left: the row contradicts itself as well
    site.sql("UPDATE quarantine_release_requests SET state = 'pending', denial_event_id = :d",
             d=den["event_id"])
    assert site.verify_kinds("--no-files") == ["inconsistent", "log-mismatch"]
    # the denier rewritten
    site.sql("UPDATE quarantine_release_requests SET state = 'denied', denial_event_id = :d, "
             "denied_operator = 'alice'", d=den["event_id"])
    assert site.verify_kinds("--no-files") == ["log-mismatch"]
    # a denial in SQL with no event on the journal (closed to hide a pending release)
    site.sql("UPDATE quarantine_release_requests SET denied_operator = 'bob', "
             "denial_event_id = 'forged'")
    assert sorted(set(site.verify_kinds("--no-files"))) == ["log-mismatch", "unlogged-row"]


def test_denials_replay_into_an_empty_database(site: QSite, requested: Any,
                                               monkeypatch: pytest.MonkeyPatch,
                                               fresh_db: Any) -> None:
    as_user(monkeypatch, site, "alice", "deny", requested.event_id, "--reason", "my mistake")
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
            rows = conn.execute(text("SELECT state, denied_operator, denial_reason FROM "
                                     "quarantine_release_requests")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("withdrawn", "alice", "my mistake")]
