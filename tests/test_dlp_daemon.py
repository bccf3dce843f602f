"""DLP end to end: a real daemon and qscan-queue with dlp enabled, then the archive, summaries and
notify consumers: quarantine into dlp/, reject with the rule's text, monitor leaves the mail alone,
the compliance officer hears of notify/quarantine/reject rules (not monitor), and no full value
reaches the event, the SQL rows or the daemon's log."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from click.testing import CliRunner

from ingest.event import MessageScanned, from_json, to_json
from ingest.journal import Journal
from qscan.cli import cli
from qscan.testing.daemon import Harness, running_daemon
from tests.dlp_docs import mail, xlsx
from tests.dlp_samples import card, iban, iban_print, spaced
from tests.test_notify_delivery import Relay, free_port

pytestmark = pytest.mark.integration

RNG = random.Random(777)
CARDS = [card(RNG, "4", 16) for _ in range(4)]
IBAN = iban(RNG, "DE")
SECRETS = [*CARDS, *(spaced(c) for c in CARDS), IBAN, iban_print(IBAN)]
RULES = """
[detectors.falcon]
type = "keywords"
keywords = ["Project Falcon"]
context = ["confidential"]
confidence = "low"

[[rule]]
id = "cards-outbound"
detectors = ["payment_card"]
direction = "outbound"
min_count = 2
action = "quarantine"

[[rule]]
id = "falcon"
detectors = ["falcon"]
action = "reject"
reply = "Project Falcon material may not leave the company"

[[rule]]
id = "iban-watch"
detectors = ["iban"]
action = "monitor"

[[rule]]
id = "cards-inbound"
detectors = ["payment_card"]
direction = "inbound"
min_confidence = "high"
action = "notify"
"""
OFFICER = "dpo@example.net"


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    r = Relay(free_port()).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, relay: Relay) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("dlp")
    (root / "dlp.toml").write_text(RULES)
    extra = (f'[scanners]\nenabled = ["size", "internal", "dlp"]\n'
             f'[dlp]\nrules = "{root / "dlp.toml"}"\n'
             f'[notify]\ncompliance_officer = "{OFFICER}"\nadmin = ""\nsmtp_host = "127.0.0.1"\n'
             f"smtp_port = {relay.port}\nrecipients = false\n")
    with running_daemon(root, extra=extra) as h:
        yield h


def scanned(h: Harness) -> list[MessageScanned]:
    with Journal(h.journal) as j:
        events = [from_json(e.body, e.raw) for e in j.read(0, 100000)]
    return [e for e in events if isinstance(e, MessageScanned)]


OUT = {"TCPREMOTEIP": "192.0.2.44", "RELAYCLIENT": ""}
IN = {"TCPREMOTEIP": "203.0.113.9"}


def test_dlp_end_to_end(daemon: Harness, relay: Relay) -> None:
    sent: dict[str, str] = {}

    def send(name: str, raw: bytes, **env: str) -> int:
        before = len(scanned(daemon))
        res = daemon.send(raw, sender=b"alice@example.com", recipients=[b"bob@partner.example"], **env)
        events = scanned(daemon)
        assert len(events) == before + 1
        sent[name] = events[-1].event_id
        if res.code == 82:
            assert res.fd6 is not None
            sent[name + ":reply"] = res.fd6
        return res.code

    queued_before = len(daemon.recorded())
    # 1. outbound, two cards in a spreadsheet: quarantined, not queued
    sheet = xlsx([["name", "card"], ["Anna", spaced(CARDS[0])], ["Ben", spaced(CARDS[1])]])
    assert send("quarantine", mail(body="the list", attachments=[("cards.xlsx", "application/octet-stream",
                                                                  sheet)]), **OUT) == 0
    assert len(daemon.recorded()) == queued_before
    # 2. Project Falcon: rejected with the rule's text
    assert send("reject", mail(body="CONFIDENTIAL - Project Falcon budget"), **OUT) == 82
    assert sent["reject:reply"] == "DProject Falcon material may not leave the company (#5.7.1)"
    # 3. an IBAN: monitor only, delivered unchanged apart from qscan's usual headers
    raw_iban = mail(body=f"Our bank details: IBAN {iban_print(IBAN)}")
    assert send("monitor", raw_iban, **IN) == 0
    queued, _ = daemon.recorded()[-1]
    added = queued[: -len(raw_iban)]
    assert queued.endswith(raw_iban) and b"iban" not in added.lower()  # nothing tells it was flagged
    # 4. inbound card with context: notify (delivered, officer told)
    assert send("notify", mail(body=f"my credit card {spaced(CARDS[2])} exp 09/29"), **IN) == 0
    # 5. outbound card to a partner with no second card: below min_count, nothing
    assert send("clean", mail(body=f"card {spaced(CARDS[3])}"), **OUT) == 0

    events = {e.event_id: e for e in scanned(daemon)}
    q, r, m, n, c = (events[sent[k]] for k in ("quarantine", "reject", "monitor", "notify", "clean"))
    assert (q.category, q.action, q.reason, q.quarantine_folder) == ("dlp", "quarantine", "cards-outbound", "dlp")
    [qf] = q.dlp_findings
    assert qf["rule"] == "cards-outbound" and qf["count"] == 2 and qf["location"] == "2/cards.xlsx"
    assert qf["evidence"] == f"{CARDS[0][:4]} **** **** {CARDS[0][-4:]}, {CARDS[1][:4]} **** **** {CARDS[1][-4:]}"
    assert (r.category, r.action, r.reason) == ("dlp", "reject", "falcon")
    assert (m.category, m.action) == ("clean", "deliver") and m.dlp_findings[0]["action"] == "monitor"
    assert m.dlp_findings[0]["notify"] is False
    assert (n.category, n.action) == ("clean", "deliver") and n.dlp_findings[0]["notify"] is True
    assert c.dlp_findings == [] and c.action == "deliver"
    for ev in (q, r, m, n, c):  # the event's own fields: masked only (the raw message is the mail itself)
        body = to_json(ev, with_raw=False).decode()
        assert not any(s in body for s in SECRETS), ev.reason
    log = (daemon.root / "daemon.log").read_text(errors="replace")
    assert not any(s in log for s in SECRETS)

    # the consumers: archive (dlp/ quarantine), summaries (SQL), notify (the officer)
    runner = CliRunner()
    cfg = ["-c", str(daemon.config)]
    for args in (["db", "upgrade"], ["consume", "archive", "--once"], ["consume", "summaries", "--once"],
                 ["consume", "notify", "--once"]):
        out = runner.invoke(cli, cfg + args)
        assert out.exit_code == 0, (args, out.output)
    held = list((daemon.root / "quarantine" / "dlp" / "new").iterdir())
    assert [p.name for p in held if sent["quarantine"] in p.name]
    con = sqlite3.connect(daemon.root / "qscan.db")
    try:
        rows = con.execute("SELECT event_id, rule, detector, count, action, evidence, location FROM dlp_findings"
                           " ORDER BY id").fetchall()
        messages = con.execute("SELECT * FROM messages").fetchall()
    finally:
        con.close()
    by_event = {row[0]: row[1:] for row in rows}
    assert by_event[sent["quarantine"]][:4] == ("cards-outbound", "payment_card", 2, "quarantine")
    assert by_event[sent["monitor"]][:2] == ("iban-watch", "iban")
    assert by_event[sent["monitor"]][4] == f"DE{IBAN[2:4]} **** **** **** **{IBAN[-4:-2]} {IBAN[-2:]}"
    blob = json.dumps([rows, messages], default=str)
    assert not any(s in blob for s in SECRETS)
    # the officer was told of quarantine, reject and notify, not of monitor or clean mail
    told = {}
    for _, rcpts, data in relay.handler.messages:
        assert rcpts == [OFFICER]
        notice = message_from_bytes(data, policy=default_policy)
        told[str(notice["X-qscan-Notification"]).rpartition("event=")[2]] = data
    assert set(told) == {sent["quarantine"], sent["reject"], sent["notify"]}
    assert not any(s.encode() in d for d in told.values() for s in SECRETS)
    assert b"cards-outbound" in told[sent["quarantine"]]
