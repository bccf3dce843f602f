"""The console's dashboard (in process): `qscan report`'s charts as images that run nothing,
`qscan status`'s health (daemon down here, consumers' lag, disks) and its role limits."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ingest.event import Action, Category
from tests.compliance_site import Site, open_site
from tests.factories import make_event
from tests.web_site import add_accounts, signed_in


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    for s in open_site(migrated_url, tmp_path, "[scanners]\nenabled = []\n"):
        add_accounts(s)
        s.add(make_event(subject="hello"),
              make_event(action=Action.QUARANTINE, category=Category.SPAM, reason="spam"))
        s.add(make_event(subject="not consumed yet"), consume=False)
        yield s


def client(site: Site, login: str) -> TestClient:
    return signed_in(site, login, address="testclient")


def test_dashboard_charts_and_health(site: Site) -> None:
    c = client(site, "pam")
    page = c.get("/dashboard")
    assert page.status_code == 200
    images = re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)"', page.text)
    assert len(images) == 2
    svgs = [base64.b64decode(i).decode() for i in images]
    assert "by direction" in svgs[0] and "<script" not in "".join(svgs)
    assert "problem(s)" in page.text  # the daemon is not running here
    assert "daemon not running" in page.text
    assert "summaries" in page.text and "archive" in page.text  # the consumers' lag table
    assert re.search(r"Behind\">[1-9][0-9]* events?<", page.text)  # events not consumed yet
    for period in ("24h", "7d", "30d"):
        assert c.get(f"/dashboard?period={period}").status_code == 200


@pytest.mark.parametrize("login,status", [("aud", 200), ("lea", 200), ("dee", 200), ("bob", 403)])
def test_dashboard_roles(site: Site, login: str, status: int) -> None:
    assert client(site, login).get("/dashboard").status_code == status
