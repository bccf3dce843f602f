"""The console's quarantine (in process, SQLite and PostgreSQL): list and filters, show,
release to the original recipients or another address, delete, four-eyes requests, approvals
and denials by a second person, the user role's self-release and every role's limits.

Through the real journal, consumers, quarantine maildirs and the stand-in qmail-queue
(tests/test_quarantine.py's QSite), as the CLI's tests; every action must be the same event
the CLI records, naming the signed-in login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ingest.event import Category, Finding
from tests.test_quarantine import EICAR, QSite, quarantined
from tests.web_site import add_accounts, csrf_of, journal_events, signed_in

CARDS = Finding(scanner="dlp", verdict=Category.DLP, name="card-numbers")


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[QSite]:
    s = QSite(migrated_url, tmp_path, "[web]\npage_size = 5\nuser_release = true\n")
    try:
        add_accounts(s)
        yield s
    finally:
        s.close()


@pytest.fixture
def mail(site: QSite) -> dict[str, Any]:
    evs = {
        "spam": quarantined(recipients=["bob@example.org", "carol@example.org"],
                            subject="Cheap <b>pills</b>"),
        "policy": quarantined(Category.POLICY, "bad-attachment", recipients=["dave@example.net"]),
        "virus": quarantined(Category.VIRUS, "virus", findings=[EICAR], recipients=["bob@example.org"]),
        "dlp": quarantined(Category.DLP, "dlp", findings=[CARDS], recipients=["partner@outside.test"]),
    }
    site.add(*evs.values())
    return evs


def client(site: QSite, login: str) -> TestClient:
    return signed_in(site, login, address="192.0.2.60")


def post(c: TestClient, path: str, **data: str) -> Any:
    token = csrf_of(c.get("/quarantine").text)
    return c.post(path, data={"csrf": token, **data}, follow_redirects=False)


def test_list_filters_and_show(site: QSite, mail: dict[str, Any]) -> None:
    c = client(site, "aud")
    page = c.get("/quarantine")
    assert page.status_code == 200 and "4 quarantined messages" in page.text
    assert "Cheap &lt;b&gt;pills&lt;/b&gt;" in page.text and "<b>pills" not in page.text
    spam = c.get("/quarantine?folder=spam")
    assert "1 quarantined messages" in spam.text and mail["spam"].event_id in spam.text
    assert mail["dlp"].event_id not in spam.text
    assert "1 quarantined messages" in c.get("/quarantine?rule=Eicar*").text
    assert "1 quarantined messages" in c.get("/quarantine?recipient=dave@*").text
    bad = c.get("/quarantine?folder=nope")
    assert bad.status_code == 400 and "unknown folder" in bad.text
    assert c.get("/quarantine?since=someday").status_code == 400
    shown = c.get(f"/quarantine/{mail['virus'].event_id}")
    assert shown.status_code == 200 and "Eicar-Signature" in shown.text and "four-eyes" in shown.text
    assert "/release" not in shown.text  # an auditor reads only
    assert c.get("/approvals").status_code == 200
    assert c.get("/quarantine/01234567-89ab-7def-8123-456789abcdef").status_code == 404


def test_release_to_original_recipients_and_to_an_address(site: QSite, mail: dict[str, Any]) -> None:
    c = client(site, "pam")
    no_reason = post(c, f"/quarantine/{mail['spam'].event_id}/release", reason=" ")
    assert no_reason.status_code == 409 and "Say why" in no_reason.text
    assert site.queued() == []
    done = post(c, f"/quarantine/{mail['spam'].event_id}/release", reason="false positive")
    assert done.status_code == 303 and done.headers["location"].endswith("?done=released")
    assert "Released" in c.get(done.headers["location"]).text
    assert site.state(mail["spam"].event_id) == "released"
    [(_, envelope)] = site.queued()
    assert b"Tbob@example.org\0" in envelope and b"Tcarol@example.org\0" in envelope
    again = post(c, f"/quarantine/{mail['spam'].event_id}/release", reason="twice")
    assert again.status_code == 409 and "already released" in again.text
    to = post(c, f"/quarantine/{mail['policy'].event_id}/release", reason="for analysis",
              to="it-security@example.com")
    assert to.status_code == 303
    assert b"Tit-security@example.com\0" in site.queued()[-1][1]
    assert b"dave@example.net" not in site.queued()[-1][1]
    released = journal_events(site, "message.released")
    assert [(r.actor, r.operator, r.reason) for r in released] == [
        ("pam@admin.example.com", "pam", "false positive"),
        ("pam@admin.example.com", "pam", "for analysis")]
    bad_to = post(c, f"/quarantine/{mail['virus'].event_id}/release", reason="x", to="not an address")
    assert bad_to.status_code == 409 and "not a usable recipient" in bad_to.text


def test_delete_needs_a_reason_and_is_recorded(site: QSite, mail: dict[str, Any]) -> None:
    c = client(site, "dee")
    path = f"/quarantine/{mail['policy'].event_id}/delete"
    assert post(c, path, reason="").status_code == 409
    done = post(c, path, reason="phishing, confirmed")
    assert done.status_code == 303 and site.state(mail["policy"].event_id) == "deleted"
    [deleted] = journal_events(site, "message.deleted")
    assert deleted.actor == "dee@admin.example.com" and deleted.reason.endswith("phishing, confirmed")
    assert not site.copy_path(mail["policy"], "policy").exists()


def test_four_eyes_request_then_a_second_person_approves(site: QSite, mail: dict[str, Any]) -> None:
    pam, dee = client(site, "pam"), client(site, "dee")
    dlp = mail["dlp"].event_id
    asked = post(pam, f"/quarantine/{dlp}/release", reason="test card numbers")
    assert asked.status_code == 303 and asked.headers["location"].endswith("?done=requested")
    assert site.queued() == [] and site.state(dlp) == "quarantined"
    [req] = journal_events(site, "release.requested")
    assert (req.actor, req.operator) == ("pam@admin.example.com", "pam")
    assert "to its original recipients" in dee.get(f"/quarantine/{dlp}").text
    pending = dee.get("/approvals")
    assert dlp in pending.text and "test card numbers" in pending.text
    mine = pam.get(f"/quarantine/{dlp}").text
    assert "Withdraw my request" in mine and "Approve and release" not in mine
    assert "Approve and release" in dee.get(f"/quarantine/{dlp}").text
    own = post(pam, f"/quarantine/{dlp}/approve", reason="me myself")  # forged: still refused
    assert own.status_code == 409 and "cannot approve" in own.text and site.queued() == []
    ok = post(dee, f"/quarantine/{dlp}/approve", reason="checked: test data")
    assert ok.status_code == 303 and len(site.queued()) == 1 and site.state(dlp) == "released"
    [rel] = journal_events(site, "message.released")
    assert (rel.operator, rel.requested_by, rel.request_id) == ("dee", "pam", req.event_id)
    assert dlp not in dee.get("/approvals").text


def test_four_eyes_deny_and_withdraw(site: QSite, mail: dict[str, Any]) -> None:
    pam, dee = client(site, "pam"), client(site, "dee")
    virus, dlp = mail["virus"].event_id, mail["dlp"].event_id
    assert post(pam, f"/quarantine/{virus}/release", reason="false positive?").status_code == 303
    denied = post(dee, f"/quarantine/{virus}/deny", reason="it is a real virus")
    assert denied.status_code == 303 and site.state(virus) == "quarantined"
    assert post(dee, f"/quarantine/{dlp}/release", reason="asked by sales",
                to="analyst@example.com").status_code == 303
    assert "asked to release this message to analyst@example.com" in dee.get(f"/quarantine/{dlp}").text
    assert post(dee, f"/quarantine/{dlp}/deny", reason="changed my mind").status_code == 303
    closed = journal_events(site, "release.denied")
    assert [(d.operator, d.withdrawn) for d in closed] == [("dee", False), ("dee", True)]
    assert site.queued() == []


@pytest.mark.parametrize("login", ["aud", "lea"])
def test_readers_cannot_act(site: QSite, mail: dict[str, Any], login: str) -> None:
    c = client(site, login)
    for action in ("release", "delete", "approve", "deny"):
        refused = post(c, f"/quarantine/{mail['spam'].event_id}/{action}", reason="x")
        assert refused.status_code == 403, action
    assert site.state(mail["spam"].event_id) == "quarantined" and site.queued() == []


def test_user_sees_and_releases_only_own_spam(site: QSite, mail: dict[str, Any]) -> None:
    c = client(site, "bob")
    page = c.get("/quarantine")
    assert "2 quarantined messages" in page.text  # bob's spam and bob's virus
    assert mail["dlp"].event_id not in page.text
    assert c.get(f"/quarantine/{mail['dlp'].event_id}").status_code == 404  # IDOR: as unknown
    assert post(c, f"/quarantine/{mail['policy'].event_id}/release", reason="x").status_code == 404
    assert c.get("/approvals").status_code == 403
    virus = c.get(f"/quarantine/{mail['virus'].event_id}")
    assert virus.status_code == 200 and "Release to me" not in virus.text
    assert post(c, f"/quarantine/{mail['virus'].event_id}/release", reason="mine").status_code == 403
    assert post(c, f"/quarantine/{mail['spam'].event_id}/delete", reason="x").status_code == 403
    shown = c.get(f"/quarantine/{mail['spam'].event_id}")
    assert "Release to me" in shown.text
    done = post(c, f"/quarantine/{mail['spam'].event_id}/release", reason="I expected it",
                to="mallory@evil.test")  # ignored: a user's release goes to its own address
    assert done.status_code == 303
    [(_, envelope)] = site.queued()
    assert envelope.count(b"T") >= 1 and b"Tbob@example.org\0" in envelope
    assert b"carol" not in envelope and b"mallory" not in envelope
    [rel] = journal_events(site, "message.released")
    assert rel.actor == "bob@admin.example.com" and rel.recipients == ["bob@example.org"]


def test_user_release_off_by_default(migrated_url: str, tmp_path: Path) -> None:
    s = QSite(migrated_url, tmp_path)
    try:
        add_accounts(s)
        ev = quarantined(recipients=["bob@example.org"])
        s.add(ev)
        c = client(s, "bob")
        assert "Release to me" not in c.get(f"/quarantine/{ev.event_id}").text
        assert post(c, f"/quarantine/{ev.event_id}/release", reason="mine").status_code == 403
        assert s.queued() == []
    finally:
        s.close()
