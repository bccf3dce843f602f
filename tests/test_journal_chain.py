"""The journal's own hash chain: editing, deleting or inserting an event is caught and named.

Tampering is done the way an adversary with the file would: plain SQL on the journal's
SQLite database (a second connection), never through the Journal class.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from compliance.journal_chain import RelayedRecord, walk_journal, walk_records
from ingest.event import to_json
from ingest.journal import Journal
from ingest.journal_link import GENESIS, link
from ingest.kafka_log import HEADER_HOST, HEADER_TYPE, record_for
from tests.compliance_site import Site, open_site
from tests.factories import make_event

HOST = "mx1.example.com"


def body(i: int, action: str = "deliver") -> bytes:
    return json.dumps({"type": "message.scanned", "n": i, "action": action,
                       "subject": f"m{i} \u00e9"}, ensure_ascii=False).encode()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    for i in range(1, 9):
        j.append(f"ev-{i}", "message.scanned", body(i), b"raw %d\r\n" % i if i % 2 else None)
    yield j
    j.close()


def tamper(j: Journal, sql: str, *params: object) -> None:
    db = sqlite3.connect(j.path, isolation_level=None)
    try:
        db.execute(sql, params)
    finally:
        db.close()


def findings(j: Journal) -> list[tuple[str, str, str | None]]:
    walk = walk_journal(j, HOST)
    return [(f.kind, f.where, f.event_id) for f in walk.findings]


def test_an_untouched_journal_walks_clean(journal: Journal) -> None:
    walk = walk_journal(journal, HOST)
    assert walk.findings == [] and walk.notes == []
    assert walk.events == 8 and walk.head is not None and walk.head[0] == 8
    first = journal.read(0, 1)[0]
    assert first.prev == GENESIS
    assert first.chain == link(GENESIS, 1, first.appended, "ev-1", "message.scanned", body(1),
                               b"raw 1\r\n")


def test_edited_raw_bytes_are_named(journal: Journal) -> None:
    tamper(journal, "UPDATE events SET raw = ? WHERE seq = 3", b"raw 3 but different\r\n")
    assert findings(journal) == [("altered-event", f"journal {HOST}#3", "ev-3")]


def test_an_edited_body_field_is_named(journal: Journal) -> None:
    tamper(journal, "UPDATE events SET body = ? WHERE seq = 4", body(4, action="quarantine"))
    assert findings(journal) == [("altered-event", f"journal {HOST}#4", "ev-4")]


def test_an_edited_body_byte_is_named(journal: Journal) -> None:
    tamper(journal, "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'm5', 'm6') AS BLOB) "
           "WHERE seq = 5")
    assert findings(journal) == [("altered-event", f"journal {HOST}#5", "ev-5")]


def test_an_edited_and_rehashed_event_is_caught_at_the_next_link(journal: Journal) -> None:
    (prev, appended) = sqlite3.connect(journal.path).execute(
        "SELECT prev, appended FROM events WHERE seq = 4").fetchone()
    forged = body(4, action="drop")
    tamper(journal, "UPDATE events SET body = ?, chain = ? WHERE seq = 4", forged,
           link(prev, 4, appended, "ev-4", "message.scanned", forged, None))
    assert findings(journal) == [("altered-event", f"journal {HOST}#4-#5", "ev-4")]


def test_a_deleted_event_is_named_by_its_seq(journal: Journal) -> None:
    tamper(journal, "DELETE FROM events WHERE seq = 6")
    assert findings(journal) == [("deleted-event", f"journal {HOST}#6", None)]


def test_a_deleted_tail_is_named(journal: Journal) -> None:
    tamper(journal, "DELETE FROM events WHERE seq >= 7")
    assert findings(journal) == [("deleted-event", f"journal {HOST}#7-#8", None)]


def test_deleted_oldest_events_without_a_prune_record(journal: Journal) -> None:
    tamper(journal, "DELETE FROM events WHERE seq <= 2")
    assert findings(journal) == [("deleted-event", f"journal {HOST}#1-#2", None)]


def test_inserted_events_are_named(journal: Journal) -> None:
    # an unlinked event at the head
    tamper(journal, "INSERT INTO events(seq, event_id, type, appended, body) "
           "VALUES (9, 'forged', 'message.scanned', 1.0, ?)", body(9))
    assert findings(journal) == [("inserted-event", f"journal {HOST}#9", "forged")]


def test_a_replaced_event_with_a_valid_link_is_caught(journal: Journal) -> None:
    db = sqlite3.connect(journal.path, isolation_level=None)
    (prev,) = db.execute("SELECT chain FROM events WHERE seq = 2").fetchone()
    db.execute("DELETE FROM events WHERE seq = 3")
    forged = body(3, action="drop")
    db.execute("INSERT INTO events(seq, event_id, type, appended, body, prev, chain) "
               "VALUES (3, 'forged', 'message.scanned', 1.0, ?, ?, ?)",
               (forged, prev, link(prev, 3, 1.0, "forged", "message.scanned", forged, None)))
    db.close()
    assert findings(journal) == [("altered-event", f"journal {HOST}#3-#4", "forged")]


def test_pruning_keeps_the_chain_verifiable(journal: Journal) -> None:
    journal.set_position("summaries", 5)
    assert journal.prune(["summaries"]) == 5
    assert journal.meta("chain_pruned", ) is not None
    assert findings(journal) == []
    journal.append("ev-9", "message.scanned", body(9))
    assert findings(journal) == []
    # the prune record is what the first kept event must link to
    tamper(journal, "DELETE FROM events WHERE seq = 6")
    assert findings(journal) == [("deleted-event", f"journal {HOST}#6", None)]


def test_a_journal_pruned_empty_chains_on(journal: Journal) -> None:
    journal.set_position("summaries", 8)
    journal.prune(["summaries"])
    journal.append("ev-9", "message.scanned", body(9))
    assert journal.read(0, 1)[0].prev == journal.meta("chain_pruned").split()[1]  # type: ignore[union-attr]
    assert findings(journal) == []


OLD_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL, appended REAL NOT NULL, body BLOB NOT NULL, raw BLOB);
CREATE TABLE positions (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_a_journal_from_before_the_chain_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OLD_SCHEMA)
    for i in range(1, 4):
        db.execute("INSERT INTO events(event_id, type, appended, body) VALUES (?,?,?,?)",
                   (f"old-{i}", "message.scanned", 1.0, body(i)))
    db.close()
    with Journal(path, readonly=True) as ro:  # read-only: read as it is, no chain yet
        assert [e.chain for e in ro.read(0)] == [None] * 3
        assert "no chain yet" in walk_journal(ro, HOST).notes[0]
    with Journal(path) as j:
        assert j.meta("chain_start") == "4"
        j.append("new-4", "message.scanned", body(4))
        j.append("new-5", "message.scanned", body(5))
        walk = walk_journal(j, HOST)
        assert walk.findings == []
        assert walk.notes == [f"journal {HOST}: 3 events unchained before seq 4 (written "
                              "before the journal had its chain)"]
        tamper(j, "UPDATE events SET body = ? WHERE seq = 5", body(5, action="drop"))
        assert findings(j) == [("altered-event", f"journal {HOST}#5", "new-5")]


def _append_many(path: str, worker: int, n: int) -> None:
    with Journal(path) as j:
        for i in range(n):
            j.append(f"w{worker}-{i}", "message.scanned", body(i), b"x" * (i % 3))


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.db")
    Journal(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Journal(path) as j:
        walk = walk_journal(j, HOST)
        assert walk.events == 240 and walk.findings == []


def test_workers_opening_an_old_journal_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO events(event_id, type, appended, body) VALUES ('old', 't', 1.0, x'7b7d')")
    db.close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 20)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Journal(path) as j:
        assert j.meta("chain_start") == "2"
        walk = walk_journal(j, HOST)
        assert walk.events == 81 and walk.findings == []
        assert walk.notes == [f"journal {HOST}: 1 events unchained before seq 2 (written before "
                              "the journal had its chain)"]


def _records(j: Journal) -> list[RelayedRecord]:
    out = []
    for e in j.read(0, 100):
        rec = record_for(e, HOST, 3)
        headers = dict(rec["headers"])
        assert headers[HEADER_HOST] == HOST.encode()
        out.append(RelayedRecord(e.event_id, headers[HEADER_TYPE].decode(), rec["value"],
                                 headers.get("journal_link"), f"t/{rec['partition']}@{e.seq}"))
    return out


def test_relayed_records_carry_the_chain(journal: Journal) -> None:
    records = _records(journal)
    decoded = json.loads(records[0].value)  # still one JSON event, raw message included
    assert decoded["n"] == 1 and decoded["raw_message"] == "cmF3IDENCg=="
    records.reverse()  # partitions interleave: the walk orders by seq
    walk = walk_records(HOST, records)
    assert walk.findings == [] and walk.head is not None and walk.head[0] == 8


def test_relayed_records_tampered_or_missing_are_named(journal: Journal) -> None:
    records = _records(journal)
    bad = records[2]
    records[2] = RelayedRecord(bad.event_id, bad.event_type,
                               bad.value.replace(b'"deliver"', b'"drop"'), bad.link_header,
                               bad.where)
    del records[5]
    walk = walk_records(HOST, records)
    assert [(f.kind, f.where, f.event_id) for f in walk.findings] == [
        ("altered-event", f"journal {HOST}#3", "ev-3"),
        ("deleted-event", f"journal {HOST}#6", None)]


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[Site]:
    yield from open_site(migrated_url, tmp_path)


@pytest.mark.parametrize("attack", ["raw", "action", "delete", "insert"])
def test_qscan_verify_names_each_journal_tampering(site: Site, attack: str) -> None:
    evs = [make_event(subject=f"m{i}") for i in range(4)]
    site.add(*evs)
    assert site.verify_kinds() == []
    victim = evs[1].event_id
    if attack == "raw":
        tamper(site.journal, "UPDATE events SET raw = CAST('x' AS BLOB) WHERE seq = 2")
    elif attack == "action":
        (data,) = sqlite3.connect(site.journal.path).execute(
            "SELECT body FROM events WHERE seq = 2").fetchone()
        obj = json.loads(data)
        obj["action"] = "drop"
        tamper(site.journal, "UPDATE events SET body = ? WHERE seq = 2", json.dumps(obj).encode())
    elif attack == "delete":
        tamper(site.journal, "DELETE FROM events WHERE seq = 2")
    else:
        forged = make_event(subject="forged")
        tamper(site.journal, "INSERT INTO events(seq, event_id, type, appended, body) "
               "VALUES (5, ?, 'message.scanned', 1.0, ?)", forged.event_id,
               to_json(forged, with_raw=False))
        victim = forged.event_id
    result = site.cli("verify", "--no-files", "--json")
    problems = [p for p in json.loads(result.stdout)["problems"] if p["kind"].endswith("-event")]
    assert result.exit_code == 1
    where = "journal admin.example.com"
    assert problems == [{
        "raw": {"kind": "altered-event", "where": f"{where}#2", "event_id": victim},
        "action": {"kind": "altered-event", "where": f"{where}#2", "event_id": victim},
        "delete": {"kind": "deleted-event", "where": f"{where}#2", "event_id": None},
        "insert": {"kind": "inserted-event", "where": f"{where}#5", "event_id": victim},
    }[attack] | {"detail": problems[0]["detail"]}]


def test_the_daemons_workers_chain_what_they_journal(tmp_path: Path) -> None:
    """Real workers append concurrently (passing the raw message's hash they already have)."""
    import threading

    from qscan.testing.daemon import running_daemon

    with running_daemon(tmp_path / "d", workers=2) as h:
        def send(i: int) -> None:
            for k in range(5):
                assert h.send(f"Subject: t{i}-{k}\n\n{'x' * (i * 1000)}\n".encode()).code == 0

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with Journal(h.journal, readonly=True) as j:
            walk = walk_journal(j, HOST)
            assert walk.events == 20 and walk.findings == []
            assert all(e.raw is not None for e in j.read(0, 100))  # the raw hash was used
