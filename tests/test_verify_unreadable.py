"""``qscan verify`` on a journal holding events that do not decode: findings, never a crash.

An adversary who forges an event's body (``{}``, garbage bytes, a body of another type)
must be reported and named, and verify must go on to check everything else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compliance_site import Site, open_site
from tests.factories import make_event


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


def _set_body(site: Site, seq: int, body: bytes) -> None:
    db = sqlite3.connect(site.journal.path, isolation_level=None)
    try:
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq))
    finally:
        db.close()


@pytest.mark.parametrize("body", [b"{}", b"\xff\xfe garbage \x00",
                                  b'{"type": "message.scanned", "event_id": 3}'],
                         ids=["empty-object", "garbage", "wrong-fields"])
def test_an_undecodable_event_is_a_named_finding(site: Site, body: bytes) -> None:
    evs = [make_event(subject=f"m{i}") for i in range(4)]
    site.add(*evs)
    assert site.verify_kinds() == []
    _set_body(site, 2, body)
    result = site.cli("verify", "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    unreadable = [p for p in report["problems"] if p["kind"] == "unreadable-event"]
    assert [(p["where"], p["event_id"]) for p in unreadable] == [
        ("journal admin.example.com#2", evs[1].event_id)]
    # the walk also sees the edit, and the rest of the journal was still compared with SQL
    kinds = {p["kind"] for p in report["problems"]}
    assert "altered-event" in kinds
    assert report["log_events"] == 3
