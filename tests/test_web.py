"""The web console in process (Starlette's TestClient): sign-in, sessions, CSRF, roles and the
user role's scope (IDOR), escaping of hostile mail text, audit search paging and downloads,
security headers; and `qscan web user`. The real browser drives it in test_web_browser.py."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient  # the web extra: qscan[test] installs it

from compliance import accounts
from ingest.event import MessageScanned
from qscan.web.app import create_app
from tests.compliance_site import Site, open_site
from tests.factories import make_event
from tests.web_site import PASSWORD, csrf_of, journal_events, populate


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path, "[web]\npage_size = 5\nlogin_attempts = 3\n"
                         'proxy_header = "X-Remote-User"\ntrusted_proxies = ["127.0.0.1"]\n')


@pytest.fixture
def events(site: Site) -> dict[str, MessageScanned]:
    return populate(site)


def client(site: Site, *, secure: bool = False, address: str = "192.0.2.50") -> TestClient:
    app = create_app(site.cfg, engine=site.engine, secure_cookies=secure)
    return TestClient(app, base_url="https://console.example.com" if secure else "http://testserver",
                      client=(address, 50000))


def sign_in(c: TestClient, login: str, password: str = PASSWORD, *, follow: bool = True):  # type: ignore[no-untyped-def]
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"login": login, "password": password, "csrf": token, "next": "/audit"},
                  follow_redirects=follow)


def test_sign_in_search_and_sign_out(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site)
    first = c.get("/audit", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Faudit"
    page = sign_in(c, "aud")
    assert page.status_code == 200 and "2 matching messages" in page.text
    assert "Board minutes" in page.text and "aud" in page.text
    [ok] = journal_events(site, "console.signin")
    assert (ok.login, ok.outcome, ok.method, ok.role, ok.remote) == ("aud", "ok", "password", "auditor",
                                                                     "192.0.2.50")
    out = c.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert c.get("/audit", follow_redirects=False).status_code == 303


def test_wrong_password_is_refused_recorded_and_throttled(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site)
    for _ in range(3):
        bad = sign_in(c, "aud", "not the password")
        assert bad.status_code == 401 and "Wrong login or password" in bad.text
    throttled = sign_in(c, "aud")  # the right password, but too many failures: not even checked
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.text
    outcomes = [e.outcome for e in journal_events(site, "console.signin")]
    assert outcomes == ["failed", "failed", "failed", "throttled"]
    assert sign_in(client(site, address="192.0.2.51"), "pam").status_code == 200  # another login, another address


def test_unknown_and_disabled_logins_fail_alike(site: Site, events: dict[str, MessageScanned]) -> None:
    with site.cli_context() as (engine, append):
        accounts.set_disabled(engine, append, "lea", True, actor="t@h", host="h")
    c = client(site)
    for login in ("nobody", "lea"):
        page = sign_in(c, login)
        assert page.status_code == 401 and "Wrong login or password" in page.text


def test_csrf_is_required_on_every_form(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site)
    c.get("/login")
    forged = c.post("/login", data={"login": "aud", "password": PASSWORD, "csrf": "forged"})
    assert forged.status_code == 403 and "did not come from this console" in forged.text
    no_cookie = client(site).post("/login", data={"login": "aud", "password": PASSWORD, "csrf": "x"})
    assert no_cookie.status_code == 403
    sign_in(c, "aud")
    assert c.post("/logout", data={}).status_code == 403
    assert c.get("/audit").status_code == 200  # still signed in


def test_a_user_sees_only_their_own_mail(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site)
    page = sign_in(c, "bob")
    assert "1 matching message" in page.text and "Board minutes" not in page.text
    assert "1 matching message" in c.get("/audit?since=1d").text  # the scope's branches take the dates
    assert "0 matching messages" in c.get("/audit?until=2000-01-01").text
    assert c.get(f"/message/{events['bob'].event_id}").status_code == 200
    other = c.get(f"/message/{events['other'].event_id}")  # IDOR: a real id that is not bob's
    assert other.status_code == 404
    assert other.text == c.get("/message/00000000-0000-7000-8000-000000000000").text  # no oracle
    rows = list(csv.DictReader(io.StringIO(c.get("/audit.csv").text)))
    assert [r["event_id"] for r in rows] == [events["bob"].event_id]
    assert [r["event_id"] for r in json.loads(c.get("/audit.json?sender=carol*").text)] == []


def test_hostile_mail_text_is_shown_escaped(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site)
    sign_in(c, "pam")
    for html in (c.get("/audit").text, c.get(f"/message/{events['bob'].event_id}").text):
        assert "<script>" not in html and "<img" not in html
        assert "&lt;script&gt;" in html
        assert "\u202e" not in html and "\x1b" not in html  # shown as labels, or removed
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.pdf" in c.get("/audit").text  # the file name, as text


def test_security_headers_and_cookie_flags(site: Site, events: dict[str, MessageScanned]) -> None:
    c = client(site, secure=True)
    login = c.get("/login")
    h = login.headers
    assert "default-src 'none'" in h["content-security-policy"] and "script-src" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY" and h["cache-control"] == "no-store"
    assert h["x-content-type-options"] == "nosniff" and "max-age" in h["strict-transport-security"]
    cookie = h["set-cookie"]
    assert cookie.startswith("__Host-qscan=")
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    assert c.get("/static/console.css").status_code == 200


def test_roles_limit_pages(site: Site, events: dict[str, MessageScanned]) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from qscan.web.console import Visit, page

    @page(roles={"postmaster"})
    async def only_postmasters(visit: Visit) -> PlainTextResponse:
        return PlainTextResponse("secret")

    app = create_app(site.cfg, engine=site.engine, secure_cookies=False)
    app.router.routes.insert(0, Route("/postmasters", only_postmasters))
    c = TestClient(app)
    sign_in(c, "aud")
    refused = c.get("/postmasters")
    assert refused.status_code == 403 and "Your role does not give access" in refused.text
    c2 = TestClient(app)
    sign_in(c2, "pam")
    assert c2.get("/postmasters").text == "secret"


def test_sessions_end_when_idle_or_disabled(site: Site, events: dict[str, MessageScanned],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(site)
    sign_in(c, "dee")
    assert c.get("/audit").status_code == 200
    with site.cli_context() as (engine, append):
        accounts.set_disabled(engine, append, "dee", True, actor="t@h", host="h")
    assert c.get("/audit", follow_redirects=False).status_code == 303
    with site.cli_context() as (engine, append):
        accounts.set_disabled(engine, append, "dee", False, actor="t@h", host="h")
    sign_in(c, "dee")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 31 * 60)  # web.idle_minutes = 30
    assert c.get("/audit", follow_redirects=False).status_code == 303


def test_sso_header_only_from_trusted_proxies(site: Site, events: dict[str, MessageScanned]) -> None:
    stranger = client(site, address="192.0.2.99")
    assert stranger.get("/audit", headers={"X-Remote-User": "pam"}, follow_redirects=False).status_code == 303
    proxy = client(site, address="127.0.0.1")
    page = proxy.get("/audit", headers={"X-Remote-User": "lea", "X-Forwarded-For": "198.51.100.7"})
    assert page.status_code == 200 and "lea" in page.text
    unknown = proxy.get("/audit", headers={"X-Remote-User": "mallory"})
    assert unknown.status_code == 403
    signins = [(e.login, e.outcome, e.method, e.remote) for e in journal_events(site, "console.signin")]
    assert signins == [("lea", "ok", "proxy", "198.51.100.7"), ("mallory", "failed", "proxy", "127.0.0.1")]


def test_audit_filters_paging_and_downloads(site: Site) -> None:
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    evs = [make_event(sender=f"s{i}@example.com", subject=f"report {i}", when=base + timedelta(minutes=i))
           for i in range(12)]
    evs.append(make_event(sender="x@example.net", subject="other", when=base))
    site.add(*evs)
    from tests.web_site import add_accounts

    add_accounts(site)
    c = client(site)
    page = sign_in(c, "aud")
    c.get("/audit")
    seen: list[str] = []
    url = "/audit?domain=example.com&since=2026-11-20&until=2026-11-20"
    pages = 0
    while url:
        html = c.get(url).text
        assert "12 matching messages" in html
        seen += [line.split("/message/")[1].split('"')[0] for line in html.splitlines()
                 if 'class="subject"' in line]
        nxt = [part for part in html.split('href="') if part.startswith("/audit?") and "after=" in part
               and "Older" in part.split("</a>")[0]]
        url = nxt[0].split('"')[0].replace("&amp;", "&") if nxt else ""
        pages += 1
    assert pages == 3 and seen == [e.event_id for e in reversed(evs[:12])]
    rows = list(csv.DictReader(io.StringIO(c.get("/audit.csv?domain=example.com").text)))
    assert len(rows) == 12
    assert len(json.loads(c.get("/audit.json?subject=report 1").text)) == 3  # 1, 10, 11
    bad = c.get("/audit?since=someday")
    assert bad.status_code == 400 and "is not a date" in bad.text
    assert 'value="someday"' in bad.text
    assert 'href="/audit?domain=example.com"' in c.get("/audit?domain=example.com").text  # saved search
    assert "verdict" in page.text and "dlp_rule" in page.text


def test_web_user_commands(site: Site, tmp_path: Path) -> None:
    from qscan.cli import cli

    config = tmp_path / "site" / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path / "site"}"\n[sql]\nurl = "{site.url}"\n')
    run = CliRunner()
    added = run.invoke(cli, ["-c", str(config), "web", "user", "add", "Zed", "--role", "user",
                             "--address", "zed@example.org", "--domain", "example.net", "--password-stdin"],
                       input="a long enough password\n")
    assert added.exit_code == 0 and "account 'zed' (user) added" in added.output, added.output
    refused = run.invoke(cli, ["-c", str(config), "web", "user", "add", "amy", "--role", "user", "--sso-only"])
    assert refused.exit_code == 2 and "give --address or --domain" in refused.output
    short = run.invoke(cli, ["-c", str(config), "web", "user", "add", "amy", "--role", "auditor",
                             "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    assert run.invoke(cli, ["-c", str(config), "web", "user", "disable", "zed"]).exit_code == 0
    listed = json.loads(run.invoke(cli, ["-c", str(config), "web", "user", "list", "--json"]).output)
    assert listed == [{"login": "zed", "role": "user", "addresses": ["zed@example.org"],
                       "domains": ["example.net"], "state": "disabled", "password": True,
                       "updated_at": listed[0]["updated_at"], "updated_by": listed[0]["updated_by"]}]
    changes = [(e.login, e.change) for e in journal_events(site, "console.account")]
    assert changes == [("zed", "created"), ("zed", "disabled")]
    assert "hash" not in json.dumps(listed)


HOSTILE_RAW = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
               b"Subject: =?utf-8?q?=3Cscript=3Ealert(1)=3C/script=3E?=\r\n"
               b"X-Evil: <img src=x onerror=alert(2)> \x1b[2J bell\x07\r\n"
               b"X-Folded: first\r\n\tsecond \xe2\x80\xae line\r\n"
               b"Message-ID: <m1@example.com>\r\n\r\n<html><script>alert(3)</script></html>\r\n")


def test_message_view_shows_every_part_of_the_record(site: Site) -> None:
    from ingest.event import Category, Finding, Part

    ev = make_event(sender="alice@example.com", recipients=["bob@example.org", "eve@example.org"],
                    subject="<b>Invoice</b>", raw=HOSTILE_RAW,
                    attachments=[("invoice.zip", "application/zip", 2048)],
                    findings=[Finding(scanner="clamav", version="1", verdict=Category.VIRUS, name="Eicar-Test",
                                      detail="<i>found</i>", duration_ms=1.5)])
    member = Part(path="2!/a.exe", content_type="application/octet-stream", detected_type="application/x-dosexec",
                  filename="a.exe", size=99, sha256="2" * 64)
    ev = ev.model_copy(update={"parts": [*ev.parts, member]})
    site.add(ev)
    from tests.web_site import add_accounts

    add_accounts(site)
    from compliance import holds
    from compliance.audit import Filters

    with site.cli_context() as (engine, append):
        holds.create(engine, append, holds.HoldSpec(matter="Case <1>", custodians=("bob@example.org",),
                                                    query=Filters()),
                     reason="litigation", actor="lawyer@admin.example.com", host="admin.example.com")
    c = client(site)
    sign_in(c, "aud")
    html = c.get(f"/message/{ev.event_id}").text
    for needle in ("&lt;b&gt;Invoice&lt;/b&gt;", "Eicar-Test", "&lt;i&gt;found&lt;/i&gt;", "invoice.zip",
                   "application/x-dosexec", "in archive", "1" * 64, "legal hold &#39;Case &lt;1&gt;&#39;",
                   "lawyer@admin.example.com", "&lt;eve@example.org&gt;", "scanned",
                   "X-Evil", 'onerror=alert(2)&gt; <span class="ctl" title="U+001B">ESC</span>[2J bell'
                   '<span class="ctl" title="U+0007">BEL</span>',  # ESC and BEL shown
                   'second <span class="ctl" title="U+202E">U+202E</span> line', "Read from: <strong>archive</strong>"):
        assert needle in html, needle
    assert "<script>" not in html and "<img" not in html and "\x1b" not in html
    assert "Download raw message" not in html  # an auditor reads the record, not the mail


def test_raw_download_is_for_raw_roles_and_recorded(site: Site, events: dict[str, MessageScanned]) -> None:
    ev = events["bob"]
    lea = client(site)
    page = sign_in(lea, "lea")
    view = lea.get(f"/message/{ev.event_id}")
    assert "Download raw message" in view.text
    token = csrf_of(view.text)
    assert lea.post(f"/message/{ev.event_id}/raw", data={"csrf": "forged"}).status_code == 403
    assert journal_events(site, "message.raw_read") == []
    got = lea.post(f"/message/{ev.event_id}/raw", data={"csrf": token})
    assert got.status_code == 200 and got.content == ev.raw_message
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == f'attachment; filename="{ev.event_id}.eml"'
    [read] = journal_events(site, "message.raw_read")
    assert (read.ref_event_id, read.actor, read.role, read.source) == (
        ev.event_id, "lea@admin.example.com", "legal", "archive")
    assert lea.get(f"/message/{ev.event_id}/raw").status_code == 405
    lost = lea.get("/no/such/page")
    assert lost.status_code == 404 and "There is no such page." in lost.text and "console.css" in lost.text
    assert page.status_code == 200
    for login in ("aud", "bob"):  # an auditor; a user, even for their own message
        other = client(site)
        view = sign_in(other, login)
        refused = other.post(f"/message/{ev.event_id}/raw", data={"csrf": csrf_of(view.text)})
        assert refused.status_code == 403
    bob = client(site)
    view = sign_in(bob, "bob")
    assert bob.post(f"/message/{events['other'].event_id}/raw",
                    data={"csrf": csrf_of(view.text)}).status_code in (403, 404)
    assert len(journal_events(site, "message.raw_read")) == 1


def test_web_commands_without_the_extra_say_so(tmp_path: Path) -> None:
    from qscan.extras import hint
    from tests.test_extras import qscan_without

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    from compliance import db

    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    for modules, args in (("starlette,uvicorn", ["web"]),
                          ("argon2", ["web", "user", "add", "amy", "--role", "auditor", "--password-stdin"])):
        out = qscan_without(modules, "-c", str(config), *args)
        assert out.returncode == 78, out.stderr
        assert out.stderr.splitlines() == ["qscan: " + hint("web")]


def test_sign_in_goes_back_only_to_this_console() -> None:
    from qscan.web.console import safe_next

    assert safe_next("/audit?sender=a%40b") == "/audit?sender=a%40b"
    for bad in (None, "", "https://evil.example/", "//evil.example", "/\\evil.example", "/\t/evil.example",
                "/\n/evil.example", " /audit", "audit"):
        assert safe_next(bad) == "/", bad


def test_verify_takes_the_consoles_events_in_its_stride(site: Site, events: dict[str, MessageScanned]) -> None:
    """Sign-ins, account changes and raw reads are on the journal (its chain covers them) and
    `qscan verify` reads past them: no problem, every event counted."""
    c = client(site)
    view = sign_in(c, "lea")
    c.post(f"/message/{events['bob'].event_id}/raw", data={"csrf": csrf_of(c.get(f"/message/{events['bob'].event_id}").text)})
    assert view.status_code == 200
    site.consume()
    report = json.loads(site.cli("verify", "--json").output)
    assert report["ok"] and report["problems"] == []
    assert report["log_events"] == 2 + 5 + 1 + 1  # messages, console.account x5, console.signin, message.raw_read
