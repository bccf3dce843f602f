"""Legal-discovery exports: what is produced, its custody record, and its verification."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance import loadfiles
from ingest.event import Action, Category
from tests.compliance_site import Site, open_site
from tests.factories import make_event, raw_message


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


@pytest.fixture
def matter(site: Site) -> dict[str, Any]:
    evs = {
        "sent": make_event(sender="ceo@example.com", subject="Merger terms",
                           raw=raw_message("Merger terms", body="From the desk of the CEO\nFrom here on.\n",
                                           frm="ceo@example.com")),
        "received": make_event(recipients=["ceo@example.com", "cfo@example.com"], subject="Re: terms"),
        "quarantined": make_event(recipients=["CEO@example.com"], action=Action.QUARANTINE,
                                  category=Category.SPAM, subject="Buy now"),
        "other": make_event(subject="Lunch"),
    }
    site.add(*evs.values())
    created = site.cli("hold", "create", "Acme v. Example", "--custodian", "ceo@example.com",
                       "--reason", "litigation")
    assert created.exit_code == 0, created.output
    return evs


def test_eml_export(site: Site, matter: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "prod-001"
    result = site.cli("export", "--matter", "Acme v. Example", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 messages" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "custody.json", "edrm.xml", "loadfile.dat", "manifest.csv", "manifest.json", "messages"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left
    docs = json.loads((out / "manifest.json").read_bytes())["documents"]
    order = [matter["sent"], matter["received"], matter["quarantined"]]
    assert [d["event_id"] for d in docs] == [ev.event_id for ev in order]
    assert [d["doc_id"] for d in docs] == ["QSCAN0000001", "QSCAN0000002", "QSCAN0000003"]
    for doc, ev in zip(docs, order, strict=True):
        data = (out / doc["file"]).read_bytes()
        assert data == ev.raw_message  # exactly as queued, no envelope block
        assert doc["sha256"] == doc["message_sha256"] == hashlib.sha256(data).hexdigest()
        assert doc["original_sha256"] == ev.sha256
        assert doc["envelope_to"] == ";".join(ev.envelope.recipients)
    assert [d["source"] for d in docs] == ["archive", "archive", "quarantine/spam"]
    custody = json.loads((out / "custody.json").read_bytes())
    assert custody["counts"] == {"selected": 3, "messages": 3, "missing": 0, "deleted": 0,
                                 "not_stored": 0, "bytes": sum(len(ev.raw_message) for ev in order)}
    assert custody["query"]["hold"]["custodians"] == ["ceo@example.com"]
    assert custody["actor"].endswith("@admin.example.com") and custody["tool"] == "qscan"
    assert custody["chain_heads"]["mx1.example.com"]["seq"] == 4
    assert set(custody["files"]) == {"edrm.xml", "loadfile.dat", "manifest.csv", "manifest.json",
                                     *(d["file"] for d in docs)}
    # the load files agree with the manifest
    dat = loadfiles.parse_dat((out / "loadfile.dat").read_bytes())
    assert [(r["BEGDOC"], r["EVENTID"], r["NATIVEPATH"]) for r in dat] == [
        (d["doc_id"], d["event_id"], d["file"]) for d in docs]
    root = ET.fromstring((out / "edrm.xml").read_bytes())
    hashes = [e.get("Hash") for e in root.iter("ExternalFile")]
    assert hashes == [d["sha256"] for d in docs]
    rows = list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text())))
    assert [r["subject"] for r in rows] == ["Merger terms", "Re: terms", "Buy now"]
    # recorded in SQL and on the log
    (row,) = site.sql("SELECT export_id, matter, messages, custody_sha256 FROM exports")
    assert row[1:] == ("Acme v. Example", 3,
                       hashlib.sha256((out / "custody.json").read_bytes()).hexdigest())
    items = site.sql("SELECT doc_id, event_id FROM export_items ORDER BY doc_id")
    assert [tuple(i) for i in items] == [(d["doc_id"], d["event_id"]) for d in docs]
    assert [e.type for e in site.journal.read(0, 100, with_raw=False)].count("export.completed") == 1
    site.consume()  # the consumer meets the event: already recorded
    assert site.sql("SELECT count(*) FROM export_items") == [(3,)]
    ok = site.cli("export", "verify", str(out))
    assert ok.exit_code == 0 and "every file matches" in ok.stderr
    shown = json.loads(site.cli("audit", "show", matter["sent"].event_id, "--json").stdout)
    assert shown["exports"][0]["doc_id"] == "QSCAN0000001"
    assert shown["holds"][0]["matter"] == "Acme v. Example"


def test_filters_narrow_the_matter_and_mbox(site: Site, matter: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "prod-002"
    result = site.cli("export", "--matter", "Acme v. Example", "--subject", "terms", "--format", "mbox",
                      "--prefix", "ACME", "--out", str(out))
    assert result.exit_code == 0, result.output
    docs = json.loads((out / "manifest.json").read_bytes())["documents"]
    assert [d["doc_id"] for d in docs] == ["ACME0000001", "ACME0000002"]
    mbox = (out / "messages.mbox").read_bytes()
    first = mbox[docs[0]["offset"]: docs[0]["offset"] + docs[0]["length"]]
    assert first.startswith(b"From ceo@example.com ")
    assert b"\n>From the desk" in first and b"\n>From here on." in first  # mboxrd quoting
    assert loadfiles.mbox_unquote(first) == matter["sent"].raw_message
    assert hashlib.sha256(first).hexdigest() == docs[0]["sha256"]
    assert site.cli("export", "verify", str(out)).exit_code == 0


def test_tampered_productions_fail_verification(site: Site, matter: dict[str, Any],
                                                tmp_path: Path) -> None:
    out = tmp_path / "prod"
    assert site.cli("export", "--matter", "Acme v. Example", "--out", str(out)).exit_code == 0
    eml = out / "messages" / "QSCAN0000002.eml"
    eml.write_bytes(eml.read_bytes() + b"P.S. added later\n")
    (out / "messages" / "QSCAN0000003.eml").unlink()
    (out / "messages" / "QSCAN0000009.eml").write_bytes(b"Subject: planted\n\n")
    result = site.cli("export", "verify", str(out))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "messages/QSCAN0000003.eml: listed in the custody record but missing",
        "messages/QSCAN0000009.eml: not part of the production (added afterwards)",
        "messages/QSCAN0000002.eml: SHA-256 differs from the custody record (altered)",
    ]
    # a custody record rewritten to match is caught by the copy kept in SQL
    custody = json.loads((out / "custody.json").read_bytes())
    custody["files"]["messages/QSCAN0000002.eml"] = hashlib.sha256(eml.read_bytes()).hexdigest()
    (out / "custody.json").write_text(json.dumps(custody))
    (out / "messages" / "QSCAN0000009.eml").unlink()
    offline = site.cli("export", "verify", "--no-db", str(out))
    assert "QSCAN0000002.eml: the manifest and the custody record disagree" in offline.stdout
    online = site.cli("export", "verify", str(out))
    assert "custody.json: differs from the record stored in SQL at export time" in online.stdout
    assert site.cli("export", "verify", str(tmp_path)).exit_code == 1  # no custody record at all


def test_missing_copies_come_from_the_journal_or_are_listed(site: Site, matter: dict[str, Any],
                                                            tmp_path: Path) -> None:
    site.copy_path(matter["sent"]).unlink()  # the journal still holds it
    site.cfg.retention = dataclasses.replace(site.cfg.retention, default_days=1)
    assert site.cli("hold", "release", "Acme v. Example", "--reason", "r").exit_code == 0
    assert site.cli("retention", "apply", "--now", "2099-01-01").exit_code == 1  # one copy missing
    site.journal.prune([], keep_seconds=0)  # and now the journal is gone too
    out = tmp_path / "late"
    result = site.cli("export", "--matter", "Acme v. Example", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 selected messages not produced" in result.stdout
    docs = json.loads((out / "manifest.json").read_bytes())["documents"]
    # the two retention deleted are listed with their tombstones; the lost one is missing
    assert [d["source"] for d in docs] == ["missing", "deleted", "deleted"]
    tombstones = dict(site.sql("SELECT ref_event_id, event_id FROM deletions"))
    assert [d["tombstone"] for d in docs] == [None, *(tombstones[d["event_id"]] for d in docs[1:])]
    assert site.cli("export", "verify", str(out)).exit_code == 0


def test_journal_copy_is_used_while_it_lasts(site: Site, matter: dict[str, Any], tmp_path: Path) -> None:
    site.copy_path(matter["sent"]).unlink()
    out = tmp_path / "j"
    assert site.cli("export", "--matter", "Acme v. Example", "--out", str(out)).exit_code == 0
    docs = json.loads((out / "manifest.json").read_bytes())["documents"]
    assert docs[0]["source"] == "journal"
    assert (out / docs[0]["file"]).read_bytes() == matter["sent"].raw_message


def test_bad_requests(site: Site, matter: dict[str, Any], tmp_path: Path) -> None:
    unknown = site.cli("export", "--matter", "No such matter", "--out", str(tmp_path / "x"))
    assert unknown.exit_code == 1 and "no hold for matter 'No such matter'" in unknown.output
    existing = tmp_path / "exists"
    existing.mkdir()
    again = site.cli("export", "--matter", "Acme v. Example", "--out", str(existing))
    assert again.exit_code == 1 and "already exists" in again.output
    assert site.cli("export", "--matter", "Acme v. Example").exit_code == 2
    assert site.cli("export", "--matter", "Acme v. Example", "--out", str(tmp_path / "y"),
                    "--prefix", "../x").exit_code == 2
    assert site.cli("export", "--matter", "Acme v. Example", "--out", str(tmp_path / "y"),
                    "--since", "someday").exit_code == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_failure_leaves_nothing_behind(site: Site, matter: dict[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(loadfiles, "edrm_xml", broken)
    result = site.cli("export", "--matter", "Acme v. Example", "--out", str(tmp_path / "p"))
    assert result.exit_code != 0
    assert list(tmp_path.glob("*p*")) == []
    assert site.sql("SELECT count(*) FROM exports") == [(0,)]
