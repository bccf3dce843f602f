"""qscan behind a real notqmail: qmail-smtpd under tcpserver with the stock run script's user and
group, qmail-inject by an unprivileged user, qmail-send delivering to a Maildir.

The build (~20 s, once per tarball: tests/notqmail.py) and the site are shared by the module.
In CI these run as root on a fresh machine and must not skip (tests.conftest.require).
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from qscan.testing.daemon import Harness
from tests import notqmail
from tests.conftest import require
from tests.notqmail import MAILBOX, Site

pytestmark = pytest.mark.integration
BANNED_REPLY = "test policy: banned subject (#5.7.1)"
RULES = f"""\
[[rule]]
id = "banned-subject"
description = "banned subject"
action = "reject"
reply = "{BANNED_REPLY}"
header = {{ Subject = "^BANNED " }}
"""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    why = notqmail.unavailable()
    require(f"a real notqmail ({why})", why is None)
    with notqmail.running_site() as s:
        yield s


def start_daemon(site: Site, root: Path, daemon_keys: str) -> Harness:
    """A daemon whose accepted mail qscan-queue hands to notqmail's own (setuid qmailq) qmail-queue."""
    sock_dir = site.run / f"sock-{root.name}"  # under the 0755 run directory: qmaild may pass
    sock_dir.mkdir(mode=0o755)
    (root / "policy.toml").write_text(RULES)
    config = root / "qscan.toml"
    config.write_text(
        f'data_dir = "{root}"\n[daemon]\nsocket = "{sock_dir}/q.sock"\n'
        f'qmail_queue = "{site.prefix}/bin/qmail-queue"\nworkers = 2\nhostname = "mx.{notqmail.DOMAIN}"\n'
        f"timeout = 20\nclient_timeout = 60\n{daemon_keys}\n"  # = QSCAN_TIMEOUT in the tcpserver rules
        f'[summary_log]\ntarget = "file"\n[internal]\nrules = "{root / "policy.toml"}"\n'
    )
    h = Harness(root, config, sock_dir / "q.sock", root / "unused")
    h.start()
    return h


@pytest.fixture(scope="module")
def daemon(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    # 0o666: what the daemon's socket is to become by default, access then being decided by the
    # peer's credentials (SO_PEERCRED); test_default_socket_reaches_qmaild checks the default.
    h = start_daemon(site, tmp_path_factory.mktemp("qscan"), "socket_mode = 0o666")
    yield h
    h.stop()


@pytest.fixture
def up(daemon: Harness) -> Harness:
    """The daemon, running (a test that stops it starts it again; this makes sure)."""
    if daemon.proc is None:
        daemon.start()
    return daemon


@pytest.fixture(scope="module")
def port(site: Site, daemon: Harness) -> int:
    return site.start_smtpd(daemon.socket)


def message(subject: str, marker: str, sender: str = "alice@example.org") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {MAILBOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{marker}@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
            f"\r\nhello {marker}\r\n").encode()


def smtp_send(port: int, msg: bytes, sender: str) -> tuple[int, bytes]:
    """One SMTP transaction; the final reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=90) as s:
        s.ehlo("client.example.org")
        code, text = s.mail(sender)
        assert code == 250, text
        code, text = s.rcpt(MAILBOX)
        assert code == 250, text
        return s.data(msg)


def scanned(h: Harness, sender: str, timeout: float = 10) -> MessageScanned:
    """The last message.scanned event for this envelope sender."""
    deadline = time.monotonic() + timeout
    while True:
        with Journal(h.journal, readonly=True) as j:
            found = [e for e in (from_json(x.body, type_=x.type) for x in j.read(0, 1_000_000, with_raw=False))
                     if isinstance(e, MessageScanned) and e.envelope.sender == sender]
        if found or time.monotonic() > deadline:
            assert found, f"no event for {sender}"
            return found[-1]
        time.sleep(0.05)


def diagnostics(msg: bytes) -> str:
    """The unfolded X-Qmail-Scanner-Diagnostics value of a delivered message."""
    head = msg.split(b"\n\n", 1)[0].decode("utf-8", "replace").replace("\n ", " ").replace("\n\t", " ")
    values = [line.split(":", 1)[1].strip() for line in head.split("\n")
              if line.lower().startswith("x-qmail-scanner-diagnostics:")]
    assert len(values) == 1, head
    return values[0]


def unique() -> str:
    return uuid.uuid4().hex[:16]


def test_clean_smtp_mail_is_delivered_with_the_diagnostics_header(site: Site, up: Harness, port: int) -> None:
    marker = unique()
    sender = f"clean-{marker}@example.org"
    code, text = smtp_send(port, message("hello", marker, sender), sender)
    assert code == 250, (code, text, site.client_how)
    delivered = site.wait_delivered(marker.encode())
    assert diagnostics(delivered).startswith("from ")
    ev = scanned(up, sender)
    assert (ev.action, ev.category) == ("deliver", "clean")


def test_smtp_mail_header_records_qmaild_uid(site: Site, up: Harness, port: int) -> None:
    """As Qmail-Scanner did: the uid that ran the queue program, qmaild's for SMTP mail."""
    marker = unique()
    sender = f"uid-{marker}@example.org"
    code, text = smtp_send(port, message("hello", marker, sender), sender)
    assert code == 250, text
    assert f"uid {site.ids.qmaild})" in diagnostics(site.wait_delivered(marker.encode()))


def test_banned_message_gets_554_with_the_rule_text(site: Site, up: Harness, port: int) -> None:
    marker = unique()
    sender = f"banned-{marker}@example.org"
    code, text = smtp_send(port, message("BANNED stuff", marker, sender), sender)
    assert (code, text.decode()) == (554, BANNED_REPLY)
    ev = scanned(up, sender)
    assert (ev.action, ev.reason) == ("reject", "banned-subject")
    assert not [m for m in site.delivered() if marker.encode() in m]


def test_daemon_down_gives_451_then_the_retry_is_delivered(site: Site, up: Harness, port: int) -> None:
    marker = unique()
    sender = f"retry-{marker}@example.org"
    msg = message("hello again", marker, sender)
    up.stop()
    try:
        code, text = smtp_send(port, msg, sender)
        assert code == 451, text
    finally:
        up.start()
    code, text = smtp_send(port, msg, sender)  # what the sending MTA does later
    assert code == 250, text
    site.wait_delivered(marker.encode())
    time.sleep(0.5)  # a second copy would be in the Maildir by now
    assert len([m for m in site.delivered() if marker.encode() in m]) == 1


def inject(site: Site, h: Harness, marker: str, **env: str) -> tuple[str, bytes]:
    """qmail-inject run by the unprivileged mailbox user with QMAILQUEUE set; (sender, delivered)."""
    sender = f"{notqmail.MAILBOX_USER}-{marker}@{notqmail.DOMAIN}"
    msg = f"To: {MAILBOX}\nSubject: local {marker}\n\nfrom cron {marker}\n".encode()
    done = site.inject_as(site.ids.mailbox_uid, site.ids.mailbox_gid, msg, "-f", sender, MAILBOX,
                          QMAILQUEUE=str(site.client), QSCAN_SOCKET=str(h.socket), QSCAN_TIMEOUT="60",
                          QSCAN_QMAIL_QUEUE=str(site.qmail_queue), **env)
    assert done.returncode == 0, (done.returncode, done.stderr, site.client_how)
    return sender, site.wait_delivered(marker.encode())


def test_qmail_inject_by_an_unprivileged_user_is_delivered(site: Site, up: Harness) -> None:
    marker = unique()
    sender, delivered = inject(site, up, marker)
    assert diagnostics(delivered).startswith("from localhost (local)")
    ev = scanned(up, sender)
    assert ev.action == "deliver" and ev.client.local


def test_qmail_inject_header_records_the_injecting_uid(site: Site, up: Harness) -> None:
    _sender, delivered = inject(site, up, unique())
    assert f"uid {site.ids.mailbox_uid})" in diagnostics(delivered)


def test_local_user_cannot_claim_a_remote_client(site: Site, up: Harness) -> None:
    """Client attributes are trusted only from qmail-smtpd's uid: a local user setting
    TCPREMOTEIP/RELAYCLIENT stays local mail, and the header shows no forged address."""
    marker = unique()
    sender, delivered = inject(site, up, marker, TCPREMOTEIP="203.0.113.7", RELAYCLIENT="")
    assert "203.0.113.7" not in diagnostics(delivered)
    ev = scanned(up, sender)
    assert ev.client.ip is None and not ev.client.relay and ev.client.local


def test_default_socket_reaches_qmaild_under_the_stock_run_script(
        site: Site, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No socket_mode/socket_group in the config: tcpserver's qmaild (group nofiles only) gets in."""
    h = start_daemon(site, tmp_path_factory.mktemp("defaults"), "")
    try:
        port = site.start_smtpd(h.socket)
        marker = unique()
        sender = f"defaults-{marker}@example.org"
        code, text = smtp_send(port, message("hello", marker, sender), sender)
        assert code == 250, (code, text)
        site.wait_delivered(marker.encode())
    finally:
        h.stop()
