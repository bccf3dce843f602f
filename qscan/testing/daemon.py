"""Start a real daemon (``python -m qscan daemon``) with a stand-in qmail-queue, for tests.

qscan-queue runs that stand-in (``QSCAN_QMAIL_QUEUE`` in ``Harness.client_env``); the daemon's
``daemon.qmail_queue`` names it too (local domains, quarantine releases)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ingest.envelope import build_envelope
from qscan.testing.clients import native_client
from qscan.testing.injector import InjectResult, inject
from qscan.testing.standin import recorded, write_standin

CLIENT = native_client()  # the installed (native) qscan-queue


@dataclass
class Harness:
    root: Path
    config: Path
    socket: Path
    record: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # The qmail-queue qscan-queue runs (QSCAN_QMAIL_QUEUE): the stand-in of running_daemon.
    qmail_queue: Path | None = None

    @property
    def journal(self) -> Path:
        return self.root / "journal.db"

    def set_exit(self, code: int, reply: str | None = None, sleep: float | None = None) -> None:
        (self.record / "exit_code").write_text(str(code))
        (self.record / ".running").unlink(missing_ok=True)
        for name, value in (("reply", reply), ("sleep", sleep)):
            path = self.record / name
            if value is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(str(value))

    def recorded(self) -> list[tuple[bytes, bytes]]:
        return recorded(self.record)

    def wait_running(self, timeout: float = 30.0) -> None:
        """Until a delayed stand-in qmail-queue (``set_exit(..., sleep=S)``) holds a message."""
        deadline = time.monotonic() + timeout
        while not (self.record / ".running").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the stand-in qmail-queue never started")
            time.sleep(0.01)

    def client_env(self, **extra: str) -> dict[str, str]:
        queue = {"QSCAN_QMAIL_QUEUE": str(self.qmail_queue)} if self.qmail_queue is not None else {}
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QSCAN_SOCKET": str(self.socket),
                "QSCAN_TIMEOUT": "30", **queue, **extra}

    def send(self, message: bytes, sender: bytes = b"alice@example.com",
             recipients: list[bytes] | None = None, envelope: bytes | None = None,
             fd6: bool = True, client: str = CLIENT, **env: str) -> InjectResult:
        """One message through ``client`` (the native qscan-queue unless told otherwise)."""
        if envelope is None:
            envelope = build_envelope(sender, recipients or [b"bob@example.org"])
        return inject(client, message, envelope, self.client_env(**env), fd6=fd6, timeout=60)

    def start(self) -> None:
        with open(self.root / "daemon.log", "ab") as err:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qscan", "-c", str(self.config), "daemon"],
                start_new_session=True, stdout=subprocess.DEVNULL, stderr=err,
            )
        deadline = time.monotonic() + 20
        while not self._connectable():
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited: " + (self.root / "daemon.log").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not start")
            time.sleep(0.02)

    def _connectable(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
                # The master is gone, but its workers may still be dying with the listening socket
                # open: a restart would find that socket connectable and take it for a live daemon.
                deadline = time.monotonic() + timeout
                while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included, until init reaps them)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def running_daemon(tmp_path: Path, extra: str = "", workers: int = 2,
                   daemon_extra: str = "", hostname: str = "mx.test.example") -> Iterator[Harness]:
    """``extra``: top-level TOML before the tables; ``daemon_extra``: more ``[daemon]`` keys;
    ``hostname``: the host whose journal and hash chain this daemon writes."""
    sock_dir = Path(tempfile.mkdtemp(prefix="qs"))  # unix socket paths must stay short
    record = tmp_path / "queued"
    standin = write_standin(tmp_path / "bin" / "qmail-queue", record)
    config = tmp_path / "qscan.toml"
    if "smtp_users" not in daemon_extra:  # the tests play qmail-smtpd: trust their uid's client attributes
        daemon_extra += f'\nsmtp_users = ["{os.getuid()}"]'
    if not any(line.startswith("timeout") for line in daemon_extra.splitlines()):
        daemon_extra += "\ntimeout = 20"
    config.write_text(
        f'data_dir = "{tmp_path}"\n{extra}\n[daemon]\nsocket = "{sock_dir}/q.sock"\n'
        f'qmail_queue = "{standin}"\nworkers = {workers}\nhostname = "{hostname}"\n'
        f'{daemon_extra}\n[summary_log]\ntarget = "file"\n'
    )
    h = Harness(tmp_path, config, sock_dir / "q.sock", record, qmail_queue=standin)
    h.start()
    try:
        yield h
    finally:
        h.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
