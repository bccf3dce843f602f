"""The console's working areas in a real browser (``qscan web`` as a process, Debian's chromium):
a quarantine release that reaches the stand-in qmail-queue once, a four-eyes DLP release by two
people in two browser contexts, a user's self-release. Screenshots at 1280 and 390 pixels wide
go to $QSCAN_WEB_SHOTS (or the test's tmp directory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance import db
from ingest.event import Category, Finding
from tests.conftest import require
from tests.test_quarantine import EICAR, QSite, quarantined
from tests.test_web_browser import WIDTHS, new_page, sign_in
from tests.web_browser import CHROMIUM, chromium, playwright_available, qscan_web
from tests.web_site import add_accounts, journal_events, shots_dir

pytestmark = pytest.mark.integration
CARDS = Finding(scanner="dlp", verdict=Category.DLP, name="card-numbers")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require("Debian chromium (/usr/bin/chromium)", CHROMIUM.exists())
    require("Playwright for Python (the test extra)", playwright_available())
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, QSite, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("areas")
    (root / "site").mkdir()
    url = f"sqlite:///{root / 'site' / 'qscan.db'}"
    db.upgrade(url)
    site = QSite(url, root, "[web]\nlogin_attempts = 50\nuser_release = true\n")
    add_accounts(site)
    mail = {
        "spam": quarantined(recipients=["bob@example.org"], subject="Weekly <i>deals</i>"),
        "policy": quarantined(Category.POLICY, "bad-attachment", recipients=["dave@example.net"],
                              subject="Invoice attached"),
        "virus": quarantined(Category.VIRUS, "virus", findings=[EICAR], subject="Your parcel"),
        "dlp": quarantined(Category.DLP, "dlp", findings=[CARDS], recipients=["partner@outside.test"],
                           subject="Q4 customer list"),
    }
    site.add(*mail.values())
    try:
        with qscan_web(site.config_file) as base:
            yield base, site, mail
    finally:
        site.close()


def test_quarantine_release_reaches_qmail_queue_once(browser: Any, served: Any, tmp_path: Path) -> None:
    base, site, mail = served
    shots = shots_dir(tmp_path)
    for name, width in WIDTHS.items():
        page = new_page(browser, width)
        sign_in(page, base, "pam")
        page.goto(f"{base}/quarantine")
        page.screenshot(path=str(shots / f"quarantine-{name}.png"), full_page=True)
        page.context.close()
    page = new_page(browser)
    sign_in(page, base, "pam")
    page.goto(f"{base}/quarantine?folder=policy")
    page.get_by_role("link", name="Invoice attached").click()
    page.screenshot(path=str(shots / "quarantine-entry-wide.png"), full_page=True)
    page.locator("form[action$='/release']").get_by_label("Reason").fill("known supplier, ticket 4711")
    page.get_by_role("button", name="Release", exact=True).click()
    assert "Released" in page.get_by_role("status").inner_text()
    page.screenshot(path=str(shots / "quarantine-released-wide.png"), full_page=True)
    assert page.locator("form[action$='/release']").count() == 0  # released: no second release
    assert len(site.queued()) == 1 and b"Tdave@example.net\0" in site.queued()[0][1]
    assert [e.ref_event_id for e in journal_events(site, "message.released")].count(
        mail["policy"].event_id) == 1
    assert page.dialogs == []
    page.context.close()


def test_four_eyes_dlp_release_by_two_people(browser: Any, served: Any, tmp_path: Path) -> None:
    base, site, mail = served
    shots = shots_dir(tmp_path)
    dlp = mail["dlp"].event_id
    pam, dee = new_page(browser), new_page(browser, 390)  # two contexts: two people
    sign_in(pam, base, "pam")
    sign_in(dee, base, "dee")
    pam.goto(f"{base}/quarantine/{dlp}")
    pam.locator("form[action$='/release']").get_by_label("Reason").fill("customer asked, test data")
    pam.get_by_role("button", name="Request release").click()
    assert "Release requested" in pam.get_by_role("status").inner_text()
    queued = len(site.queued())
    # the requester cannot approve their own request
    pam.get_by_label("Reason").fill("approving my own")
    pam.get_by_role("button", name="Approve and release").click()
    assert "cannot approve" in pam.get_by_role("alert").inner_text()
    dee.goto(f"{base}/approvals")
    dee.screenshot(path=str(shots / "approvals-narrow.png"), full_page=True)
    pam.goto(f"{base}/approvals")
    pam.screenshot(path=str(shots / "approvals-wide.png"), full_page=True)
    row = dee.locator("tr", has_text="Q4 customer list")
    row.get_by_label("reason").fill("checked with sales: test data")
    row.get_by_role("button", name="Approve").click()
    assert "Approved and released" in dee.get_by_role("status").inner_text()
    assert len(site.queued()) == queued + 1
    [rel] = [e for e in journal_events(site, "message.released") if e.ref_event_id == dlp]
    assert (rel.operator, rel.requested_by) == ("dee", "pam")
    pam.context.close()
    dee.context.close()


def test_user_releases_own_spam(browser: Any, served: Any, tmp_path: Path) -> None:
    base, site, _ = served
    page = new_page(browser, 390)
    sign_in(page, base, "bob")
    page.goto(f"{base}/quarantine")
    assert "Q4 customer list" not in page.content()
    page.get_by_role("link", name="Weekly <i>deals</i>").click()
    page.screenshot(path=str(shots_dir(tmp_path) / "quarantine-user-narrow.png"), full_page=True)
    page.get_by_label("Reason").fill("I subscribed to this")
    page.get_by_role("button", name="Release to me").click()
    assert "Released" in page.get_by_role("status").inner_text()
    assert b"Tbob@example.org\0" in site.queued()[-1][1]
    page.context.close()
