"""The actor recorded by compliance commands is who runs them, not what $USER says."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compliance_site import Site, open_site
from tests.factories import make_event

ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


@pytest.fixture
def spoofed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    monkeypatch.delenv("SUDO_USER", raising=False)


@pytest.mark.usefixtures("spoofed")
def test_user_and_logname_do_not_change_the_recorded_actor(site: Site) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    old = datetime.now(UTC) - timedelta(days=40)
    site.add(make_event(recipients=["c@example.org"], when=old),
             make_event(recipients=["d@example.org"], when=old))
    who = f"{ME}@admin.example.com"
    for args in (("hold", "create", "M", "--custodian", "c@example.org", "--reason", "r"),
                 ("export", "--matter", "M", "--out", str(site.root / "prod"))):
        result = site.cli(*args)
        assert result.exit_code == 0, result.output
    site.cfg.retention = replace(site.cfg.retention, default_days=30)
    result = site.cli("retention", "apply")
    assert result.exit_code == 0, result.output
    site.consume()
    assert site.sql("SELECT created_by FROM holds") == [(who,)]
    assert site.sql("SELECT actor FROM exports") == [(who,)]
    assert site.sql("SELECT DISTINCT actor FROM deletions") == [(who,)]


def test_sudo_user_counts_only_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-root process that sets SUDO_USER is still its own account; root through sudo
    is sudo's caller. (The uids are the process's as the OS would report them after a
    setuid: the test cannot drop privileges and still import Python.)"""
    from compliance.identity import login

    for name in ("SUDO_USER", "USER", "LOGNAME"):
        monkeypatch.setenv(name, "mallory")
    monkeypatch.setattr(os, "getuid", lambda: 65534)
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    assert login() == pwd.getpwuid(65534).pw_name
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "alice")
    assert login() == "alice"
    monkeypatch.delenv("SUDO_USER")
    assert login() == pwd.getpwuid(0).pw_name
