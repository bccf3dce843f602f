"""Real clamd, spamd and rspamd for the tests: started on loopback or a temp-dir unix socket
with a config and database the tests write, and stopped afterwards.

Nothing touches the system's own daemons or their data: no freshclam, no sa-update, no
network. Each ``*_server`` context manager yields once the server answers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
NDB_MARKER = b"QSCAN-NDB-TEST-MARKER-7f3a"  # the custom body signature's content
HDB_NAME = "Qscan.Test.EICAR-HDB"
NDB_NAME = "Qscan.Test.Marker-NDB"


def binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    socket: str | None = None
    log: Path | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""


def _wait(server: Server, ready: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({server.proc.returncode}): {server.log_text()}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{what} did not start within {timeout}s: {server.log_text()}")
        time.sleep(0.05)


@contextmanager
def _running(server: Server, ready: Callable[[], bool], what: str, timeout: float) -> Iterator[Server]:
    try:
        _wait(server, ready, what, timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def _public_tempdir(prefix: str) -> Path:
    """Short (unix socket paths are limited) and readable by a daemon that drops to nobody."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def write_clamav_db(db: Path) -> None:
    """An .hdb line for the EICAR file (MD5:size:name) and an .ndb body signature (any file type)."""
    db.mkdir(parents=True, exist_ok=True)
    (db / "qscan-test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{HDB_NAME}\n")
    (db / "qscan-test.ndb").write_text(f"{NDB_NAME}:0:*:{NDB_MARKER.hex()}\n")


@contextmanager
def clamd_server(stream_max: str = "1M") -> Iterator[Server]:
    """clamd on a temp unix socket and a loopback TCP port, with the test signature DB."""
    exe = binary("clamd")
    if exe is None:
        raise FileNotFoundError("clamd")
    root = _public_tempdir("qsclam")
    write_clamav_db(root / "db")
    port = free_port()
    log = root / "clamd.log"
    (root / "clamd.conf").write_text(
        f"LocalSocket {root}/clamd.sock\nTCPSocket {port}\nTCPAddr 127.0.0.1\n"
        f"DatabaseDirectory {root}/db\nForeground yes\nLogFile {log}\nStreamMaxLength {stream_max}\n"
        f"PidFile {root}/clamd.pid\nTemporaryDirectory {root}\nSelfCheck 3600\n"
        + ("User root\n" if os.getuid() == 0 else "")
    )
    with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([exe, "-c", str(root / "clamd.conf")], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)
    server = Server(proc, root, port, f"{root}/clamd.sock", log)

    def ready() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(f"{root}/clamd.sock")
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")

    with _running(server, ready, "clamd", 60) as running:
        yield running


@contextmanager
def spamd_server(children: int = 2) -> Iterator[Server]:
    """spamd on a loopback port with SpamAssassin's shipped rules, local tests only, no Bayes."""
    exe = binary("spamd")
    if exe is None or not Path("/usr/share/spamassassin").is_dir():
        raise FileNotFoundError("spamd")
    root = _public_tempdir("qsspam")
    site = root / "site"
    site.mkdir(mode=0o755)
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        if pre.name != "sa-compile.pre":  # no dependence on sa-compile output
            shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text("use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n")
    for p in site.iterdir():
        p.chmod(0o644)
    port = free_port()
    log = root / "spamd.log"
    argv = [exe, "-L", "-x", f"--max-children={max(children, 4)}", f"--min-children={children}",
            f"--min-spare={children}", f"--max-spare={children}", f"--listen=127.0.0.1:{port}",
            "--configpath=/usr/share/spamassassin", f"--siteconfigpath={site}",
            f"--pidfile={root}/spamd.pid", f"--syslog={log}"]
    if os.getuid() == 0:
        argv.append("--username=nobody")
    with open(root / "stderr.log", "ab") as err:
        proc = subprocess.Popen(argv, start_new_session=True, cwd=root,
                                stdout=subprocess.DEVNULL, stderr=err)
    server = Server(proc, root, port, None, log)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in s.recv(64)

    with _running(server, ready, "spamd", 90) as running:
        yield running


RSPAMD_CONF = """\
options {{
    pidfile = "{root}/rspamd.pid";
    filters = "";
    dns {{ nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }}
    control_socket = "{root}/rspamd.sock mode=0600";
    cache_file = "{root}/symbols.cache";
    allow_raw_input = true;
    local_addrs = [];
}}
logging {{ type = "file"; filename = "{root}/rspamd.log"; level = "info"; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = {workers}; mime = true; }}
"""


@contextmanager
def rspamd_server(workers: int = 1) -> Iterator[Server]:
    """rspamd's normal worker (``workers`` processes of it) alone on a loopback port: no Lua
    modules, no Redis, no DNS."""
    exe = binary("rspamd")
    if exe is None:
        raise FileNotFoundError("rspamd")
    root = _public_tempdir("qsrsp")
    port = free_port()
    (root / "rspamd.conf").write_text(RSPAMD_CONF.format(root=root, port=port, workers=workers))
    argv = [exe, "-f", "-c", str(root / "rspamd.conf")]
    argv += ["--insecure"] if os.getuid() == 0 else []
    with open(root / "stderr.log", "ab") as err:
        proc = subprocess.Popen(argv, start_new_session=True, cwd=root,
                                stdout=subprocess.DEVNULL, stderr=err)
    server = Server(proc, root, port, None, root / "rspamd.log")

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            return b"pong" in s.recv(256)

    with _running(server, ready, "rspamd", 90) as running:
        yield running
