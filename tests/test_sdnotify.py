"""systemd readiness and watchdog (Type=notify, WatchdogSec=) over a real unix datagram socket:
the test plays systemd, binds NOTIFY_SOCKET and reads what `qscan daemon` and `qscan run` send,
with the sender's pid from SCM_CREDENTIALS (only the main process may speak: NotifyAccess=main)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qscan.ops.sdnotify import Notifier, child_env
from qscan.testing.standin import write_standin

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"


class FakeSystemd:
    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)

    def receive(self, until: float) -> Iterator[tuple[int, dict[str, str]]]:
        """(sender pid, fields) of each datagram until the monotonic time ``until``."""
        while time.monotonic() < until:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            pid = next(struct.unpack("iII", d)[0] for level, kind, d in anc
                       if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
            yield pid, dict(line.split("=", 1) for line in data.decode().splitlines())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd() -> Iterator[tuple[FakeSystemd, str]]:
    d = Path(tempfile.mkdtemp(prefix="qsn"))  # socket paths must stay short
    path = str(d / "notify")
    s = FakeSystemd(path)
    try:
        yield s, path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def test_outside_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled and not n.ready() and not n.ping() and n.interval is None


def test_ready_and_rate_limited_watchdog(systemd: tuple[FakeSystemd, str]) -> None:
    s, path = systemd
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.interval == 1.0
    assert n.ready("listening")
    assert n.ping(now=100.0) and not n.ping(now=100.5) and n.ping(now=101.0)
    got = [fields for _, fields in s.receive(time.monotonic() + 0.5)]
    assert got[0] == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "listening"}
    assert got[1:] == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]


def test_abstract_socket_and_a_watchdog_meant_for_another_pid() -> None:
    name = f"qscan-test-{os.getpid()}"
    s = FakeSystemd("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
        assert n.interval is None  # WATCHDOG_PID names another process: not ours to ping
        assert n.status("hello")
        assert [f for _, f in s.receive(time.monotonic() + 0.5)] == [{"STATUS": "hello"}]
    finally:
        s.close()
    assert "NOTIFY_SOCKET" not in child_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "PATH": "/bin"})


def site(tmp_path: Path) -> tuple[Path, Path]:
    sock_dir = Path(tempfile.mkdtemp(prefix="qs"))
    standin = write_standin(tmp_path / "bin" / "qmail-queue", tmp_path / "queued")
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nsocket = "{sock_dir}/q.sock"\n'
                      f'qmail_queue = "{standin}"\nworkers = 1\n[summary_log]\ntarget = "none"\n'
                      '[consumers]\nenabled = ["archive"]\n')
    return config, sock_dir / "q.sock"


@pytest.mark.integration
@pytest.mark.parametrize("command", ["daemon", "run"])
def test_service_says_ready_once_it_serves_and_pings_the_watchdog(
        tmp_path: Path, systemd: tuple[FakeSystemd, str], command: str) -> None:
    s, path = systemd
    config, sock = site(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "qscan", "-c", str(config), command, *(
        ["--no-upgrade"] if command == "run" else [])], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        received: list[tuple[int, dict[str, str]]] = []
        deadline = time.monotonic() + 30
        for pid, fields in s.receive(deadline):
            received.append((pid, fields))
            if fields.get("READY") == "1":
                assert sock.exists()  # not before it serves
                break
        assert received and received[-1][1].get("READY") == "1", received
        pings = [f for _, f in s.receive(time.monotonic() + 2.2) if f == {"WATCHDOG": "1"}]
        assert len(pings) >= 3  # every half second with WatchdogSec=1s
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        received += list(s.receive(time.monotonic() + 0.5))
        assert {"STOPPING": "1"} in [f for _, f in received]
        assert {pid for pid, _ in received} == {proc.pid}  # the main process only, never a child
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_units_are_notify_with_watchdog_and_documented_by_installed_man_pages() -> None:
    man = {p.stem for p in (ROOT / "man").glob("*.1")}
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text()
        docs = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("Documentation=")]
        assert docs, unit.name
        for ref in " ".join(docs).split():
            assert ref.startswith("man:") and ref[4:].removesuffix("(1)") in man, (unit.name, ref)
        if "ExecStart=/usr/local/bin/qscan run" in text or "ExecStart=/usr/local/bin/qscan daemon" in text:
            assert "Type=notify" in text and "NotifyAccess=main" in text and "WatchdogSec=" in text, unit.name
