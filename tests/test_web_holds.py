"""The console's holds, exports and verify pages (in process, SQLite and PostgreSQL): a hold
from audit search filters with its count, release with a reason, an export of the matter whose
zip holds a production that `export verify` accepts, `qscan verify`'s result, role limits."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from compliance.export import verify_export
from ingest.event import Action, Category
from tests.compliance_site import Site, open_site
from tests.factories import make_event
from tests.web_site import add_accounts, csrf_of, journal_events, signed_in


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    for s in open_site(migrated_url, tmp_path, "[web]\nlogin_attempts = 50\n"):
        add_accounts(s)
        s.add(make_event(sender="ceo@example.com", recipients=["partner@acme.test"],
                         subject="Contract draft"),
              make_event(sender="ceo@example.com", recipients=["cfo@example.com"],
                         subject="Lunch"),
              make_event(sender="x@spam.test", recipients=["bob@example.org"], subject="Offer",
                         action=Action.QUARANTINE, category=Category.SPAM, reason="spam"))
        yield s


def client(site: Site, login: str) -> TestClient:
    return signed_in(site, login, address="192.0.2.70")


def post(c: TestClient, path: str, **data: str) -> Any:
    token = csrf_of(c.get("/holds" if "verify" not in path else "/verify").text)
    return c.post(path, data={"csrf": token, **data}, follow_redirects=False)


def test_hold_from_search_export_and_verify(site: Site) -> None:
    c = client(site, "lea")
    found = c.get("/audit?sender=ceo@example.com&subject=contract")
    assert 'href="/holds/new?sender=ceo%40example.com&amp;subject=contract"' in found.text
    form = c.get("/holds/new?sender=ceo@example.com&subject=contract")
    assert form.status_code == 200 and "1 messages" in form.text
    q = "sender=ceo%40example.com&subject=contract"
    no_reason = post(c, "/holds/new", matter="Acme v. Example", reason="", q=q)
    assert no_reason.status_code == 409 and "say why" in no_reason.text
    made = post(c, "/holds/new", matter="Acme v. Example", reason="litigation notice", q=q)
    assert made.status_code == 303
    [ev] = journal_events(site, "hold.created")
    assert ev.actor == "lea@admin.example.com" and ev.query == {"sender": "ceo@example.com",
                                                                "subject": "contract"}
    # the same hold the CLI would make with the same options
    listed = site.cli("hold", "list", "--format", "json")
    assert '"messages": 1' in listed.stdout
    page = c.get("/holds")
    assert "Acme v. Example" in page.text and "litigation notice" in page.text
    dup = post(c, "/holds/new", matter="Acme v. Example", reason="again", q=q)
    assert dup.status_code == 409 and "already has an active hold" in dup.text

    exported = post(c, "/exports", matter="Acme v. Example", format="eml")
    assert exported.status_code == 303, exported.text
    export_page = c.get(exported.headers["location"])
    assert "1 produced" in export_page.text
    [done] = journal_events(site, "export.completed")
    assert done.actor == "lea@admin.example.com" and done.messages == 1
    export_id = done.event_id
    checked = c.get(f"/exports/{export_id}?verify=1")
    assert "Every file matches its custody record" in checked.text
    zipped = post(c, f"/exports/{export_id}/download")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    [got] = journal_events(site, "export.downloaded")
    assert (got.export_id, got.actor, got.role, got.remote) == (export_id, "lea@admin.example.com",
                                                                "legal", "192.0.2.70")
    assert got.sha256 == hashlib.sha256(zipped.content).hexdigest() and got.bytes == len(zipped.content)
    out = site.root / "unzipped"
    zipfile.ZipFile(io.BytesIO(zipped.content)).extractall(out)
    [production] = list(out.iterdir())
    assert verify_export(production, site.engine) == []  # the downloaded manifest verifies
    assert (production / "custody.json").exists()

    hold_id = ev.event_id
    assert post(c, f"/holds/{hold_id}/release", reason="").status_code == 409
    released = post(c, f"/holds/{hold_id}/release", reason="case settled")
    assert released.status_code == 303
    [rel] = journal_events(site, "hold.released")
    assert rel.actor == "lea@admin.example.com" and rel.reason == "case settled"
    assert "Acme v. Example" not in c.get("/holds").text.split("<h2>Exports")[0]


def test_a_long_export_goes_on_behind_its_progress_page(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that outlasts the request's wait runs on in the console: the person sees its
    progress page (reloading itself), other roles do not, and the page leads to the export
    once it is made. A refusal that comes at once is still the form's 409."""
    import threading

    from compliance import export as ex
    from qscan.web import holds as web_holds

    gate = threading.Event()
    real_run = ex.run

    def slow_run(*args: Any, progress: Any = None, **kw: Any) -> Any:
        progress(0, 1)
        assert gate.wait(30)
        return real_run(*args, progress=progress, **kw)

    monkeypatch.setattr(web_holds, "QUICK", 0.05)
    monkeypatch.setattr(ex, "run", slow_run)
    c = client(site, "lea")
    gate.set()
    nothing = post(c, "/exports", matter="No such matter", format="eml")
    if nothing.status_code == 303:  # the refusal took longer than QUICK (a busy machine): its page says it
        assert site_job(c, nothing.headers["location"]).finished.wait(30)
        nothing = c.get(nothing.headers["location"])
    assert nothing.status_code == 409 and "The export was not made" in nothing.text
    gate.clear()
    assert post(c, "/holds/new", matter="Acme v. Example", reason="notice",
                q="sender=ceo%40example.com&subject=contract").status_code == 303
    started = post(c, "/exports", matter="Acme v. Example", format="mbox")
    assert started.status_code == 303 and started.headers["location"].startswith("/exports/jobs/")
    waiting = c.get(started.headers["location"], follow_redirects=False)
    assert waiting.status_code == 200 and 'http-equiv="refresh"' in waiting.text
    assert "Exporting: 0 of 1 messages" in waiting.text and "<progress" in waiting.text
    assert client(site, "aud").get(started.headers["location"]).status_code == 403
    assert journal_events(site, "export.completed") == []
    gate.set()
    job = site_job(c, started.headers["location"])
    assert job.finished.wait(30)
    done = c.get(started.headers["location"], follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=exported")
    assert "1 produced" in c.get(done.headers["location"]).text
    [ev] = journal_events(site, "export.completed")
    assert ev.actor == "lea@admin.example.com" and ev.format == "mbox"
    assert c.get("/exports/jobs/00000000-0000-4000-8000-000000000000").status_code == 404


def site_job(c: TestClient, location: str) -> Any:
    """The console's job behind a progress page (the app the test client drives)."""
    app: Any = c.app
    return app.state.console.jobs.get(location.rsplit("/", 1)[1])


def test_export_verify_shows_tampering(site: Site) -> None:
    c = client(site, "pam")
    post(c, "/holds/new", matter="M1", custodians="cfo@example.com", reason="r", q="")
    made = post(c, "/exports", matter="M1", format="mbox")
    assert made.status_code == 303
    [done] = journal_events(site, "export.completed")
    (Path(done.out_dir) / "extra.txt").write_text("added afterwards")
    page = c.get(f"/exports/{done.event_id}?verify=1")
    assert "problem(s)" in page.text and "extra.txt: not part of the production" in page.text


def test_verify_page_runs_qscan_verify(site: Site) -> None:
    c = client(site, "aud")
    assert c.get("/verify").status_code == 200
    ran = post(c, "/verify")
    assert ran.status_code == 200 and "<strong>OK</strong>" in ran.text
    site.sql("UPDATE messages SET subject = 'altered' WHERE subject = 'Lunch'")
    bad = post(c, "/verify")
    assert "PROBLEM(S)" in bad.text


@pytest.mark.parametrize("login", ["aud", "dee", "bob"])
def test_roles_without_holds(site: Site, login: str) -> None:
    c = client(site, login)
    assert c.get("/holds").status_code == 403
    assert c.get("/holds/new?sender=x").status_code == 403
    assert "/holds/new" not in c.get("/audit?sender=ceo@example.com").text  # no hold link either
    token = csrf_of(c.get("/audit").text)
    for path in ("/holds/new", "/exports"):
        assert c.post(path, data={"csrf": token, "matter": "M", "reason": "r", "q": ""},
                      follow_redirects=False).status_code == 403
    assert journal_events(site, "hold.created") == []
    assert c.get("/verify").status_code == (200 if login == "aud" else 403)
