"""The console in a real browser: ``qscan web`` as a process, Debian's chromium under Playwright.

Sign in (and a wrong password), search, open a message with a hostile subject and file name
(nothing runs: no dialog, the text shows as text), CSRF refused (a forged token, and a form
posted from another page), and the user role's limits. Screenshots at 1280 and 390 pixels
wide go to $QSCAN_WEB_SHOTS (or the test's tmp directory) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance import db
from ingest.event import MessageScanned
from tests.compliance_site import Site
from tests.web_browser import qscan_web
from tests.web_site import HOSTILE_SUBJECT, PASSWORD, journal_events, populate, shots_dir

pytestmark = pytest.mark.integration
WIDTHS = {"wide": 1280, "narrow": 390}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Site, dict[str, MessageScanned]]]:
    root = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{root / 'site' / 'qscan.db'}"
    (root / "site").mkdir()
    db.upgrade(url)
    site = Site(url, root / "site")
    events = populate(site)
    config = root / "site" / "qscan.toml"
    config.write_text(f'data_dir = "{root / "site"}"\n[sql]\nurl = "{url}"\n'
                      '[daemon]\nhostname = "admin.example.com"\n[web]\nlogin_attempts = 50\n')
    try:
        with qscan_web(config) as base:
            yield base, site, events
    finally:
        site.close()


def new_page(browser: Any, width: int = 1280) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    return page


def sign_in(page: Any, base: str, login: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/audit")
    assert "/login" in page.url
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_search_and_message(browser: Any, served: Any, tmp_path: Path) -> None:
    base, site, events = served
    shots = shots_dir(tmp_path)
    for name, width in WIDTHS.items():
        page = new_page(browser, width)
        page.goto(f"{base}/login")
        page.screenshot(path=str(shots / f"login-{name}.png"), full_page=True)
        sign_in(page, base, "aud", "wrong password!")
        assert page.get_by_role("alert").inner_text().startswith("Wrong login or password")
        page.screenshot(path=str(shots / f"login-failed-{name}.png"), full_page=True)
        sign_in(page, base, "aud")
        assert page.url.endswith("/audit")
        assert page.get_by_text("2 matching messages").is_visible()
        page.screenshot(path=str(shots / f"audit-{name}.png"), full_page=True)
        subject = page.locator("td.subject a", has_text="alert")
        assert "<script>" in subject.inner_text()  # shown as text
        assert "\u202e" not in subject.inner_text() and "U+202E" in subject.inner_text()
        subject.click()
        assert f"/message/{events['bob'].event_id}" in page.url
        page.screenshot(path=str(shots / f"message-{name}.png"), full_page=True)
        assert page.dialogs == []  # nothing from the mail ran
        page.context.close()
    outcomes = [(e.login, e.outcome) for e in journal_events(site, "console.signin")]
    assert outcomes.count(("aud", "failed")) >= 2 and outcomes.count(("aud", "ok")) >= 2


def test_search_filters_in_the_form(browser: Any, served: Any) -> None:
    base, _, _ = served
    page = new_page(browser)
    sign_in(page, base, "pam")
    page.get_by_label("Verdict").select_option("spam")
    page.get_by_role("button", name="Search").click()
    assert "verdict=spam" in page.url  # the address is the saved search
    assert page.get_by_text("1 matching message").is_visible()
    assert page.locator("td.subject").inner_text() == "Board minutes"
    page.get_by_label("Since (UTC)").fill("someday")
    page.get_by_role("button", name="Search").click()
    assert "is not a date" in page.get_by_role("alert").inner_text()
    page.context.close()


def test_csrf_is_refused(browser: Any, served: Any) -> None:
    base, _, _ = served
    page = new_page(browser)
    sign_in(page, base, "lea")
    forged = page.context.request.post(f"{base}/logout", form={"csrf": "forged"})
    assert forged.status == 403
    # a form on another page posting to the console: the SameSite=Strict cookie stays home
    page.set_content(f'<form method="post" action="{base}/logout"><input name="csrf" value="x">'
                     '<button>go</button></form>')
    page.get_by_role("button", name="go").click()
    assert "did not come from this console" in page.content()
    page.goto(f"{base}/audit")
    assert page.url.endswith("/audit")  # still signed in
    page.context.close()


def test_user_role_limits(browser: Any, served: Any, tmp_path: Path) -> None:
    base, _, events = served
    page = new_page(browser, 390)
    sign_in(page, base, "bob")
    assert page.get_by_text("1 matching message").is_visible()
    assert HOSTILE_SUBJECT[:8] in page.locator("td.subject").inner_text()
    page.screenshot(path=str(shots_dir(tmp_path) / "audit-user-narrow.png"), full_page=True)
    response = page.goto(f"{base}/message/{events['other'].event_id}")
    assert response is not None and response.status == 404
    assert "not yours to see" in page.get_by_role("alert").inner_text()
    page.screenshot(path=str(shots_dir(tmp_path) / "not-found-narrow.png"), full_page=True)
    page.context.close()


def test_raw_download_in_the_browser_is_recorded(browser: Any, served: Any, tmp_path: Path) -> None:
    base, site, events = served
    ev = events["bob"]
    page = new_page(browser)
    sign_in(page, base, "lea")
    page.goto(f"{base}/message/{ev.event_id}")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download raw message (.eml)").click()
    download = info.value
    assert download.suggested_filename == f"{ev.event_id}.eml"
    assert Path(download.path()).read_bytes() == ev.raw_message
    reads = [e for e in journal_events(site, "message.raw_read") if e.actor.startswith("lea@")]
    assert [(r.ref_event_id, r.role, r.source) for r in reads] == [(ev.event_id, "legal", "archive")]
    page.context.close()
    auditor = new_page(browser)
    sign_in(auditor, base, "aud")
    auditor.goto(f"{base}/message/{ev.event_id}")
    assert auditor.get_by_role("button", name="Download raw message (.eml)").count() == 0
    # ... and sees the read on the console's activity page, at both widths
    site.consume()
    for name, width in WIDTHS.items():
        page = new_page(browser, width)
        sign_in(page, base, "aud")
        page.get_by_role("link", name="Activity").first.click()
        row = page.locator("tr", has_text="raw mail read").first
        assert "lea@" in row.inner_text() and ev.event_id in row.inner_text()
        page.screenshot(path=str(shots_dir(tmp_path) / f"activity-{name}.png"), full_page=True)
        page.context.close()
    auditor.context.close()
