"""A small site for the web console's tests: messages (one with hostile text), one account per role."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from compliance import accounts
from ingest.event import Action, Category, MessageScanned
from tests.compliance_site import Site
from tests.factories import make_event

PASSWORD = "correct horse battery"
HOSTILE_SUBJECT = '<script>alert("subject")</script> \x1b[31mred \u202eexe.txt'
HOSTILE_FILE = '"><img src=x onerror=alert(1)>.pdf'
# login, role, addresses, domains
ACCOUNTS = [
    ("pam", "postmaster", [], []),
    ("aud", "auditor", [], []),
    ("lea", "legal", [], []),
    ("dee", "dlp-officer", [], []),
    ("bob", "user", ["bob@example.org"], []),
]


def populate(site: Site) -> dict[str, MessageScanned]:
    """Bob's hostile message, somebody else's quarantined spam, and the accounts."""
    events = {
        "bob": make_event(sender="alice@example.com", recipients=["bob@example.org"],
                          subject=HOSTILE_SUBJECT, attachments=[(HOSTILE_FILE, "application/pdf", 1234)]),
        "other": make_event(sender="carol@example.net", recipients=["dave@example.net"],
                            subject="Board minutes", action=Action.QUARANTINE, category=Category.SPAM,
                            reason="spam"),
    }
    site.add(*events.values())
    add_accounts(site)
    return events


def add_accounts(site: Site) -> None:
    with site.cli_context() as (engine, append):
        for login, role, addrs, doms in ACCOUNTS:
            accounts.add(engine, append, login, role, password=PASSWORD, addresses=addrs, domains=doms,
                         actor="test@admin.example.com", host=site.cfg.hostname)


def signed_in(site: Any, login: str, *, address: str = "192.0.2.70",
              password: str = PASSWORD) -> Any:
    """A TestClient of the site's console signed in as ``login`` from ``address``."""
    from starlette.testclient import TestClient

    from qscan.web.app import create_app

    c = TestClient(create_app(site.cfg, engine=site.engine, secure_cookies=False),
                   client=(address, 50000))
    token = csrf_of(c.get("/login").text)
    signed = c.post("/login", data={"login": login, "password": password, "csrf": token, "next": "/"})
    assert signed.status_code == 200, signed.text
    return c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def journal_events(site: Site, type_: str) -> list[Any]:
    from ingest.event import from_json

    out = []
    pos = 0
    while True:
        entries = site.journal.read(pos, 1000, with_raw=False)
        if not entries:
            return out
        for e in entries:
            if e.type == type_:
                out.append(from_json(e.body, type_=e.type))
        pos = entries[-1].seq


def shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $QSCAN_WEB_SHOTS when set (to look at them), else the test's tmp."""
    import os

    where = Path(os.environ.get("QSCAN_WEB_SHOTS") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where
