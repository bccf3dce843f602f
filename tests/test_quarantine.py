"""The quarantine lifecycle: list, show, release, delete, expire (SQLite and PostgreSQL).

Messages go through the real journal and the real archive and summaries
consumers (tests/compliance_site.py); releases go through the stand-in
qmail-queue (qscan/testing/standin.py), which records the envelope (fd 1) and message
(fd 0) it was handed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from archive.quarantine import check_address, header_lines, prepare_release, release_header
from compliance import quarantine as q
from compliance.copystore import CopyError, MessageFacts
from compliance.models import QuarantineEntry
from compliance.summaries import SummarySink
from ingest.envelope import build_envelope, parse_envelope
from ingest.event import Action, Category, Finding, MessageReleased, from_json, to_json
from ingest.log import JournalReader, run_consumer
from qscan.cli.compliance import hold
from qscan.cli.quarantine import quarantine
from qscan.testing.standin import recorded, write_standin
from tests.compliance_site import Site
from tests.factories import make_event

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
QSCAN = ROOT / ".venv" / "bin" / "qscan"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


class QSite(Site):
    """A compliance site with a stand-in qmail-queue and the quarantine commands."""

    def __init__(self, url: str, root: Path, extra: str = "") -> None:
        self.record = root / "queued"
        standin = write_standin(root / "bin" / "qmail-queue", self.record)
        # Lands in [daemon] (compliance_site puts extra config right after its hostname).
        text = f'qmail_queue = "{standin}"\n{extra}'
        super().__init__(url, root / "site", text)
        self.config_file = root / "site" / "qscan.toml"
        self.config_file.write_text(
            f'data_dir = "{root / "site"}"\n[sql]\nurl = "{url}"\n[daemon]\n'
            f'hostname = "admin.example.com"\n{text}')

    def q(self, *args: str) -> Result:
        cfg = self.cfg

        @click.group()
        @click.pass_context
        def main(ctx: click.Context) -> None:
            ctx.obj = {"config": lambda: cfg}

        main.add_command(quarantine)
        main.add_command(hold)
        # "list ..." means "quarantine list ..."; "hold ..." is the hold command.
        argv = list(args) if args[:1] == ("hold",) else ["quarantine", *args]
        return CliRunner().invoke(main, argv)

    def queued(self) -> list[tuple[bytes, bytes]]:
        return recorded(self.record)

    def state(self, event_id: str) -> str:
        return str(self.sql("SELECT state FROM quarantine_entries WHERE event_id = :e",
                            e=event_id)[0][0])


@pytest.fixture
def site(migrated_url: str, tmp_path: Path) -> Iterator[QSite]:
    s = QSite(migrated_url, tmp_path)
    try:
        yield s
    finally:
        s.close()


def quarantined(category: Category = Category.SPAM, reason: str = "spam", **kw: Any) -> Any:
    return make_event(category=category, action=Action.QUARANTINE, reason=reason, **kw)


EICAR = Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Signature")
BLOCK_EXE = Finding(scanner="internal", verdict=Category.POLICY, name="block-exe",
                    detail="invoice.exe")


# -- list and show --------------------------------------------------------------------
@pytest.fixture
def corpus(site: QSite) -> dict[str, Any]:
    evs = {
        "virus": quarantined(Category.VIRUS, "virus", findings=[EICAR], when=ago(1),
                             sender="mallory@evil.test"),
        "spam": quarantined(when=ago(2), recipients=["bob@example.org", "carol@example.org"]),
        "policy": quarantined(Category.POLICY, "bad-attachment", findings=[BLOCK_EXE],
                              when=ago(3), subject="=HYPERLINK(evil)"),
        "clean": make_event(when=ago(1)),
    }
    site.add(*evs.values())
    return evs


def test_list_filters(site: QSite, corpus: dict[str, Any]) -> None:
    def ids(*args: str) -> list[str]:
        result = site.q("list", "--format", "json", *args)
        assert result.exit_code == 0, result.output
        return [r["event_id"] for r in json.loads(result.stdout)]

    e = {k: v.event_id for k, v in corpus.items()}
    assert ids() == [e["virus"], e["spam"], e["policy"]]  # newest first, delivered mail absent
    assert ids("--folder", "spam") == [e["spam"]]
    assert ids("--sender", "MALLORY@evil.test") == [e["virus"]]
    assert ids("--recipient", "carol@example.org") == [e["spam"]]
    assert ids("--reason", "bad-*") == [e["policy"]]
    assert ids("--rule", "eicar*") == [e["virus"]]
    assert ids("--rule", "block-exe") == [e["policy"]]
    assert ids("--since", ago(2.5).isoformat()) == [e["virus"], e["spam"]]
    assert ids("--until", ago(1.5).isoformat()) == [e["spam"], e["policy"]]
    assert ids("--state", "released") == []
    rows = json.loads(site.q("list", "--format", "json", "--folder", "viruses").stdout)
    assert rows[0]["rules"] == ["clamd:Eicar-Signature"] and rows[0]["folder"] == "viruses"


def test_list_csv_and_table(site: QSite, corpus: dict[str, Any]) -> None:
    result = site.q("list", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["event_id"] for r in rows] == [corpus[k].event_id for k in ("virus", "spam", "policy")]
    assert rows[2]["subject"] == "'=HYPERLINK(evil)"  # no formula reaches a spreadsheet
    assert rows[1]["recipients"] == "bob@example.org,carol@example.org"
    table = site.q("list", "--wide")
    assert table.exit_code == 0
    assert corpus["policy"].event_id in table.stdout and "bad-attachment" in table.stdout
    assert "1-3 of 3 quarantined messages" in table.stderr
    bad = site.q("list", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "is not a date" in bad.output


def test_show_summary_findings_headers_and_raw(site: QSite, corpus: dict[str, Any]) -> None:
    ev = corpus["policy"]
    result = site.q("show", ev.event_id[:-3])  # a prefix does
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "internal: policy block-exe" in out and "invoice.exe" in out
    assert "quarantine:     policy (quarantined since" in out
    assert "Subject: =HYPERLINK(evil)" in out and "headers" in out
    assert str(site.copy_path(ev, "policy")) in out
    raw = site.q("show", ev.event_id, "--raw")
    assert raw.exit_code == 0
    assert raw.stdout_bytes == ev.raw_message  # the message as queued, no envelope block
    as_json = json.loads(site.q("show", ev.event_id, "--json").stdout)
    assert as_json["quarantine"]["state"] == "quarantined"
    assert as_json["file"] == str(site.copy_path(ev, "policy"))
    assert any(h.startswith("Subject:") for h in as_json["headers"])


def test_unknown_and_unquarantined_ids(site: QSite, corpus: dict[str, Any]) -> None:
    r = site.q("show", "01234567-89ab-7def-8123-456789abcdef")
    assert r.exit_code == 1 and "no quarantined message" in r.output
    r = site.q("release", "0123", "--reason", "x")
    assert r.exit_code == 1 and "8+ characters" in r.output
    r = site.q("release", corpus["clean"].event_id, "--reason", "x")
    assert r.exit_code == 1 and "was not quarantined (action: deliver)" in r.output
    assert site.queued() == []


# -- release ----------------------------------------------------------------------------
@pytest.mark.integration
def test_release_through_qmail_queue(site: QSite, corpus: dict[str, Any]) -> None:
    ev = corpus["spam"]
    result = site.q("release", ev.event_id, "--reason", "false positive\r\nBcc: x@evil.test",
                    "--by", "helpdesk J. Smith")
    assert result.exit_code == 0, result.output
    [(message, envelope)] = site.queued()
    assert envelope == build_envelope(b"alice@example.com", [b"bob@example.org",
                                                            b"carol@example.org"])
    header, rest = message.split(b"\n", 1)[0], message
    assert rest.endswith(ev.raw_message)  # the original, byte for byte, block stripped
    added = rest[: len(rest) - len(ev.raw_message)]
    assert b"Envelope Details" not in message
    parsed = message_from_bytes(added + b"\n", policy=default_policy)
    diag = str(parsed["X-Qmail-Scanner-Diagnostics"])
    diag = " ".join(diag.split())  # unfolded
    assert "released from quarantine/spam by helpdesk J. Smith (run by" in diag
    assert "reason: false positive Bcc: x@evil.test" in diag  # CR/LF cannot add a header
    assert parsed["Bcc"] is None and header.startswith(b"X-Qmail-Scanner-Diagnostics:")
    # SQL: the entry is released, the release recorded; the log has the event.
    assert site.state(ev.event_id) == "released"
    [row] = site.sql("SELECT ref_event_id, folder, recipients, original_recipients, actor "
                     "FROM quarantine_releases")
    assert row[0] == ev.event_id and row[1] == "spam" and bool(row[3]) is True
    assert json.loads(row[2]) == ["bob@example.org", "carol@example.org"]
    assert row[4].startswith("helpdesk J. Smith (run by ")
    events = [e for e in site.journal.read(0, 1000, with_raw=False) if e.type == "message.released"]
    assert len(events) == 1
    # Twice: refused, clearly, and nothing more is queued.
    again = site.q("release", ev.event_id, "--reason", "again")
    assert again.exit_code == 1 and "was already released" in again.output
    assert "helpdesk J. Smith" in again.output
    assert len(site.queued()) == 1
    # The file stays (evidence) and show tells the story.
    assert site.copy_path(ev, "spam").exists()
    shown = site.q("show", ev.event_id).stdout
    assert "released:" in shown and "false positive" in shown


@pytest.mark.integration
def test_release_to_given_recipients_only(site: QSite, corpus: dict[str, Any]) -> None:
    ev = corpus["policy"]
    bad = site.q("release", ev.event_id, "--reason", "x", "--to", "not an address")
    assert bad.exit_code == 2 and "not a usable recipient" in bad.output
    result = site.q("release", ev.event_id, "--reason", "inspection",
                    "--to", "<secops@example.com>", "--to", "audit@example.com")
    assert result.exit_code == 0, result.output
    [(_, envelope)] = site.queued()
    env = parse_envelope(envelope)
    assert env.sender == b"alice@example.com"
    assert env.recipients == [b"secops@example.com", b"audit@example.com"]
    [(orig,)] = site.sql("SELECT original_recipients FROM quarantine_releases")
    assert bool(orig) is False


@pytest.mark.integration
def test_virus_needs_force_outside_four_eyes(migrated_url: str, tmp_path: Path) -> None:
    site = QSite(migrated_url, tmp_path, "[quarantine]\nfour_eyes = []\n")
    try:
        _virus_needs_force(site, quarantined(Category.VIRUS, "virus", findings=[EICAR]))
    finally:
        site.close()


def _virus_needs_force(site: QSite, ev: Any) -> None:
    site.add(ev)
    refused = site.q("release", ev.event_id, "--reason", "I trust it")
    assert refused.exit_code == 1 and "--force" in refused.output
    assert site.queued() == [] and site.state(ev.event_id) == "quarantined"
    forced = site.q("release", ev.event_id, "--reason", "signature false positive", "--force")
    assert forced.exit_code == 0, forced.output
    assert len(site.queued()) == 1
    [(f,)] = site.sql("SELECT forced FROM quarantine_releases")
    assert bool(f) is True


@pytest.mark.integration
def test_qmail_queue_refusal_puts_the_claim_back(site: QSite, corpus: dict[str, Any]) -> None:
    ev = corpus["spam"]
    (site.record / "exit_code").write_text("82")
    (site.record / "reply").write_text("Zdisk full, try later (#4.3.0)")
    failed = site.q("release", ev.event_id, "--reason", "fp")
    assert failed.exit_code == 1
    assert "exit 82: disk full" in failed.output and "still in quarantine" in failed.output
    assert site.state(ev.event_id) == "quarantined"
    assert site.sql("SELECT count(*) FROM quarantine_releases")[0][0] == 0
    assert not [e for e in site.journal.read(0, 1000, with_raw=False)
                if e.type == "message.released"]
    (site.record / "exit_code").write_text("0")
    ok = site.q("release", ev.event_id, "--reason", "fp")
    assert ok.exit_code == 0, ok.output
    assert site.state(ev.event_id) == "released"


@pytest.mark.integration
def test_release_of_expired_message_is_refused(site: QSite) -> None:
    ev = quarantined(when=ago(20))
    site.add(ev)
    r = site.q("expire", "--older-than", "14d", "--now", NOW.isoformat())
    assert r.exit_code == 0, r.output
    refused = site.q("release", ev.event_id, "--reason", "too late?")
    assert refused.exit_code == 1
    assert "was deleted from quarantine/spam" in refused.output
    assert "nothing left to release" in refused.output
    assert site.queued() == []


def test_tampered_copy_is_not_released(site: QSite) -> None:
    ev = quarantined()
    site.add(ev)
    path = site.copy_path(ev, "spam")
    path.write_bytes(path.read_bytes().replace(b"Hi there.", b"Pay here."))
    r = site.q("release", ev.event_id, "--reason", "fp")
    assert r.exit_code == 1 and "does not match its record" in r.output
    assert site.state(ev.event_id) == "quarantined" and site.queued() == []


def test_interrupted_release_can_be_taken_over(site: QSite) -> None:
    ev = quarantined()
    site.add(ev)
    entry = q.claim(site.engine, ev.event_id)  # a release that crashed after its claim
    busy = site.q("release", ev.event_id, "--reason", "fp")
    assert busy.exit_code == 1 and "being released by another process" in busy.output
    early = site.q("release", ev.event_id, "--reason", "fp", "--retry-interrupted")
    assert early.exit_code == 1 and "may still be running" in early.output
    with site.engine.begin() as conn:  # an hour ago, as the claim would have written it
        conn.execute(update(QuarantineEntry).where(QuarantineEntry.event_id == ev.event_id)
                     .values(updated_at=entry.updated_at - timedelta(hours=1)))
    ok = site.q("release", ev.event_id, "--reason", "fp", "--retry-interrupted")
    assert ok.exit_code == 0, ok.output
    assert site.state(ev.event_id) == "released"


def test_summaries_consumer_rebuilds_releases(site: QSite, corpus: dict[str, Any]) -> None:
    ev = corpus["spam"]
    assert site.q("release", ev.event_id, "--reason", "fp").exit_code == 0
    before = site.sql("SELECT * FROM quarantine_releases")
    # Wipe what the command wrote and replay the log: the consumer writes the same rows.
    site.sql("DELETE FROM quarantine_releases")
    site.sql("UPDATE quarantine_entries SET state = 'quarantined' WHERE event_id = :e",
             e=ev.event_id)
    sink = SummarySink(site.url)
    try:
        sink.set_position(0)
        run_consumer(JournalReader(site.journal), sink, once=True)
        run_consumer(JournalReader(site.journal), sink, once=True)  # and again: idempotent
    finally:
        sink.close()
    assert site.sql("SELECT * FROM quarantine_releases") == before
    assert site.state(ev.event_id) == "released"


def _release_proc(site: QSite, event_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([str(QSCAN), "-c", str(site.config_file), "quarantine", "release",
                             event_id, "--reason", "race"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.integration
def test_concurrent_release_from_two_processes(site: QSite) -> None:
    ev = quarantined()
    site.add(ev)
    site.record.mkdir(exist_ok=True)
    (site.record / "sleep").write_text("1")  # both are surely in flight together
    for _ in range(3):  # three rounds: each a fresh message, both processes racing
        procs = [_release_proc(site, ev.event_id) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 1], outs
        loser = next(o for p, o in zip(procs, outs, strict=True) if p.returncode == 1)
        assert ("already released" in loser[1] or "being released by another process"
                in loser[1]), loser
        assert site.state(ev.event_id) == "released"
        ev = quarantined()
        site.add(ev)
    assert len(site.queued()) == 3
    assert site.sql("SELECT count(*) FROM quarantine_releases")[0][0] == 3


# -- delete and holds -------------------------------------------------------------------
def test_hold_blocks_delete(site: QSite) -> None:
    ev = quarantined(sender="ceo@example.com")
    other = quarantined(when=ago(30))
    site.add(ev, other)
    made = site.q("hold", "create", "Acme v. Example", "--custodian", "ceo@example.com",
                  "--reason", "litigation notice")
    assert made.exit_code == 0, made.output
    refused = site.q("delete", ev.event_id, "--reason", "phishing")
    assert refused.exit_code == 1 and "legal hold" in refused.output
    assert "Acme v. Example" in refused.output
    assert site.copy_path(ev, "spam").exists() and site.state(ev.event_id) == "quarantined"
    # Expiry keeps it too.
    r = site.q("expire", "--older-than", "1h", "--now", (NOW + timedelta(days=400)).isoformat(),
               "--json")
    report = json.loads(r.stdout)
    assert report["held"] == 1 and report["deleted"] == {"quarantine-expiry/spam": 1}
    assert site.copy_path(ev, "spam").exists() and not site.copy_path(other, "spam").exists()
    # Once the hold ends, delete works and is audited.
    assert site.q("hold", "release", "Acme v. Example", "--reason", "settled").exit_code == 0
    ok = site.q("delete", ev.event_id, "--reason", "phishing", "--by", "secops")
    assert ok.exit_code == 0, ok.output
    assert not site.copy_path(ev, "spam").exists()
    assert site.state(ev.event_id) == "deleted"
    [(actor, reason, location)] = site.sql(
        "SELECT actor, reason, location FROM deletions WHERE ref_event_id = :e", e=ev.event_id)
    assert actor.startswith("secops (run by ") and reason == "quarantine delete: phishing"
    assert location == "quarantine/spam"
    again = site.q("delete", ev.event_id, "--reason", "again")
    assert again.exit_code == 1 and "nothing left to delete" in again.output
    assert site.verify_kinds() == []  # tombstones chain; verify finds nothing wrong


# -- expire -------------------------------------------------------------------------------
def test_expire_boundaries_by_received_time(site: QSite) -> None:
    young = quarantined(when=ago(13))
    old = quarantined(when=ago(15))
    site.add(young, old)
    # mtimes say the opposite: expiry must not look at them.
    past = (NOW - timedelta(days=60)).timestamp()
    os.utime(site.copy_path(young, "spam"), (past, past))
    future = (NOW + timedelta(days=1)).timestamp()
    os.utime(site.copy_path(old, "spam"), (future, future))

    dry = site.q("expire", "--older-than", "14d", "--now", NOW.isoformat(), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["deleted"] == {"quarantine-expiry/spam": 1}
    assert [x["event_id"] for x in report["examples"]] == [old.event_id]
    assert site.copy_path(old, "spam").exists() and site.state(old.event_id) == "quarantined"

    run = site.q("expire", "--older-than", "14d", "--now", NOW.isoformat())
    assert run.exit_code == 0, run.output
    assert "spam: older than 14d: deleted 1" in run.stdout
    assert not site.copy_path(old, "spam").exists() and site.copy_path(young, "spam").exists()
    assert site.state(old.event_id) == "deleted" and site.state(young.event_id) == "quarantined"
    [(rule, reason)] = site.sql("SELECT rule, reason FROM deletions")
    assert rule == "quarantine-expiry/spam" and "14d" in reason
    types = [e.type for e in site.journal.read(0, 1000, with_raw=False)]
    assert types.count("message.deleted") == 1
    # The default config: 14 days, the same boundary.
    again = site.q("expire", "--now", (NOW + timedelta(days=2)).isoformat(), "--json")
    assert json.loads(again.stdout)["deleted"] == {"quarantine-expiry/spam": 1}


def test_expire_per_folder_overrides(migrated_url: str, tmp_path: Path) -> None:
    s = QSite(migrated_url, tmp_path,
              "[quarantine]\nexpire_days = 14\nfolder_days = { spam = 7, viruses = 30 }\n")
    try:
        evs = {"spam": quarantined(when=ago(10)),
               "policy": quarantined(Category.POLICY, "bad-attachment", when=ago(10)),
               "virus-20": quarantined(Category.VIRUS, "virus", when=ago(20)),
               "virus-31": quarantined(Category.VIRUS, "virus", when=ago(31))}
        s.add(*evs.values())
        r = s.q("expire", "--now", NOW.isoformat(), "--json")
        assert r.exit_code == 0, r.output
        report = json.loads(r.stdout)
        assert report["ages"] == {"viruses": "30d", "policy": "14d", "spam": "7d", "dlp": "14d"}
        assert report["deleted"] == {"quarantine-expiry/spam": 1, "quarantine-expiry/viruses": 1}
        assert {k: s.state(e.event_id) for k, e in evs.items()} == {
            "spam": "deleted", "policy": "quarantined", "virus-20": "quarantined",
            "virus-31": "deleted"}
        # --folder limits a run to one folder; --older-than overrides the config.
        r = s.q("expire", "--now", NOW.isoformat(), "--older-than", "5d", "--folder", "policy")
        assert r.exit_code == 0 and s.state(evs["policy"].event_id) == "deleted"
        assert s.state(evs["virus-20"].event_id) == "quarantined"
    finally:
        s.close()


def test_bad_quarantine_config_names_the_key(tmp_path: Path) -> None:
    from qscan.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"qscan.toml:3: key 'quarantine.folder_days': .*"
                                          r"unknown folder 'junk'"):
        parse_config("[quarantine]\nexpire_days = 14\nfolder_days = { junk = 3 }\n",
                     tmp_path / "qscan.toml")
    r = CliRunner().invoke(quarantine, ["expire", "--older-than", "10m"], obj={})
    assert r.exit_code == 2 and "is not an age" in r.output


# -- the pure parts ------------------------------------------------------------------------
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(["d", "h", "w", "", "D"]),
       st.sampled_from(["", " "]))
def test_parse_age_round_trips(n: int, unit: str, pad: str) -> None:
    age = q.parse_age(f"{pad}{n}{pad}{unit}{pad}")
    expected = {"d": timedelta(days=n), "": timedelta(days=n), "h": timedelta(hours=n),
                "w": timedelta(weeks=n)}[unit.lower()]
    assert age == expected
    assert q.parse_age(q.format_age(age)) == age


@given(st.text(max_size=20))
def test_parse_age_refuses_anything_else(text: str) -> None:
    try:
        age = q.parse_age(text)
    except ValueError:
        return
    assert age >= timedelta(hours=1)
    assert text.strip()[:1].isdigit()


@given(st.text(max_size=80))
def test_check_address_accepts_only_envelope_safe_addresses(text: str) -> None:
    try:
        address = check_address(text)
    except ValueError:
        return
    assert "@" in address and address.isascii() and len(address) <= 320
    assert not any(c in address for c in "\0\r\n\t <>")
    env = parse_envelope(build_envelope(b"", [address.encode()]))
    assert env.recipients == [address.encode()]


@settings(max_examples=200)
@given(reason=st.text(max_size=400), actor=st.text(max_size=120),
       eol=st.sampled_from([b"\n", b"\r\n"]))
def test_release_header_is_one_header(reason: str, actor: str, eol: bytes) -> None:
    stamp = q.Stamp("0193a1b2-0000-7000-8000-000000000001", NOW, actor, reason, "mx1", "spam",
                    "0192f1c0-0000-7000-8000-000000000002")
    header = release_header(stamp, eol)
    assert header.endswith(eol)
    lines = header[: -len(eol)].split(eol)
    assert lines[0].startswith(b"X-Qmail-Scanner-Diagnostics: released from quarantine/spam")
    assert all(line[:1] in (b"\t",) for line in lines[1:])  # continuations only
    assert b"\r" not in header.replace(b"\r\n", b"") and b"\n" not in header.replace(eol, b"")
    msg = message_from_bytes(header + b"Subject: s" + eol + eol + b"body", policy=default_policy)
    assert list(msg.keys()) == ["X-Qmail-Scanner-Diagnostics", "Subject"]


def test_prepare_release_refuses_a_copy_without_recipients_or_block() -> None:
    from archive.envelope_block import archived_message

    ev = quarantined()
    data = archived_message(ev)
    import hashlib

    facts = MessageFacts(ev.event_id, ev.time, ev.envelope.sender, ev.envelope.recipients,
                         hashlib.sha256(ev.raw_message).hexdigest(), "quarantine/spam")
    stamp = q.Stamp("r", NOW, "me", "why", "h", "spam", ev.event_id)
    prepared = prepare_release(data, facts, stamp)
    assert prepared.message.endswith(ev.raw_message)
    assert prepared.recipients == ev.envelope.recipients
    with pytest.raises(CopyError, match="no envelope block"):
        prepare_release(ev.raw_message, facts, stamp)


def test_released_event_round_trips() -> None:
    ev = MessageReleased(event_id="e", time=NOW, host="h", ref_event_id="r", ref_host="mx",
                         folder="spam", actor="a", reason="fp", sender="", recipients=["b@x.y"],
                         original_recipients=True, sha256="0" * 64)
    assert from_json(to_json(ev)) == ev


def test_help_teaches() -> None:
    r = CliRunner().invoke(quarantine, ["release", "--help"])
    assert r.exit_code == 0 and "--retry-interrupted" in r.output and "Examples" in r.output


def test_racing_claims_leave_exactly_one_winner(site: QSite) -> None:
    """Eight claims at once, each on its own engine (PostgreSQL: all may read 'quarantined'
    before any UPDATE; the conditional UPDATE still lets only one through)."""
    import threading

    from compliance import db

    ev = quarantined()
    site.add(ev)
    engines = [db.make_engine(site.url) for _ in range(8)]
    barrier = threading.Barrier(len(engines))
    results: list[str] = []

    def attempt(engine: Any) -> None:
        barrier.wait()
        try:
            q.claim(engine, ev.event_id)
            results.append("won")
        except q.QuarantineError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for e in engines:
        e.dispose()
    assert results.count("won") == 1, results
    assert all("being released by another process" in r for r in results if r != "won")
    assert site.state(ev.event_id) == "releasing"


@pytest.mark.integration
def test_raw_refuses_a_terminal_and_headers_are_escaped(site: QSite, corpus: dict[str, Any]) -> None:
    """Hostile mail can carry escape sequences: --raw will not write to a tty without --tty,
    and the header lines `show` prints have their control characters escaped."""
    import pty

    ev = corpus["policy"]
    qscan = Path(sys.executable).with_name("qscan")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([str(qscan), "-c", str(site.config_file), "quarantine", "show",
                               ev.event_id, "--raw"], stdout=terminal, stderr=subprocess.PIPE,
                              timeout=60, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 1
    assert b"refusing to write a raw message to a terminal" in proc.stderr
    lines = header_lines(b"Subject: hi\x1b]0;owned\x07\tthere\r\nX-A: \xc2\x9b31m\r\n\r\nbody")
    assert lines == ["Subject: hi\\x1b]0;owned\\x07\tthere", "X-A: \\x9b31m"]
