"""The console's discovery search (in process, SQLite and PostgreSQL): counts then hits with
escaped snippets whose matches are marked, the discovery.searched event the CLI records (with
the signed-in login), query errors, and the roles that may search message content."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from qscan.cli import cli
from qscan.web.discover import marked
from tests.compliance_site import Site, open_site
from tests.dlp_docs import mail
from tests.factories import make_event
from tests.web_site import add_accounts, journal_events, signed_in


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    for s in open_site(migrated_url, tmp_path, "[summary_log]\ntarget = \"none\"\n"):
        add_accounts(s)
        s.add(make_event(subject="Project Falcon", recipients=["ceo@example.com"],
                         when=datetime(2026, 10, 3, tzinfo=UTC),
                         raw=mail(body="Wire transfer to Acme <script>x</script> before Friday.",
                                  subject="Project Falcon")),
              make_event(subject="lunch", when=datetime(2026, 11, 4, tzinfo=UTC),
                         raw=mail(body="nothing relevant", subject="lunch")))
        config = s.root / "qscan.toml"
        config.write_text(f'data_dir = "{s.root}"\n[sql]\nurl = "{s.url}"\n[daemon]\n'
                          'hostname = "admin.example.com"\n[summary_log]\ntarget = "none"\n')
        done = CliRunner().invoke(cli, ["-c", str(config), "consume", "index", "--once"])
        assert done.exit_code == 0, done.output
        yield s


def client(site: Site, login: str) -> TestClient:
    return signed_in(site, login, address="testclient")


def test_search_counts_hits_and_event(site: Site) -> None:
    c = client(site, "lea")
    assert c.get("/discover").status_code == 200 and journal_events(site, "discovery.searched") == []
    page = c.get("/discover", params={"q": '"wire transfer" acme', "since": "2026-01-01"})
    assert page.status_code == 200
    assert "Project Falcon" in page.text and "lunch" not in page.text.split("<ol")[-1]
    assert "<mark>" in page.text and "<script>" not in page.text  # PostgreSQL drops tags, SQLite escapes
    assert "2026-10 · 1" in page.text and "ceo@example.com" in page.text
    [ev] = journal_events(site, "discovery.searched")
    assert (ev.actor, ev.query, ev.total) == ("lea@admin.example.com", '"wire transfer" acme', 1)
    assert ev.filters["since"].startswith("2026-01-01")
    bad = c.get("/discover", params={"q": "acme AND (wire"})
    assert bad.status_code == 400 and "expected" in bad.text
    assert c.get("/discover", params={"q": "acme", "since": "someday"}).status_code == 400
    assert len(journal_events(site, "discovery.searched")) == 1  # refused searches did not run


@pytest.mark.parametrize("login,status", [("pam", 200), ("dee", 200), ("aud", 403), ("bob", 403)])
def test_discovery_roles(site: Site, login: str, status: int) -> None:
    assert client(site, login).get("/discover?q=acme").status_code == status


def test_marked_escapes_all_but_the_brackets() -> None:
    assert str(marked('a [b] <i>"c"</i> [d')) == 'a <mark>b</mark> &lt;i&gt;&#34;c&#34;&lt;/i&gt; <mark>d</mark>'
    assert str(marked("x\x1by")) == "x y"
