"""qscan-queue over real file descriptors against a running daemon and a stand-in qmail-queue."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.envelope import EnvelopeError, build_envelope, parse_envelope
from ingest.event import MessageScanned, QueueFailed, from_json
from ingest.journal import Journal
from qscan.testing.daemon import CLIENT, Harness, running_daemon
from qscan.testing.injector import inject

pytestmark = pytest.mark.integration

MSG = b"From: alice@example.com\nTo: bob@example.org\nSubject: hello\nMessage-ID: <1@x>\n\nHi Bob.\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_daemon(tmp_path_factory.mktemp("proto")) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(daemon: Harness) -> None:
    daemon.set_exit(0)


def events(h: Harness) -> list[MessageScanned | QueueFailed]:
    with Journal(h.journal) as j:
        return [from_json(e.body, e.raw) for e in j.read(0, 100000)]


def last_scanned(h: Harness) -> MessageScanned:
    ev = [e for e in events(h) if isinstance(e, MessageScanned)]
    return ev[-1]


def test_message_and_envelope_arrive_byte_exact(daemon: Harness) -> None:
    before = len(daemon.recorded())
    env = build_envelope(b"alice@example.com", [b"bob@example.org", b"carol@example.org"])
    res = daemon.send(MSG, envelope=env, TCPREMOTEIP="192.0.2.10", TCPREMOTEHOST="mail.example.net")
    assert res.code == 0, res
    msg, got_env = daemon.recorded()[before]
    assert got_env == env
    assert msg.endswith(MSG)
    added = msg[: -len(MSG)]
    assert all(len(line) <= 78 for line in added.split(b"\n"))
    added = added.replace(b"\n\t", b" ")  # unfold
    assert added.startswith(b"X-Qmail-Scanner-Diagnostics: from mail.example.net (192.0.2.10) by mx.test.example")
    assert b"Clear:RC:0(192.0.2.10):" in added
    assert b"\r" not in added and added.endswith(b"\n")
    ev = last_scanned(daemon)
    assert ev.raw_message == msg
    assert ev.envelope.raw == env
    assert ev.envelope.recipients == ["bob@example.org", "carol@example.org"]
    assert ev.client.ip == "192.0.2.10" and not ev.client.relay
    assert ev.headers.subject == "hello"
    assert ev.action == "deliver" and ev.category == "clean"


def test_empty_sender_and_relay_client(daemon: Harness) -> None:
    res = daemon.send(MSG, sender=b"", TCPREMOTEIP="198.51.100.7", RELAYCLIENT="", SMTPAUTHUSER="alice")
    assert res.code == 0
    ev = last_scanned(daemon)
    assert ev.envelope.sender == ""
    assert ev.client.relay and ev.client.auth_user == "alice"
    assert b"Clear:RC:1(198.51.100.7):" in daemon.recorded()[-1][0].replace(b"\n\t", b" ")


def test_local_injection_has_no_client_ip(daemon: Harness) -> None:
    assert daemon.send(MSG).code == 0
    ev = last_scanned(daemon)
    assert ev.client.local and ev.client.ip is None
    assert b"from localhost (local)" in daemon.recorded()[-1][0].replace(b"\n\t", b" ")


def test_crlf_message_gets_crlf_header(daemon: Harness) -> None:
    crlf = MSG.replace(b"\n", b"\r\n")
    assert daemon.send(crlf).code == 0
    msg = daemon.recorded()[-1][0]
    assert msg.endswith(crlf)
    assert msg[: -len(crlf)].endswith(b"\r\n")
    assert b"\n" not in msg[: -len(crlf)].replace(b"\r\n", b"")


def test_five_megabyte_message_byte_exact(daemon: Harness) -> None:
    body = bytes(range(32, 127)) * (5 * 1024 * 1024 // 95 + 1)
    big = b"Subject: big\n\n" + b"\n".join(body[i : i + 76] for i in range(0, len(body), 76)) + b"\n"
    assert daemon.send(big).code == 0
    assert daemon.recorded()[-1][0].endswith(big)


@pytest.mark.parametrize(
    ("code", "reply", "fd6", "expect_code", "expect_fd6"),
    [
        (31, None, True, 31, ""),
        (71, None, True, 71, ""),
        (11, None, False, 11, ""),
        (53, None, True, 53, ""),
        (82, "Dno such mailbox (#5.1.1)", True, 82, "Dno such mailbox (#5.1.1)"),
        (82, "Zmailbox busy (#4.2.1)", True, 82, "Zmailbox busy (#4.2.1)"),
        (82, "Dno such mailbox (#5.1.1)", False, 31, ""),
        (82, "Zmailbox busy (#4.2.1)", False, 71, ""),
        (82, None, True, 71, ""),  # 82 without text: temporary, never success
    ],
)
def test_qmail_queue_exit_codes_pass_through(
    daemon: Harness, code: int, reply: str | None, fd6: bool, expect_code: int, expect_fd6: str
) -> None:
    daemon.set_exit(code, reply)
    res = daemon.send(MSG, fd6=fd6)
    assert (res.code, res.fd6) == (expect_code, expect_fd6)
    # the scanned event is followed by a compensating event naming the failure
    *_, scanned, failed = events(daemon)
    assert isinstance(scanned, MessageScanned) and isinstance(failed, QueueFailed)
    assert failed.ref_event_id == scanned.event_id and failed.exit_code == code


@pytest.mark.parametrize("envelope", [b"Fa@b\0Tc@d\0", b"", b"Fa@b", b"Fa@b\0Tc@d"])
def test_truncated_envelope_exits_91(daemon: Harness, envelope: bytes) -> None:
    # EOF before the final NUL: the writer aborted; qmail-queue's own answer
    n = len(events(daemon))
    res = daemon.send(MSG, envelope=envelope)
    assert res.code == 91
    assert len(events(daemon)) == n  # nothing recorded, nothing queued


@pytest.mark.parametrize("envelope", [b"Fa@b\0c@d\0\0", b"Fa@b\0\0", b"Fa@b\0Tc@d\0\0extra", b"Xa@b\0Tc@d\0\0"])
def test_malformed_complete_envelope_is_refused_permanently(daemon: Harness, envelope: bytes) -> None:
    # the same envelope fails every retry: a permanent answer, not qmail-queue's temporary 91
    n = len(events(daemon))
    res = daemon.send(MSG, envelope=envelope)
    assert (res.code, res.fd6) == (82, "Dqscan: envelope format error (#5.5.4)")
    assert daemon.send(MSG, envelope=envelope, fd6=False).code == 31
    assert len(events(daemon)) == n  # nothing recorded, nothing queued


def test_oversized_envelope_of_valid_addresses_is_permanent(daemon: Harness) -> None:
    rcpts = [b"recipient-%06d@example.org" % i for i in range(40000)]  # 1.1 MiB, each address valid
    res = daemon.send(MSG, recipients=rcpts)
    assert (res.code, res.fd6) == (82, "Dqscan: envelope too large (#5.5.3)")


def test_oversized_envelope_frame_gets_a_permanent_answer_from_the_daemon(daemon: Harness) -> None:
    # a client that does not check the size itself still hears a permanent answer, as soon as
    # the frame header announces it
    from ingest import frames

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(daemon.socket))
        s.sendall(frames.encode(frames.HELLO, frames.PROTOCOL) + frames.encode(frames.MESSAGE, MSG)
                  + struct.pack(">cI", frames.ENVELOPE, frames.MAX_CHUNK + 1))
        s.settimeout(10)
        dec = frames.FrameDecoder()
        got: list[tuple[bytes, bytes]] = []
        while not got:
            chunk = s.recv(4096)
            assert chunk, "closed without an answer"
            got = dec.feed(chunk)
    [(kind, payload)] = got
    assert kind == frames.RESULT
    assert frames.decode_result(payload) == (82, "Dqscan: envelope too large (#5.5.3)")


def test_too_many_recipients_is_permanent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_daemon(tmp_path, daemon_extra="max_recipients = 3") as h:
        res = h.send(MSG, recipients=[b"a@x.org", b"b@x.org", b"c@x.org", b"d@x.org"])
        assert (res.code, res.fd6) == (82, "Dqscan: too many recipients (#5.5.3)")
        assert h.send(MSG, recipients=[b"a@x.org", b"b@x.org", b"c@x.org"]).code == 0


def test_address_too_long_exits_11(daemon: Harness) -> None:
    assert daemon.send(MSG, sender=b"a" * 2000).code == 11


def test_read_error_exits_54(daemon: Harness) -> None:
    # fd 0 is a TCP socket whose peer reset the connection: read() fails with ECONNRESET
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reader.sendall(b"x")  # unread data on the peer side makes close() send RST
        time.sleep(0.05)
        peer.close()
        time.sleep(0.05)
        try:
            res = inject(CLIENT, b"", build_envelope(b"a@b", [b"c@d"]), daemon.client_env(),
                         stdin_fd=reader.fileno())
        finally:
            reader.close()
    assert res.code == 54


def test_daemon_unreachable_is_temporary(tmp_path: Path) -> None:
    env = {"QSCAN_SOCKET": str(tmp_path / "nobody.sock")}
    res = inject(CLIENT, MSG, build_envelope(b"a@b", [b"c@d"]), env, fd6=True)
    assert res.code == 82 and res.fd6.startswith("Z")
    res = inject(CLIENT, MSG, build_envelope(b"a@b", [b"c@d"]), env, fd6=False)
    assert res.code == 71


def test_oversized_message_rejected_permanently(tmp_path: Path) -> None:
    with running_daemon(tmp_path, workers=1) as h:
        h.config.write_text(h.config.read_text())
        h.stop()
        h.config.write_text(h.config.read_text().replace("timeout = 20", "timeout = 20\nmax_message_size = 2048"))
        h.start()
        res = h.send(b"Subject: big\n\n" + b"x" * 5000 + b"\n")
        assert res.code == 82 and res.fd6 == "Dmessage too large (#5.3.4)"
        assert h.recorded() == []
        ev = last_scanned(h)
        assert ev.action == "reject" and ev.reason == "message-too-large" and ev.size > 5000
        assert ev.raw_message == b"" and ev.raw_sha256 is None  # the bytes were not kept
        assert h.send(b"Subject: small\n\nok\n").code == 0


def test_summary_line_written(daemon: Harness) -> None:
    daemon.send(MSG, TCPREMOTEIP="192.0.2.99")
    lines = (daemon.root / "summary.log").read_text().splitlines()
    assert any("client=192.0.2.99" in line and "action=deliver" in line for line in lines)


address = st.binary(min_size=0, max_size=40).filter(lambda b: b"\0" not in b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.builds(lambda s, r: build_envelope(s, r), address, st.lists(address.filter(bool), min_size=1, max_size=5)),
        st.binary(max_size=80),
    )
)
def test_generated_envelopes_always_get_a_defined_exit(daemon: Harness, envelope: bytes) -> None:
    try:
        parse_envelope(envelope)
        valid = True
    except EnvelopeError:
        valid = False
    res = daemon.send(MSG, envelope=envelope)
    if valid:
        assert res.code == 0
        assert daemon.recorded()[-1][1] == envelope
    else:  # truncated: 91 (what qmail-queue says); too long: 11; any other error: permanent
        assert res.code in (91, 11) or (res.code, res.fd6) == (82, "Dqscan: envelope format error (#5.5.4)")


@pytest.mark.parametrize("report", [None, b"S\0\0\0\x02xx", b"R\0\0\0\x010"])
def test_a_client_that_leaves_without_a_report_is_taken_back(daemon: Harness, report: bytes | None) -> None:
    """After the hand-off the master awaits qscan-queue's report: a client that closes without
    one (it died: qmail-smtpd told the sender to retry) or sends garbage is recorded as
    message.queue_failed with exit -2, so no consumer counts the message delivered."""
    from ingest import frames
    from qscan.testing.rawclient import request

    n = len(events(daemon))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(daemon.socket))
        s.sendall(request(MSG, build_envelope(b"a@b.example", [b"c@d.example"])))
        data, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
        for fd in fds:
            os.close(fd)
        assert data[:1] == frames.HANDOFF and len(fds) == 1
        if report is not None:
            s.sendall(report)
    deadline = time.monotonic() + 10
    while len(events(daemon)) < n + 2:
        assert time.monotonic() < deadline, events(daemon)[n:]
        time.sleep(0.05)
    scanned, failed = events(daemon)[n:]
    assert isinstance(scanned, MessageScanned) and scanned.action == "deliver"
    assert isinstance(failed, QueueFailed) and failed.ref_event_id == scanned.event_id
    assert failed.exit_code == -2 and failed.reply is not None and "without reporting" in failed.reply
