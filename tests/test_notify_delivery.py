"""The notify consumer end to end: journal -> run_consumer -> NotifySink -> outbox -> a real SMTP
server on loopback (aiosmtpd), plus qmail-inject (a stand-in program) and the CLI.

Who got which notice, in which language, with which headers; forged, list and null senders got
nothing; a replay sends nothing new; the relay down then up delivers exactly once; a crash
mid-DATA is never resent by itself.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from compliance.notify.audience import NotifyPolicy
from compliance.notify.compose import Identity
from compliance.notify.delivery import QmailInjectTransport, SmtpTransport, Transport
from compliance.notify.marks import MarkKey
from compliance.notify.outbox import Courier, Outbox, RetryPolicy
from compliance.notify.render import Renderer
from compliance.notify.settings import NotifySettings
from compliance.notify.sink import JournalHeaders, Notifier, NotifySink
from ingest.event import Action, Category, Finding, MessageScanned, to_json
from ingest.journal import Journal
from ingest.log import JournalReader, run_consumer
from tests.conftest import require
from tests.factories import make_event, raw_message

pytestmark = pytest.mark.integration

try:
    from aiosmtpd.controller import Controller
except ImportError:  # pragma: no cover - `make test` installs it
    Controller = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Received:
    """aiosmtpd handler: every message the relay accepted."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 2.0.0 queued"

    def by_rcpt(self, names: dict[str, str]) -> dict[tuple[str, str], EmailMessage]:
        """(recipient, scenario name of the event) -> the message; asserts one each."""
        out = {}
        for _, rcpts, data in self.messages:
            msg = message_from_bytes(data, policy=default_policy)
            assert isinstance(msg, EmailMessage)
            event_id = str(msg["X-qscan-Notification"]).rpartition("event=")[2]
            for r in rcpts:
                key = (r, names[event_id])
                assert key not in out, f"{key} got two notifications"
                out[key] = msg
        return out


class Relay:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = Received()
        self.controller: Any = None

    def start(self) -> Relay:
        require("aiosmtpd (pip install -e '.[test]')", Controller is not None)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay(free_port()).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_migrated_template: Path) -> str:
    import shutil

    path = tmp_path / "db" / "qscan.db"
    path.parent.mkdir()
    shutil.copy(sqlite_migrated_template, path)
    return f"sqlite:///{path}"


POLICY = NotifyPolicy(
    sender="psender", local_domains=("example.org", "example.de"), admin="qadmin@example.net",
    compliance_officer="dpo@example.net", languages={"example.de": "de"},
    own_addresses=("postmaster@mx1.example.com",),
    forging_viruses=("*netsky*",), never_notify=("postmaster", "mailer-daemon"),
)
IDENTITY = Identity("postmaster@mx1.example.com", "Mail scanner", "", "mx1.example.com", MarkKey.generate())


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def journal_with(path: Path, events: list[MessageScanned]) -> Journal:
    j = Journal(path)
    for ev in events:
        j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message or None)
    return j


def make_sink(url: str, journal_path: Path, transport: Any, *, policy: NotifyPolicy = POLICY,
              clock: Any = None, **kw: Any) -> NotifySink:
    notifier = Notifier(policy, Renderer(host="mx1.example.com", contact="helpdesk@example.net"),
                        IDENTITY, JournalHeaders(str(journal_path)))
    kw.setdefault("retry", RetryPolicy(NotifySettings(retry_base=30, retry_max=300, give_up_after=3600), lease=60))
    if clock is not None:
        kw["clock"] = clock
    return NotifySink(url, notifier, transport, **kw)


def smtp(port: int) -> Any:
    return lambda: SmtpTransport(NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5))


def policy_event(sender: str = "alice@example.com", recipients: list[str] | None = None,
                 raw: bytes | None = None, subject: str = "Quarterly report") -> MessageScanned:
    return make_event(sender=sender, recipients=recipients or ["bob@example.org"], subject=subject,
                      action=Action.QUARANTINE, category=Category.POLICY, reason="policy",
                      attachments=[("invoice.pdf.exe", "application/octet-stream", 10)],
                      findings=[Finding(scanner="internal", verdict=Category.POLICY, name="double-extension")],
                      raw=raw)


def with_header(header: str) -> bytes:
    return raw_message().replace(b"Subject:", header.encode() + b"\nSubject:", 1)


def scenario() -> dict[str, MessageScanned]:
    """Events covering who is told and who must not be; keys name them."""
    return {
        "virus": make_event(sender="carol@example.com",
                            recipients=["bob@example.org", "dieter@example.de", "zed@remote.test"],
                            subject="Rechnung März", action=Action.QUARANTINE, category=Category.VIRUS,
                            reason="virus", findings=[Finding(scanner="clamd", verdict=Category.VIRUS,
                                                              name="Eicar-Test-Signature")]),
        "policy": policy_event(sender="alice@example.com", recipients=["bob@example.org"]),
        "null": policy_event(sender="", recipients=["bob@example.org"]),
        "daemon": policy_event(sender="MAILER-DAEMON@example.com", recipients=["bob@example.org"]),
        "list": policy_event(sender="list-owner@lists.example.com",
                             raw=with_header("List-Id: <users.lists.example.com>")),
        "bulk": policy_event(sender="news@shop.example.com", raw=with_header("Precedence: bulk")),
        "auto": policy_event(sender="robot@example.com", raw=with_header("Auto-Submitted: auto-replied")),
        "person": policy_event(sender="frank@example.com", raw=with_header("Auto-Submitted: no")),
        "dlp": make_event(sender="gina@example.org", recipients=["x@remote.test"],
                          dlp_findings=[{"rule": "cards", "detector": "payment_card", "count": 2}]),
        "clean": make_event(sender="hans@example.com"),
    }


def consume(sink: NotifySink, journal: Journal) -> int:
    return run_consumer(JournalReader(journal), sink, once=True)


def test_who_gets_what_in_which_language_and_replay_sends_nothing(
        migrated_url: str, tmp_path: Path, relay: Relay) -> None:
    events = scenario()
    journal = journal_with(tmp_path / "journal.db", list(events.values()))
    sink = make_sink(migrated_url, tmp_path / "journal.db", smtp(relay.port))
    try:
        assert consume(sink, journal) == len(events)
        got = relay.handler.by_rcpt({ev.event_id: name for name, ev in events.items()})
        senders = {mail_from for mail_from, _, _ in relay.handler.messages}
        assert senders == {"<>"}  # MAIL FROM:<>, the null sender: nothing bounces back to us
        assert sorted(got) == sorted([
            ("qadmin@example.net", "virus"), ("bob@example.org", "virus"), ("dieter@example.de", "virus"),
            *[(who, name) for name in ("policy", "null", "daemon", "list", "bulk", "auto", "person")
              for who in ("qadmin@example.net", "bob@example.org")],
            ("alice@example.com", "policy"), ("frank@example.com", "person"), ("dpo@example.net", "dlp"),
        ])
        de = got["dieter@example.de", "virus"]
        assert de["Subject"] == "Virus in einer Nachricht an Sie gefunden: Rechnung März"
        assert de["Content-Language"] == "de" and de["Auto-Submitted"] == "auto-replied"
        assert de["Date"] and de["Message-ID"].startswith(f"<qscan.{events['virus'].event_id}.virus.")
        assert "=?utf-8?" in relay_headers(relay, "dieter@example.de")
        body = de.get_body(("plain",))
        assert body is not None and "Quarantäne-ID: " + events["virus"].event_id in body.get_content()
        assert got["bob@example.org", "virus"]["Content-Language"] == "en"
        assert got["qadmin@example.net", "virus"]["Subject"] == "Quarantined (virus): Rechnung März"
        alice = got["alice@example.com", "policy"]
        assert alice["Subject"] == "Your message was blocked: Quarterly report"
        assert alice["In-Reply-To"] == "<m1@example.com>" and alice["Content-Language"] == "en"
        assert "helpdesk@example.net" in alice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert got["dpo@example.net", "dlp"]["Subject"] == "DLP rules matched: Quarterly report"
        told = {who for who, _ in got}
        for silent in ("", "MAILER-DAEMON@example.com", "list-owner@lists.example.com", "news@shop.example.com",
                       "robot@example.com", "carol@example.com", "zed@remote.test", "hans@example.com"):
            assert silent not in told
        first = len(relay.handler.messages)
        assert Outbox(sink.engine).counts() == {"sent": first}

        # Replay from the start, and a restarted consumer: nothing new is sent.
        sink.set_position(0)
        assert consume(sink, journal) == len(events)
    finally:
        sink.close()
    again = make_sink(migrated_url, tmp_path / "journal.db", smtp(relay.port))
    try:
        again.set_position(0)
        consume(again, journal)
        again.deliver(ignore_schedule=True)
    finally:
        again.close()
        journal.close()
    assert len(relay.handler.messages) == first


def test_forged_mark_alerts_everyone_genuine_notice_loops_nowhere(
        sqlite_url: str, tmp_path: Path, relay: Relay) -> None:
    """End to end: a virus with a forged X-qscan-Notification header still reaches the admin and the
    recipient; the notice our relay received, coming back through the scanner and held, tells nobody."""
    virus = make_event(sender="carol@example.com", recipients=["bob@example.org"], subject="Invoice",
                       action=Action.QUARANTINE, category=Category.VIRUS, reason="virus",
                       findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature")],
                       raw=with_header("X-qscan-Notification: virus/recipient; event=whatever"))
    journal = journal_with(tmp_path / "journal.db", [virus])
    sink = make_sink(sqlite_url, tmp_path / "journal.db", smtp(relay.port))
    try:
        consume(sink, journal)
        assert sorted(r for _, rs, _ in relay.handler.messages for r in rs) == ["bob@example.org",
                                                                               "qadmin@example.net"]
        assert sink.notifier.forged_marks == 1
        # Our own notice to bob, as the relay got it, is scanned again and quarantined (say by a
        # policy rule): a genuine mark, addressed to its own recipient, so nobody is told.
        notice = next(data for _, rs, data in relay.handler.messages if rs == ["bob@example.org"])
        loop = make_event(sender="", recipients=["bob@example.org"], subject="Virus found",
                          action=Action.QUARANTINE, category=Category.POLICY, reason="policy", raw=notice)
        # The same notice pasted into mail to someone else is ordinary mail: they and the admin are told.
        pasted = make_event(sender="mallory@example.com", recipients=["dieter@example.de"],
                            action=Action.QUARANTINE, category=Category.POLICY, reason="policy", raw=notice)
        journal.append(loop.event_id, loop.type, to_json(loop, with_raw=False), loop.raw_message)
        journal.append(pasted.event_id, pasted.type, to_json(pasted, with_raw=False), pasted.raw_message)
        consume(sink, journal)
        tos = [tuple(rs) for _, rs, _ in relay.handler.messages[2:]]
        assert sorted(tos) == [("dieter@example.de",), ("qadmin@example.net",)]
        assert all(pasted.event_id in str(message_from_bytes(d)["X-qscan-Notification"])
                   for _, _, d in relay.handler.messages[2:])
        assert sink.notifier.forged_marks == 2
    finally:
        sink.close()
        journal.close()


def test_replay_after_a_config_change_tells_nobody_of_old_events(
        sqlite_url: str, tmp_path: Path, relay: Relay) -> None:
    """A new admin address, then the log replayed from the start: only young events are told."""
    now = datetime.now(UTC)
    old = make_event(sender="carol@example.com", recipients=["zed@remote.test"], when=now - timedelta(days=5),
                     action=Action.QUARANTINE, category=Category.VIRUS, reason="virus",
                     findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature")])
    young = make_event(sender="carol@example.com", recipients=["zed@remote.test"], when=now - timedelta(hours=2),
                       action=Action.REJECT, category=Category.POLICY, reason="policy")
    journal = journal_with(tmp_path / "journal.db", [old, young])
    first = make_sink(sqlite_url, tmp_path / "journal.db", smtp(relay.port),
                      policy=NotifyPolicy(**{**POLICY.__dict__, "admin": "", "max_age": 0}))
    try:
        assert consume(first, journal) == 2
    finally:
        first.close()
    assert relay.handler.messages == []  # nobody to tell yet
    sink = make_sink(sqlite_url, tmp_path / "journal.db", smtp(relay.port),
                     policy=NotifyPolicy(**{**POLICY.__dict__, "admin": "newadmin@example.net"}))
    try:
        sink.set_position(0)  # what `qscan replay notify --from-beginning` does
        assert consume(sink, journal) == 2
        told = [(rs, str(message_from_bytes(d)["X-qscan-Notification"]).rpartition("event=")[2])
                for _, rs, d in relay.handler.messages]
        assert told == [(["newadmin@example.net"], young.event_id)]
        assert sink.notifier.too_old == 1
    finally:
        sink.close()
        journal.close()


def relay_headers(relay: Relay, rcpt: str) -> str:
    for _, rcpts, data in relay.handler.messages:
        if rcpt in rcpts:
            return data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    raise AssertionError(rcpt)


def test_relay_down_then_up_delivers_exactly_once(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    clock = Clock()
    ev = policy_event(sender="alice@example.com", recipients=["bob@example.org"])
    journal = journal_with(tmp_path / "journal.db", [ev])
    sink = make_sink(sqlite_url, tmp_path / "journal.db", smtp(port), clock=clock)
    relay = Relay(port)
    try:
        consume(sink, journal)  # relay down: the first pass fails at connect
        box = Outbox(sink.engine)
        rows = box.rows()
        assert {r.state for r in rows} == {"pending"} and len(rows) == 3
        assert sum(r.attempts for r in rows) == 1  # the pass stopped at the first connect failure
        assert "unavailable" in (rows[-1].last_error or "") or any("unavailable" in (r.last_error or "")
                                                                    for r in rows)
        assert sink.deliver().sent == 0  # the failed one waits for its back-off
        relay.start()
        clock.now += timedelta(seconds=31)
        result = sink.deliver()
        assert result.sent == 3, result
        clock.now += timedelta(hours=2)
        assert sink.deliver(ignore_schedule=True).sent == 0
        consume(sink, journal)
        sink.set_position(0)
        consume(sink, journal)
        assert sorted(r for _, rs, _ in relay.handler.messages for r in rs) == [
            "alice@example.com", "bob@example.org", "qadmin@example.net"]
        assert box.counts() == {"sent": 3}
    finally:
        relay.stop()
        sink.close()
        journal.close()


def test_background_thread_retries_while_the_log_is_quiet(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    ev = policy_event(sender="alice@example.com", recipients=["bob@example.org"])
    journal = journal_with(tmp_path / "journal.db", [ev])
    sink = make_sink(sqlite_url, tmp_path / "journal.db", smtp(port), interval=0.1,
                     retry=RetryPolicy(NotifySettings(retry_base=0.2, retry_max=0.5, give_up_after=60), lease=60))
    relay = Relay(port)
    try:
        consume(sink, journal)
        relay.start()
        deadline = time.monotonic() + 15
        while len(relay.handler.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(relay.handler.messages) == 3
        time.sleep(0.5)
        assert len(relay.handler.messages) == 3
    finally:
        sink.close()
        relay.stop()
        journal.close()


class CrashAtDataTransport:
    """Dies (like a killed process) right after the commit point, before the relay answers."""

    def send(self, envelope_sender: str, recipient: str, message: bytes, commit_point: Any) -> None:
        commit_point()
        raise KeyboardInterrupt("killed mid-DATA")

    def close(self) -> None:
        return None


class CrashBeforeDataTransport(CrashAtDataTransport):
    def send(self, envelope_sender: str, recipient: str, message: bytes, commit_point: Any) -> None:
        raise KeyboardInterrupt("killed while connecting")


def test_a_crash_never_sends_twice(sqlite_url: str, tmp_path: Path, relay: Relay) -> None:
    clock = Clock()
    ev = policy_event(sender="alice@example.com", recipients=["bob@example.org"])
    journal = journal_with(tmp_path / "journal.db", [ev])
    policy = NotifyPolicy(**{**POLICY.__dict__, "admin": "", "sender": "none"})  # bob only
    sink = make_sink(sqlite_url, tmp_path / "journal.db", CrashAtDataTransport, policy=policy, clock=clock,
                     deliver=False)
    try:
        consume(sink, journal)
        with pytest.raises(KeyboardInterrupt):
            sink.deliver()
        box = Outbox(sink.engine, RetryPolicy(lease=60), clock)
        assert [r.state for r in box.rows()] == ["indoubt"]
        clock.now += timedelta(days=1)
        assert Courier(box, smtp(relay.port)).deliver(ignore_schedule=True).sent == 0
        assert relay.handler.messages == []
        # The operator decides to resend it: exactly once more.
        assert box.requeue(event_id=ev.event_id) == 1
        assert Courier(box, smtp(relay.port)).deliver().sent == 1

        # A crash before the commit point: the stale claim is taken again after the lease.
        ev2 = policy_event(sender="alice@example.com", recipients=["bob@example.org"])
        journal.append(ev2.event_id, ev2.type, to_json(ev2, with_raw=False), ev2.raw_message)
        consume(sink, journal)
        with pytest.raises(KeyboardInterrupt):
            Courier(box, CrashBeforeDataTransport).deliver()
        assert box.rows(event_id=ev2.event_id)[0].state == "sending"
        assert Courier(box, smtp(relay.port)).deliver().sent == 0  # still leased
        clock.now += timedelta(seconds=61)
        assert Courier(box, smtp(relay.port)).deliver().sent == 1
        assert len(relay.handler.messages) == 2
    finally:
        sink.close()
        journal.close()


def test_permanent_refusal_is_not_retried(sqlite_url: str, tmp_path: Path) -> None:
    class Refusing(Received):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              options: list[str]) -> str:
            if address == "bob@example.org":
                return "550 5.1.1 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    port = free_port()
    relay = Relay(port)
    relay.handler = Refusing()
    relay.start()
    ev = policy_event(sender="alice@example.com", recipients=["bob@example.org"])
    journal = journal_with(tmp_path / "journal.db", [ev])
    sink = make_sink(sqlite_url, tmp_path / "journal.db", smtp(port))
    try:
        consume(sink, journal)
        states = {r.recipient: (r.state, r.last_error) for r in Outbox(sink.engine).rows()}
        assert states["bob@example.org"][0] == "failed" and "550" in (states["bob@example.org"][1] or "")
        assert states["alice@example.com"][0] == "sent" and states["qadmin@example.net"][0] == "sent"
    finally:
        sink.close()
        relay.stop()
        journal.close()


STANDIN_INJECT = """#!{python}
import json, os, sys
out = os.environ.get("INJECT_LOG") or {log!r}
with open(out, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": sys.stdin.read(),
                        "qmail_env": sorted(k for k in os.environ if k.startswith("QMAIL"))}}) + "\\n")
sys.exit(int(open({code!r}).read()))
"""


def test_qmail_inject_transport(tmp_path: Path) -> None:
    import json

    log, code = tmp_path / "inject.log", tmp_path / "code"
    code.write_text("0")
    prog = tmp_path / "qmail-inject"
    prog.write_text(STANDIN_INJECT.format(python=sys.executable, log=str(log), code=str(code)))
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    t: Transport = QmailInjectTransport(prog)
    marks: list[str] = []
    os.environ["QMAILINJECT"] = "s"
    try:
        t.send("", "bob@example.org", b"Subject: hi\r\n\r\nbody\r\n", lambda: marks.append("commit"))
        t.send("bounces@example.net", "carl@example.org", b"Subject: hi\r\n\r\nbody\r\n", lambda: None)
    finally:
        del os.environ["QMAILINJECT"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["argv"] == ["-a", "bob@example.org"]
    assert calls[0]["stdin"] == "Return-Path: <>\nSubject: hi\n\nbody\n"
    assert calls[0]["qmail_env"] == []  # QMAILINJECT=s would keep Return-Path from setting <>
    assert calls[1]["argv"] == ["-a", "-fbounces@example.net", "carl@example.org"]
    assert marks == ["commit"]
    from compliance.notify.delivery import DeliveryError

    code.write_text("111")
    with pytest.raises(DeliveryError) as temp:
        t.send("", "bob@example.org", b"x\r\n", lambda: None)
    assert not temp.value.permanent and not temp.value.in_doubt
    code.write_text("100")
    with pytest.raises(DeliveryError) as perm:
        t.send("", "bob@example.org", b"x\r\n", lambda: None)
    assert perm.value.permanent


def write_config(tmp_path: Path, port: int, **notify: str) -> Path:
    extra = "".join(f"{k} = {v}\n" for k, v in notify.items())
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f"""
data_dir = "{tmp_path}"
[daemon]
hostname = "mx1.example.com"
[summary_log]
target = "none"
[notify]
local_domains = ["example.org", "example.de"]
admin = "qadmin@example.net"
languages = {{ "example.de" = "de" }}
smtp_host = "127.0.0.1"
smtp_port = {port}
delivery_interval = 0.2
{extra}""")
    return cfg


def test_cli_preview_consume_and_outbox(tmp_path: Path, relay: Relay) -> None:
    from compliance import db
    from qscan.cli import cli

    cfg = write_config(tmp_path, relay.port)
    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    ev = make_event(sender="carol@example.com", recipients=["dieter@example.de"], subject="Grüße",
                    action=Action.QUARANTINE, category=Category.VIRUS, reason="virus",
                    findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature")])
    journal_with(tmp_path / "journal.db", [ev]).close()
    runner = CliRunner()

    out = runner.invoke(cli, ["-c", str(cfg), "notify", "preview", "--lang", "de", "--kind", "virus", ev.event_id])
    assert out.exit_code == 0, out.output
    assert "Subject: Virus in einer Nachricht an Sie gefunden: Grüße" in out.output
    assert "Auto-Submitted: auto-replied" in out.output and "Quarantäne-ID:" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "notify", "preview", "--lang", "fr", "--audience", "admin",
                              "--format", "mime", ev.event_id])
    assert out.exit_code == 0 and "Content-Language: fr" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "notify", "plan", ev.event_id])
    assert "notify  dieter@example.de  virus/recipient  de" in out.output
    assert "silent  carol@example.com" in out.output
    assert relay.handler.messages == []  # previews send nothing
    assert not (tmp_path / "notify.key").exists()  # ... and leave no secret behind

    out = runner.invoke(cli, ["-c", str(cfg), "consume", "notify", "--once"])
    assert out.exit_code == 0, out.output
    assert sorted(r for _, rs, _ in relay.handler.messages for r in rs) == ["dieter@example.de",
                                                                           "qadmin@example.net"]
    assert (tmp_path / "notify.key").stat().st_mode & 0o777 == 0o600  # sending made the site's key
    out = runner.invoke(cli, ["-c", str(cfg), "notify", "outbox"])
    assert "sent=2" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "consumer", "position", "notify"])
    assert "notify: position 1 of 1" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "consume", "notify", "--once", "--from-start"])
    assert out.exit_code == 0 and len(relay.handler.messages) == 2
    out = runner.invoke(cli, ["-c", str(cfg), "notify", "catalogs", "--check"])
    assert out.exit_code == 0 and "catalogs complete" in out.output
