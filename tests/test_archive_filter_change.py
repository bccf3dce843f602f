"""After ``archive.filter`` changes, retention, export and ``audit show`` still judge each
message's archive copy by the decision recorded when it was archived, not by today's filter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.compliance_site import Site, open_site
from tests.factories import make_event

OLD = datetime.now(UTC) - timedelta(days=400)


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


def _filter(site: Site, pattern: str) -> None:
    site.cfg.archive = replace(site.cfg.archive, filter=pattern)


def _store(site: Site) -> tuple[list[str], str]:
    """Two old messages archived under filter A, one left out by it; then filter B."""
    _filter(site, r"@a\.example$")
    kept = [make_event(recipients=[f"r{i}@a.example"], when=OLD) for i in range(2)]
    left = make_event(recipients=["x@b.example"], when=OLD)
    site.add(*kept, left)
    assert all(site.copy_path(ev).exists() for ev in kept)
    assert not site.copy_path(left).exists()
    _filter(site, r"@b\.example$")  # now the opposite: keeps `left`'s kind, not `kept`'s
    return [ev.event_id for ev in kept], left.event_id


def test_retention_expires_copies_archived_under_an_older_filter(site: Site) -> None:
    kept, _ = _store(site)
    site.cfg.retention = replace(site.cfg.retention, default_days=365)
    result = site.cli("retention", "apply", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert sum(outcome["deleted"].values()) == 2 and outcome["problems"] == []
    assert site.sql("SELECT ref_event_id FROM deletions ORDER BY ref_event_id") == [
        (e,) for e in sorted(kept)]
    assert site.verify_kinds() == []


def test_export_finds_copies_archived_under_an_older_filter(site: Site) -> None:
    kept, left = _store(site)
    assert site.cli("hold", "create", "M", "--custodian", "*@a.example", "--custodian",
                    "*@b.example", "--reason", "r").exit_code == 0
    site.journal.prune([], keep_seconds=0)  # the journal no longer holds them
    out = site.root / "prod"
    result = site.cli("export", "--matter", "M", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = {m["event_id"]: m["source"]
                for m in json.loads((out / "manifest.json").read_text())["documents"]}
    assert manifest == {kept[0]: "archive", kept[1]: "archive", left: "not stored"}


def test_audit_show_judges_by_the_recorded_decision(site: Site) -> None:
    kept, left = _store(site)
    shown = site.cli("audit", "show", left)
    assert shown.exit_code == 0, shown.output
    assert "MISSING" not in shown.output and "none kept" in shown.output
    shown = site.cli("audit", "show", kept[0])
    assert "archive: " in shown.output and "MISSING" not in shown.output
