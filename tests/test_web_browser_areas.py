"""The console's working areas in a real browser (``qscan web`` as a process, Debian's chromium):
a quarantine release that reaches the stand-in qmail-queue once, a four-eyes DLP release by two
people in two browser contexts, a user's self-release. Screenshots at 1280 and 390 pixels wide
go to $QSCAN_WEB_SHOTS (or the test's tmp directory)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance import db
from ingest.event import Category, Finding
from tests.test_quarantine import EICAR, QSite, quarantined
from tests.test_web_browser import WIDTHS, new_page, sign_in
from tests.web_browser import qscan_web
from tests.web_site import add_accounts, journal_events, shots_dir

pytestmark = pytest.mark.integration
CARDS = Finding(scanner="dlp", verdict=Category.DLP, name="card-numbers")


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
    # the requester is offered no approval of their own request, only its withdrawal
    assert pam.get_by_role("button", name="Approve and release").count() == 0
    assert pam.get_by_role("button", name="Withdraw my request").is_visible()
    dee.goto(f"{base}/approvals")
    dee.screenshot(path=str(shots / "approvals-narrow.png"), full_page=True)
    pam.goto(f"{base}/approvals")
    assert pam.locator("tr", has_text="Q4 customer list").get_by_role("button", name="Approve").count() == 0
    pam.screenshot(path=str(shots / "approvals-wide.png"), full_page=True)
    row = dee.locator("tr", has_text="Q4 customer list")
    row.get_by_label("reason").fill("checked with sales: test data")
    row.get_by_role("button", name="Approve").click()
    assert "Approved and released" in dee.get_by_role("status").inner_text()
    assert len(site.queued()) == queued + 1
    [rel] = [e for e in journal_events(site, "message.released") if e.ref_event_id == dlp]
    assert (rel.operator, rel.requested_by) == ("dee", "pam")
    # a virus release asked for by dee, denied by pam from the approvals page's Deny button
    virus = mail["virus"].event_id
    dee.goto(f"{base}/quarantine/{virus}")
    dee.locator("form[action$='/release']").get_by_label("Reason").fill("looks like a false positive")
    dee.get_by_role("button", name="Request release").click()
    pam.goto(f"{base}/approvals")
    row = pam.locator("tr", has_text="Your parcel")
    row.get_by_label("reason").fill("EICAR is a test virus: stays in quarantine")
    row.get_by_role("button", name="Deny").click()
    assert "stays quarantined" in pam.get_by_role("status").inner_text()
    [denied] = journal_events(site, "release.denied")
    assert (denied.ref_event_id, denied.operator, denied.withdrawn) == (virus, "pam", False)
    assert len(site.queued()) == queued + 1  # nothing more went out
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


def test_hold_from_search_and_export_download(browser: Any, served: Any, tmp_path: Path) -> None:
    import zipfile

    from compliance.export import verify_export

    base, site, _ = served
    shots = shots_dir(tmp_path)
    page = new_page(browser)
    sign_in(page, base, "lea")
    page.goto(f"{base}/holds")
    page.get_by_label("Recipient").fill("partner@outside.test")
    page.get_by_role("button", name="Continue").click()
    assert "1 messages" in page.content()
    page.get_by_label("Matter").fill("Outside v. Us")
    page.get_by_label("Reason").fill("litigation notice 2026-12-01")
    page.screenshot(path=str(shots / "hold-new-wide.png"), full_page=True)
    page.get_by_role("button", name="Create hold").click()
    assert "The hold is in place" in page.get_by_role("status").inner_text()
    row = page.locator("tr", has_text="Outside v. Us")
    assert row.locator("td[data-label=Messages]").inner_text() == "1"
    page.screenshot(path=str(shots / "holds-wide.png"), full_page=True)
    row.get_by_role("button", name="Export").click()
    # straight to the export, or (on a busy machine) through its progress page, which reloads itself
    page.wait_for_url(re.compile(r"/exports/[0-9a-f-]{36}\?done=exported$"), timeout=60_000)
    assert "The export is complete" in page.get_by_role("status").inner_text()
    page.get_by_role("link", name="Verify the export").click()
    assert "Every file matches its custody record" in page.get_by_role("status").inner_text()
    page.screenshot(path=str(shots / "export-wide.png"), full_page=True)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download (.zip)").click()
    saved = tmp_path / "export.zip"
    info.value.save_as(saved)
    zipfile.ZipFile(saved).extractall(tmp_path / "unzipped")
    [production] = list((tmp_path / "unzipped").iterdir())
    assert verify_export(production, site.engine) == []
    narrow = new_page(browser, 390)
    sign_in(narrow, base, "lea")
    narrow.goto(f"{base}/holds")
    narrow.screenshot(path=str(shots / "holds-narrow.png"), full_page=True)
    narrow.goto(f"{base}/verify")
    narrow.get_by_role("button", name="Run verify now").click()
    assert "OK" in narrow.get_by_role("status").inner_text()
    narrow.screenshot(path=str(shots / "verify-narrow.png"), full_page=True)
    narrow.context.close()
    page.context.close()


def test_dashboard(browser: Any, served: Any, tmp_path: Path) -> None:
    base, _, _ = served
    shots = shots_dir(tmp_path)
    for name, width in WIDTHS.items():
        page = new_page(browser, width)
        sign_in(page, base, "pam")
        page.goto(f"{base}/dashboard")
        assert page.get_by_role("heading", name="Traffic and verdicts").is_visible()
        for img in page.locator(".charts img").all():  # the SVG charts load and draw
            assert img.evaluate("i => i.complete && i.naturalWidth > 0")
        assert "daemon not running" in page.get_by_role("alert").inner_text()
        page.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)
        assert page.dialogs == []
        page.context.close()


def test_discovery_search(browser: Any, served: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qscan.cli import cli

    base, site, _ = served
    indexed = CliRunner().invoke(cli, ["-c", str(site.config_file), "consume", "index", "--once"])
    assert indexed.exit_code == 0, indexed.output
    shots = shots_dir(tmp_path)
    for name, width in WIDTHS.items():
        page = new_page(browser, width)
        sign_in(page, base, "lea")
        page.goto(f"{base}/discover")
        page.get_by_label("Query").fill("subject:customer OR subject:parcel")
        page.get_by_role("button", name="Search").click()
        assert "q=subject" in page.url
        assert page.locator("ol.hits li").count() == 2
        assert page.locator("mark").count() >= 2
        page.screenshot(path=str(shots / f"discover-{name}.png"), full_page=True)
        page.context.close()
    searches = journal_events(site, "discovery.searched")
    assert [s.actor for s in searches][-2:] == ["lea@admin.example.com"] * 2
