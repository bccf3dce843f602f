"""Both qscan-queue clients through one table: the native one (ingest/native/qscan_queue.c, built
with the install flags and again under AddressSanitizer + UBSan) and the Python reference
(ingest/queue_client.py, ``qscan-queue-py``).

Every case runs over real descriptors (pipes on fd 0, 1 and 6, a real unix socket) against a
scripted daemon (qscan/testing/fake_daemon.py) or none, with the stand-in qmail-queue when the
daemon hands the message over. For each case every client must give the expected exit code and
fd 6 text, and all of them the same stderr lines and the same report to the daemon. A seeded
fuzz test then feeds garbage, truncated and oversized answers to the sanitized build: it must
exit with a documented code, never crash, and never trip a sanitizer.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest import frames
from ingest.envelope import build_envelope
from qscan.testing.clients import native_client, python_client, sanitized_client
from qscan.testing.fake_daemon import FakeDaemon, Script, fake_daemon, memfd
from qscan.testing.injector import InjectResult, inject
from qscan.testing.standin import recorded, write_standin
from tests.conftest import require

pytestmark = pytest.mark.integration

MSG = b"From: alice@example.com\nTo: bob@example.org\nSubject: hi\n\nHello.\n"
ENV = build_envelope(b"alice@example.com", [b"bob@example.org"])
FINAL = b"X-Qmail-Scanner-Diagnostics: test\n" + MSG
TEMP = "Zqscan: scanner temporarily unavailable, try again later (#4.3.0)"
SANITIZER_ENV = {"ASAN_OPTIONS": "exitcode=199:detect_leaks=0:abort_on_error=0",
                 "UBSAN_OPTIONS": "halt_on_error=1:exitcode=198:print_stacktrace=1"}
# exit codes qscan-queue itself gives (docs/protocol.md); any other one is qmail-queue's
CLIENT_CODES = frozenset({0, 11, 31, 52, 54, 71, 81, 82, 91})


@pytest.fixture(scope="module")
def clients() -> dict[str, str]:
    return {"native": native_client(), "asan": sanitized_client(), "python": python_client()}


@dataclass
class Site:
    daemon: FakeDaemon
    standin: Path
    record: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "QSCAN_SOCKET": str(self.daemon.path), "QSCAN_TIMEOUT": "10",
                "QSCAN_QMAIL_QUEUE": str(self.standin), **SANITIZER_ENV, **extra}

    def set_exit(self, code: int, reply: str | None = None, sleep: float | None = None) -> None:
        (self.record / "exit_code").write_text(str(code))
        for name, value in (("reply", reply), ("sleep", sleep)):
            if value is None:
                (self.record / name).unlink(missing_ok=True)
            else:
                (self.record / name).write_text(str(value))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with fake_daemon() as d:
        record = tmp_path / "queued"
        yield Site(d, write_standin(tmp_path / "bin" / "qmail-queue", record), record)


def frame(kind: bytes, payload: bytes) -> bytes:
    return frames.encode(kind, payload)


def handoff(data: bytes = FINAL, *, size: int | None = None, ms: int = 10000) -> Script:
    return Script(answer=frame(frames.HANDOFF, b"%d %d" % (len(data) if size is None else size, ms)),
                  make_fds=lambda: [memfd(data)], read_report=True)


def pipe_fd() -> list[int]:
    r, w = os.pipe()
    os.write(w, FINAL)
    os.close(w)
    return [r]


@dataclass
class Case:
    name: str
    scripts: list[Script] = field(default_factory=list)
    code: int = 0
    fd6: str = ""
    stderr: str | None = ""  # a substring every client writes; None: not checked
    report: tuple[int, str | None] | None = None  # the client's S frame, when it sends one
    queued: int = 0  # messages the stand-in recorded
    envelope: bytes = ENV
    message: bytes = MSG
    with_fd6: bool = True
    exit_code: int = 0  # the stand-in's
    reply: str | None = None
    sleep: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    daemon: bool = True
    setup: Callable[[Site], None] | None = None


def R(code: int, text: str | None = None) -> Script:
    return Script(answer=frames.encode_result(code, text))


CASES = [
    # -- the daemon's verdicts ------------------------------------------------------------
    Case("deliver", [handoff()], 0, report=(0, None), queued=1),
    Case("quarantine or drop: accepted", [R(0)], 0),
    Case("reject", [R(82, "Dbanned attachment (#5.7.1)")], 82, "Dbanned attachment (#5.7.1)"),
    Case("reject without fd 6", [R(82, "Dbanned attachment (#5.7.1)")], 31, with_fd6=False),
    Case("tempfail", [R(82, "Zspam check failed (#4.3.0)")], 82, "Zspam check failed (#4.3.0)"),
    Case("tempfail without fd 6", [R(82, "Zspam check failed (#4.3.0)")], 71, with_fd6=False),
    Case("82 without a text is temporary", [R(82)], 71),
    Case("address too long from the daemon", [R(11)], 11),
    Case("a code no daemon answers", [R(30)], 82, TEMP, stderr="bad result from the daemon"),
    Case("qmail-queue's timeout code from the daemon", [R(52)], 82, TEMP, stderr="bad result from the daemon"),
    # -- qmail-queue's answer, passed through and reported ---------------------------------
    *[Case(f"qmail-queue exits {c}", [handoff()], c, report=(c, None), exit_code=c)
      for c in (11, 31, 51, 53, 54, 55, 61, 71, 81, 91)],
    Case("qmail-queue 82 with a permanent text", [handoff()], 82, "Dno such mailbox (#5.1.1)",
         report=(82, "Dno such mailbox (#5.1.1)"), exit_code=82, reply="Dno such mailbox (#5.1.1)"),
    Case("qmail-queue 82 with a temporary text", [handoff()], 82, "Zmailbox busy (#4.2.1)",
         report=(82, "Zmailbox busy (#4.2.1)"), exit_code=82, reply="Zmailbox busy (#4.2.1)"),
    Case("qmail-queue 82 with a text, no fd 6", [handoff()], 31, report=(82, "Dno such mailbox (#5.1.1)"),
         exit_code=82, reply="Dno such mailbox (#5.1.1)", with_fd6=False),
    Case("qmail-queue 82 without a text", [handoff()], 71, report=(82, None), exit_code=82),
    Case("qmail-queue 82 with a text not D/Z", [handoff()], 71, report=(82, None), exit_code=82,
         reply="no prefix"),
    Case("qmail-queue killed after the daemon's timeout", [handoff(ms=300)], 52, report=(52, None),
         sleep=3, stderr="did not finish within 0.3 s: killed"),
    Case("qmail-queue missing", [handoff()], 82, "Zqscan: cannot run qmail-queue (No such file or directory) "
         "(#4.3.0)", report=(82, "Zqscan: cannot run qmail-queue (No such file or directory) (#4.3.0)"),
         env={"QSCAN_QMAIL_QUEUE": "/nonexistent/qmail-queue"},
         stderr="cannot run qmail-queue /nonexistent/qmail-queue: No such file or directory (errno 2)"),
    # -- no daemon, bad input from qmail ----------------------------------------------------
    Case("no daemon", [], 82, TEMP, daemon=False, stderr="No such file or directory (errno 2) (uid "),
    Case("no daemon, no fd 6", [], 71, daemon=False, with_fd6=False, stderr="cannot connect to "),
    Case("truncated envelope", [], 91, envelope=b"Fa@b\0Tc@d"),
    Case("empty envelope", [], 91, envelope=b""),
    Case("malformed envelope", [], 82, "Dqscan: envelope format error (#5.5.4)", envelope=b"Fa@b\0c@d\0\0",
         stderr="envelope refused permanently: recipient does not start with T"),
    Case("malformed envelope, no fd 6", [], 31, envelope=b"Fa@b\0\0", with_fd6=False,
         stderr="envelope refused permanently: no recipients"),
    Case("envelope without F", [], 82, "Dqscan: envelope format error (#5.5.4)", envelope=b"Xa@b\0Tc@d\0\0",
         stderr="envelope refused permanently: envelope does not start with F"),
    Case("bytes after the envelope", [], 82, "Dqscan: envelope format error (#5.5.4)",
         envelope=b"Fa@b\0Tc@d\0\0extra", stderr="envelope refused permanently: bytes after the final NUL"),
    Case("empty recipient", [], 82, "Dqscan: envelope format error (#5.5.4)", envelope=b"Fa@b\0T\0\0",
         stderr="envelope refused permanently: empty recipient"),
    Case("oversize sender", [], 11, envelope=build_envelope(b"a" * 1001, [b"c@d"])),
    Case("oversize recipient", [], 11, envelope=build_envelope(b"a@b", [b"c" * 1001])),
    Case("address of exactly 1000 bytes", [handoff()], 0, report=(0, None), queued=1,
         envelope=build_envelope(b"a" * 1000, [b"c" * 1000])),
    Case("oversize envelope", [], 82, "Dqscan: envelope too large (#5.5.3)",
         envelope=build_envelope(b"a@b", [b"r-%07d@example.org" % i for i in range(60000)]),
         stderr="bytes is over 1048576: refused permanently"),
    Case("empty message", [handoff()], 0, report=(0, None), queued=1, message=b""),
    # -- the daemon dying, and garbage from it ----------------------------------------------
    Case("daemon closes without an answer", [Script()], 82, TEMP,
         stderr="the daemon closed the connection without an answer"),
    Case("daemon dies mid-answer", [Script(answer=frames.encode_result(0)[:4])], 82, TEMP,
         stderr="the daemon closed the connection without an answer"),
    Case("daemon dies mid-hand-off", [Script(answer=frame(frames.HANDOFF, b"100 1000")[:7],
                                             make_fds=lambda: [memfd(FINAL)])], 82, TEMP,
         stderr="the daemon closed the connection without an answer"),
    Case("daemon answers before the request", [Script(answer=b"R\0\0\0\x010", read_request=False)], 0,
         stderr=None),
    Case("unknown frame type", [Script(answer=b"Z\0\0\0\0")], 82, TEMP,
         stderr="unexpected frame type 0x5a from the daemon"),
    Case("a request frame back", [Script(answer=frame(frames.MESSAGE, b"x"))], 82, TEMP,
         stderr="unexpected frame type 0x4d from the daemon"),
    Case("oversized answer frame", [Script(answer=struct.pack(">cI", b"R", 1 << 30))], 82, TEMP,
         stderr="answer frame of 1073741824 bytes from the daemon is too large"),
    Case("bad result code", [Script(answer=frame(b"R", b"abc"))], 82, TEMP, stderr="bad result from the daemon"),
    Case("result code out of range", [Script(answer=frame(b"R", b"256"))], 82, TEMP,
         stderr="bad result from the daemon"),
    Case("result code with a sign", [Script(answer=frame(b"R", b"+0"))], 82, TEMP,
         stderr="bad result from the daemon"),
    Case("empty result", [Script(answer=frame(b"R", b""))], 82, TEMP, stderr="bad result from the daemon"),
    Case("result with a descriptor", [Script(answer=frames.encode_result(0), make_fds=lambda: [memfd(FINAL)])],
         82, TEMP, stderr="descriptor from the daemon without a hand-off"),
    Case("hand-off without a descriptor", [Script(answer=frame(frames.HANDOFF, b"10 1000"))], 82, TEMP,
         stderr="hand-off with 0 descriptors from the daemon"),
    Case("hand-off with two descriptors", [Script(answer=frame(frames.HANDOFF, b"%d 1000" % len(FINAL)),
                                                  make_fds=lambda: [memfd(FINAL), memfd(FINAL)])], 82, TEMP,
         stderr="hand-off with 2 descriptors from the daemon"),
    Case("hand-off of the wrong size", [handoff(size=len(FINAL) + 1)], 82, TEMP,
         stderr=f"the hand-off's message is not a regular file of {len(FINAL) + 1} bytes"),
    Case("hand-off of a pipe", [Script(answer=frame(frames.HANDOFF, b"%d 1000" % len(FINAL)),
                                       make_fds=pipe_fd)], 82, TEMP,
         stderr="the hand-off's message is not a regular file of"),
    *[Case(f"bad hand-off {payload!r}", [Script(answer=frame(frames.HANDOFF, payload),
                                                make_fds=lambda: [memfd(FINAL)])], 82, TEMP,
           stderr="bad hand-off from the daemon")
      for payload in (b"", b"10", b"10 ", b" 10", b"10 0", b"-1 10", b"10 99999999999", b"1e3 10", b"10  10",
                      b"10 10 10", b"12345678901234567890 10")],
]


def run_case(site: Site, client: str, case: Case) -> tuple[InjectResult, tuple[int, str | None] | None]:
    site.set_exit(case.exit_code, case.reply, case.sleep)
    for script in case.scripts:
        site.daemon.expect(script)
    before = len(site.daemon.seen)
    env = site.env(**case.env)
    if not case.daemon:
        env["QSCAN_SOCKET"] = str(site.daemon.dir / "nobody.sock")
    res = inject(client, case.message, case.envelope, env, fd6=case.with_fd6, timeout=30, capture_stderr=True)
    seen = site.daemon.seen[before:]
    if seen:
        assert seen[0].done.wait(10)  # the client's report is read
    report = seen[0].report if seen else None
    if case.scripts and case.scripts[0].read_request:
        assert seen and seen[0].envelope == case.envelope and seen[0].message == case.message, seen
    return res, report


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_clients_answer_alike(site: Site, clients: dict[str, str], case: Case) -> None:
    if case.setup is not None:
        case.setup(site)
    got: dict[str, tuple[int, str, tuple[int, str | None] | None, str]] = {}
    for name, program in clients.items():
        queued_before = len(recorded(site.record))
        res, report = run_case(site, program, case)
        assert "Sanitizer" not in res.stderr and "runtime error" not in res.stderr, (name, res.stderr)
        assert (res.code, res.fd6) == (case.code, case.fd6), (name, res)
        assert report == case.report, (name, report, res.stderr)
        assert len(recorded(site.record)) - queued_before == case.queued, name
        if case.stderr is not None:
            assert case.stderr in res.stderr, (name, res.stderr)
        # stderr lines, with the client's own name in them the same
        got[name] = (res.code, res.fd6, report, res.stderr)
    assert len(set(got.values())) == 1, got
    if case.queued:
        msg, env = recorded(site.record)[-1]
        assert (msg, env) == (FINAL, case.envelope)  # the daemon's final message, the client's envelope


def test_attributes_are_sent_alike(site: Site, clients: dict[str, str]) -> None:
    """The passed environment, byte for byte (an empty RELAYCLIENT counts, an over-long value
    is left out), and QSCAN_TIMEOUT as a number the daemon reads back."""
    attrs = []
    for program in clients.values():
        site.daemon.expect(R(0))
        env = site.env(TCPREMOTEIP="192.0.2.1", RELAYCLIENT="", HELO="h\xe9lo", TCPREMOTEHOST="x" * 1025,
                       SMTPAUTHUSER="u" * 1024, NOT_PASSED="1", QSCAN_TIMEOUT="7.5")
        res = inject(program, MSG, ENV, env, capture_stderr=True)
        assert res.code == 0, res
        attrs.append(site.daemon.seen[-1].attrs)
    assert all(a == attrs[0] for a in attrs), attrs
    assert attrs[0] == {"TCPREMOTEIP": "192.0.2.1", "RELAYCLIENT": "", "HELO": "h\xe9lo",
                        "SMTPAUTHUSER": "u" * 1024, "QSCAN_TIMEOUT": "7.5"}


def test_big_message_in_frames_of_at_most_a_mebibyte(site: Site, clients: dict[str, str]) -> None:
    big = b"Subject: big\n\n" + os.urandom(3 * (1 << 20) + 17).hex().encode()
    for program in clients.values():
        site.daemon.expect(handoff(big))
        res = inject(program, big, ENV, site.env(), capture_stderr=True)
        assert res.code == 0, res
        assert site.daemon.seen[-1].message == big
        assert recorded(site.record)[-1][0] == big


def test_read_error_exits_54(clients: dict[str, str]) -> None:
    for program in clients.values():
        with socket.create_server(("127.0.0.1", 0)) as server:
            reader = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            reader.sendall(b"x")
            peer.close()  # RST: read() on fd 0 fails with ECONNRESET
            try:
                res = inject(program, b"", ENV, {"QSCAN_SOCKET": "/nonexistent/q.sock", **SANITIZER_ENV},
                             stdin_fd=reader.fileno(), capture_stderr=True)
            finally:
                reader.close()
        assert res.code == 54, (program, res)


# -- fuzz: what the client reads from the daemon ---------------------------------------------

def _garbage(rng: random.Random) -> Script:
    """One random answer: valid frames cut short or bent, random bytes, random descriptors."""
    kind = rng.choice([b"R", b"X", b"S", b"M", bytes([rng.randrange(256)])])
    if kind == b"R":
        body = rng.choice([b"%d" % rng.randrange(-5, 400), os.urandom(rng.randrange(0, 8)),
                           b"82\n" + rng.choice([b"D", b"Z", b""]) + os.urandom(rng.randrange(0, 3000))])
    elif kind == b"X":
        size = rng.choice([len(FINAL), len(FINAL) - 1, 0, rng.randrange(1 << 40)])
        body = rng.choice([b"%d %d" % (size, rng.choice([1, 1000, 10**10, 10**11, 0])), os.urandom(rng.randrange(20))])
    else:
        body = os.urandom(rng.randrange(0, 100))
    length = len(body)
    if rng.random() < 0.2:
        length = rng.choice([rng.randrange(1 << 32), frames.MAX_CONTROL, frames.MAX_CONTROL + 1, length + 1])
    answer = kind + struct.pack(">I", length) + body
    if rng.random() < 0.3:
        answer = answer[: rng.randrange(len(answer) + 1)]
    if rng.random() < 0.2:
        answer += os.urandom(rng.randrange(1, 200))
    fd_kind = rng.choice(["none", "none", "memfd", "memfd", "two", "pipe", "big", "empty"])
    makers: dict[str, Callable[[], list[int]] | None] = {
        "none": None, "memfd": lambda: [memfd(FINAL)], "two": lambda: [memfd(FINAL), memfd(b"")],
        "pipe": pipe_fd, "big": lambda: [memfd(os.urandom(200000))], "empty": lambda: [memfd(b"")],
    }
    return Script(answer=answer, make_fds=makers[fd_kind], read_report=False,
                  read_request=rng.random() < 0.9)


def test_fuzzed_daemon_answers_never_crash_the_client(site: Site, clients: dict[str, str]) -> None:
    rng = random.Random(2126)
    for i in range(160):
        script = _garbage(rng)
        with_fd6 = rng.random() < 0.8
        site.daemon.expect(script)
        # short timeouts: an answer cut short waits for EOF, which the fake daemon gives at once
        res = inject(clients["asan"], MSG, ENV, site.env(QSCAN_TIMEOUT="5"), fd6=with_fd6, timeout=30,
                     capture_stderr=True)
        assert "Sanitizer" not in res.stderr and "runtime error" not in res.stderr, (i, script, res.stderr)
        assert res.code in CLIENT_CODES, (i, script, res)
        if i % 8 == 0:  # the reference client agrees
            site.daemon.expect(script)
            ref = inject(clients["python"], MSG, ENV, site.env(QSCAN_TIMEOUT="5"), fd6=with_fd6, timeout=30,
                         capture_stderr=True)
            assert (ref.code, ref.fd6) == (res.code, res.fd6), (i, script, ref, res)


def test_the_native_client_is_built_hardened(clients: dict[str, str]) -> None:
    """PIE, full RELRO (BIND_NOW), stack protector and _FORTIFY_SOURCE, as make install builds it."""
    readelf = shutil.which("readelf")
    require("readelf (binutils, installed with gcc)", readelf is not None)
    assert readelf is not None
    binary = clients["native"]
    dynamic = subprocess.run([readelf, "-d", binary], capture_output=True, text=True, check=True).stdout
    segments = subprocess.run([readelf, "-lW", binary], capture_output=True, text=True, check=True).stdout
    symbols = subprocess.run([readelf, "-sW", "--dyn-syms", binary], capture_output=True, text=True,
                             check=True).stdout
    assert "DYN (Position-Independent Executable" in segments or "PIE" in dynamic
    assert "BIND_NOW" in dynamic and "GNU_RELRO" in segments
    assert "__stack_chk_fail" in symbols
    assert re.search(r"__\w+_chk\b", symbols), "no fortified calls"
    gnu_stack = next(line for line in segments.splitlines() if "GNU_STACK" in line)
    assert "RWE" not in gnu_stack
