"""The console's own activity in SQL and on its page: sign-ins (and refused ones), account
changes, raw reads and export downloads become console_activity rows (the summaries consumer),
the activity page lists them for auditors and postmasters only, and `qscan verify` compares rows
and events both ways (a deleted, altered or forged row is named)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from compliance.activity import listing
from ingest.event import MessageScanned
from qscan.web.app import create_app
from tests.compliance_site import Site, open_site
from tests.web_site import HOSTILE_SUBJECT, PASSWORD, csrf_of, populate


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path, "[web]\nlogin_attempts = 50\n")


@pytest.fixture
def events(site: Site) -> dict[str, MessageScanned]:
    return populate(site)


def client(site: Site, address: str = "192.0.2.80") -> TestClient:
    return TestClient(create_app(site.cfg, engine=site.engine, secure_cookies=False),
                      client=(address, 50000))


def sign_in(c: TestClient, login: str, password: str = PASSWORD) -> object:
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"login": login, "password": password, "csrf": token, "next": "/"})


def test_console_events_become_rows_listed_for_auditors(site: Site, events: dict[str, MessageScanned]) -> None:
    lea = client(site)
    sign_in(lea, "lea")
    ev = events["bob"]
    lea.post(f"/message/{ev.event_id}/raw", data={"csrf": csrf_of(lea.get(f"/message/{ev.event_id}").text)})
    intruder = client(site, "198.51.100.9")
    sign_in(intruder, "pam", "wrong password")
    sign_in(intruder, HOSTILE_SUBJECT, "whatever")  # a login is mail-like text: shown escaped
    site.consume()
    rows = listing(site.engine)
    kinds = [(r["type"], r["outcome"]) for r in rows]
    assert kinds.count(("console.account", "created")) == 5
    assert ("console.signin", "ok") in kinds and kinds.count(("console.signin", "failed")) == 2
    [read] = [r for r in rows if r["type"] == "message.raw_read"]
    assert (read["actor"], read["role"], read["remote"], read["subject"], read["detail"]) == (
        "lea@admin.example.com", "legal", "192.0.2.80", ev.event_id, "archive")
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert [r["type"] for r in listing(site.engine, actor="lea")] == ["message.raw_read", "console.signin"]
    assert listing(site.engine, kind="console.signin", actor="pam")[0]["outcome"] == "failed"

    aud = client(site)
    sign_in(aud, "aud")
    page = aud.get("/activity")
    assert page.status_code == 200 and "raw mail read" in page.text and "198.51.100.9" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert f'href="/message/{ev.event_id}"' in page.text
    only = aud.get("/activity?login=pam&kind=console.signin")
    assert only.text.count("<tr>") == 2  # the header and pam's refused sign-in
    assert aud.get("/activity?since=yesterday").status_code == 400
    for login in ("lea", "dee", "bob"):
        other = client(site)
        sign_in(other, login)
        assert other.get("/activity").status_code == 403
        assert 'href="/activity"' not in other.get("/").text


def test_activity_pages_older_by_time_and_id(site: Site, events: dict[str, MessageScanned],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from compliance import activity

    monkeypatch.setattr(activity, "PAGE", 2)
    site.consume()
    pam = client(site)
    sign_in(pam, "pam")
    site.consume()
    seen: list[str] = []
    url: str | None = "/activity"
    while url:
        page = pam.get(url)
        assert page.status_code == 200
        seen += [line for line in page.text.splitlines() if 'data-label="What"' in line]
        older = [part.split('"')[0] for part in page.text.split('href="/activity?')[1:]
                 if "before=" in part.split('"')[0]]
        url = "/activity?" + older[0].replace("&amp;", "&") if older else None
    assert len(seen) == 6  # five accounts made, one sign-in: each once, over three pages


def test_verify_compares_activity_rows_with_their_events(site: Site,
                                                         events: dict[str, MessageScanned]) -> None:
    c = client(site)
    sign_in(c, "lea")
    site.consume()
    report = json.loads(site.cli("verify", "--json").output)
    assert report["ok"], report["problems"]
    [signin] = site.sql("SELECT event_id FROM console_activity WHERE type = 'console.signin'")
    site.sql("UPDATE console_activity SET remote = '203.0.113.1' WHERE event_id = :e", e=signin[0])
    [acct] = site.sql("SELECT event_id FROM console_activity WHERE type = 'console.account' LIMIT 1")
    site.sql("DELETE FROM console_activity WHERE event_id = :e", e=acct[0])
    site.sql("INSERT INTO console_activity (event_id, time, host, type, actor, role, outcome) "
             "VALUES ('01990000-0000-7000-8000-000000000001', CURRENT_TIMESTAMP, 'admin.example.com', "
             "'console.signin', 'mallory', 'postmaster', 'ok')")
    problems = json.loads(site.cli("verify", "--json").output)["problems"]
    found = {(p["kind"], p["event_id"]) for p in problems if p["where"] == "console_activity"}
    assert found == {("log-mismatch", signin[0]), ("missing-row", acct[0]),
                     ("unlogged-row", "01990000-0000-7000-8000-000000000001")}, problems
    assert any("remote" in p["detail"] for p in problems if p["kind"] == "log-mismatch")


def test_the_cli_lists_what_the_page_lists(site: Site, events: dict[str, MessageScanned]) -> None:
    from click.testing import CliRunner

    from qscan.cli import cli

    sign_in(client(site), "pam", "wrong password")
    site.consume()
    config = site.root / "qscan.toml"
    config.write_text(f'data_dir = "{site.root}"\n[sql]\nurl = "{site.url}"\n')
    run = CliRunner()
    got = run.invoke(cli, ["-c", str(config), "web", "activity", "--kind", "console.signin", "--json"])
    assert got.exit_code == 0, got.output
    [row] = json.loads(got.stdout)
    assert (row["actor"], row["outcome"], row["remote"]) == ("pam", "failed", "192.0.2.80")
    assert row["time"].endswith("+00:00")  # exact, with its zone
    table = run.invoke(cli, ["-c", str(config), "web", "activity", "--since", "1d"], terminal_width=80)
    assert table.exit_code == 0 and "console.account" in table.stdout and "console.signin" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    none = run.invoke(cli, ["-c", str(config), "web", "activity", "--login", "nobody"])
    assert none.exit_code == 0 and "no console activity" in none.output
