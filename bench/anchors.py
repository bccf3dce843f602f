"""Other filters on the same corpus in the same run, so qscan's end-to-end rate reads as a ratio.

``rspamd``: rspamd's ``/checkv2`` with 2 normal workers (the tests' loopback configuration:
no Lua modules, no Redis, no DNS), one HTTP connection per message, each message posted with
its envelope as rspamd's headers. It scores and answers; it journals nothing and queues nothing.

``amavisd``: amavisd-new with banned-file and bad-header checks only (no antivirus, no
SpamAssassin), 4 servers, SMTP in on a loopback port and out to a loopback sink that
accepts and discards (one SMTP session per message, as an MTA hands it over). It is started
with its own configuration in a temp dir, never the system's service; ``make bench-anchors``
installs the Debian package when missing.

Each load generator sends every corpus message from ``concurrency`` threads, as the
end-to-end run does, and reports msgs/s, latency percentiles and the server's own CPU.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.corpus import BenchMessage
from ingest.envelope import parse_envelope

TICK = os.sysconf("SC_CLK_TCK")
ANCHORS = ("rspamd", "amavisd")
RSPAMD_WORKERS = 2
AMAVISD_SERVERS = 4

Send = Callable[[BenchMessage], tuple[bool, float]]


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile of ``values`` (nearest rank on the sorted list; 0.0 when empty)."""
    s = sorted(values)
    if not s:
        return 0.0
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children, each with the children it reaped."""
    pids = [pid]
    try:
        pids += [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def load(send: Send, corpus: Sequence[BenchMessage], concurrency: int,
         server_cpu: Callable[[], float]) -> dict[str, float]:
    """Every message through ``send`` from ``concurrency`` threads: rate, latencies, CPU."""
    cpu0 = server_cpu()
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, corpus))
    wall = time.perf_counter() - t0
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1 = server_cpu()
    lat = [ms for _, ms in results]
    n = len(corpus)
    return {
        "msgs_per_s": round(n / wall, 1),
        "p50_ms": round(pct(lat, 50), 2),
        "p95_ms": round(pct(lat, 95), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "server_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / n, 2),
        "driver_cpu_ms_per_msg": round(
            ((me1.ru_utime - me0.ru_utime) + (me1.ru_stime - me0.ru_stime)) * 1000 / n, 2),
        "failed": sum(1 for ok, _ in results if not ok),
    }


# -- ratios (pure) ------------------------------------------------------------------------------
def ratios(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """qscan's end-to-end msgs/s over each anchor's, per concurrency measured by both."""
    e2e = result.get("end_to_end")
    anchors = result.get("anchors")
    out: dict[str, dict[str, float]] = {}
    if not isinstance(e2e, Mapping) or not isinstance(anchors, Mapping):
        return out
    for name, runs in anchors.items():
        if not isinstance(runs, Mapping):
            continue
        for c, fig in runs.items():
            ours = e2e.get(c)
            theirs = fig.get("msgs_per_s") if isinstance(fig, Mapping) else None
            if isinstance(ours, Mapping) and ours.get("msgs_per_s") and theirs:
                out.setdefault(name, {})[c] = round(ours["msgs_per_s"] / theirs, 2)
    return out


def rows(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The report's lines for the anchors: their figures and qscan's ratio to each."""
    out: list[tuple[str, str, str]] = []
    anchors = result.get("anchors")
    if not isinstance(anchors, Mapping):
        return out
    vs = result.get("vs_anchors") or {}
    e2e = result.get("end_to_end") or {}
    for name, runs in anchors.items():
        for c, fig in runs.items():
            ratio = vs.get(name, {}).get(c)
            ours = e2e.get(c, {}).get("msgs_per_s")
            note = f"qscan end to end {ratio:.2f}x ({ours} msgs/s)" if ratio is not None else ""
            out.append((f"{name} c={c} msgs/s", f"{fig['msgs_per_s']}", note))
            latencies = f"{fig['p50_ms']} / {fig['p95_ms']} / {fig['p99_ms']}"
            out.append((f"{name} c={c} p50/p95/p99 ms", latencies,
                        f"server CPU {fig['server_cpu_ms_per_msg']} ms/msg"
                        + (f", {fig['failed']} failed" if fig.get("failed") else "")))
    return out


# -- rspamd -------------------------------------------------------------------------------------
def rspamd_headers(m: BenchMessage) -> tuple[dict[str, str], list[str]]:
    """What rspamc would send beside the message: the envelope and the SMTP client."""
    env = parse_envelope(m.envelope)
    headers = {"From": env.sender.decode("utf-8", "replace"), "Content-Length": str(len(m.data))}
    if m.env.get("TCPREMOTEIP"):
        headers["IP"] = m.env["TCPREMOTEIP"]
    if m.env.get("TCPREMOTEHOST"):
        headers["Hostname"] = m.env["TCPREMOTEHOST"]
    return headers, [r.decode("utf-8", "replace") for r in env.recipients]


def rspamd_send(port: int) -> Send:
    def send(m: BenchMessage) -> tuple[bool, float]:
        headers, rcpts = rspamd_headers(m)
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.putrequest("POST", "/checkv2", skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            for r in rcpts:
                conn.putheader("Rcpt", r)
            conn.endheaders(m.data)
            resp = conn.getresponse()
            body = resp.read()
            ok = resp.status == 200 and "action" in json.loads(body)
        finally:
            conn.close()
        return ok, (time.perf_counter() - t0) * 1000

    return send


def run_rspamd(corpus: Sequence[BenchMessage], concurrencies: Sequence[int],
               log: Callable[[str], None]) -> dict[str, dict[str, float]] | None:
    from qscan.testing.servers import binary, rspamd_server

    if binary("rspamd") is None:
        log("  rspamd is not installed here: no rspamd anchor")
        return None
    out: dict[str, dict[str, float]] = {}
    with rspamd_server(workers=RSPAMD_WORKERS) as server:
        send = rspamd_send(server.port)
        for c in concurrencies:
            log(f"rspamd /checkv2, {RSPAMD_WORKERS} workers, {c} concurrent sender(s) ...")
            load(send, corpus[:100], c, lambda: 0.0)  # warm-up
            out[str(c)] = load(send, corpus, c, lambda: tree_cpu_seconds(server.proc.pid))
    return out


# -- amavisd-new --------------------------------------------------------------------------------
# Debian's shipped banned-file list (conf.d/20-debian_defaults), so its banned check does the
# work a default installation's does.
AMAVISD_CONF = """\
use strict;
$MYHOME = '{home}';
$TEMPBASE = '{home}/tmp';
$db_home = '{home}/db';
$pid_file = '{home}/amavisd.pid';
$lock_file = '{home}/amavisd.lock';
$daemon_user = '{user}';
$daemon_group = '{group}';
$mydomain = 'example.org';
$myhostname = 'anchor.example.org';
@local_domains_maps = (['.example.org']);
@mynetworks = qw(127.0.0.0/8);
$max_servers = {servers};
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = {port};
@inet_acl = qw(127.0.0.1);
$unix_socketname = undef;
$forward_method = 'smtp:[127.0.0.1]:{sink_port}';
$notify_method = 'smtp:[127.0.0.1]:{sink_port}';
$DO_SYSLOG = 0;
$LOGFILE = '{home}/amavisd.log';
$log_level = 0;
$enable_db = 0;
$enable_global_cache = 0;
$nanny_details_level = 0;
$enable_dkim_verification = 0;
$enable_dkim_signing = 0;
@bypass_virus_checks_maps = (1);
@bypass_spam_checks_maps = (1);
@av_scanners = ();
@av_scanners_backup = ();
@bypass_banned_checks_maps = (0);
@bypass_header_checks_maps = (0);
$QUARANTINEDIR = undef;
$virus_quarantine_to = undef;
$banned_quarantine_to = undef;
$bad_header_quarantine_to = undef;
$spam_quarantine_to = undef;
$final_banned_destiny = D_DISCARD;
$final_bad_header_destiny = D_PASS;
$warnbannedsender = 0;
$warnbadhsender = 0;
$banned_admin = undef;
$bad_header_admin = undef;
$virus_admin = undef;
$spam_admin = undef;
$path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin';
$file = 'file';
$banned_filename_re = new_RE(
  qr'\\.[^./]*\\.(exe|vbs|pif|scr|bat|cmd|com|cpl|dll)\\.?$'i,
  qr'\\{{[0-9a-f]{{8}}(-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}}\\}}?$'i,
  qr'^application/x-msdownload$'i,
  qr'^application/x-msdos-program$'i,
  qr'^application/hta$'i,
  qr'.\\.(exe|vbs|pif|scr|bat|cmd|com|cpl)$'i,
  qr'^\\.(exe-ms)$',
);
1;
"""


def amavisd_config(home: Path, port: int, sink_port: int, user: str, group: str,
                   servers: int = AMAVISD_SERVERS) -> str:
    """amavisd-new's configuration for the anchor: banned + bad-header checks, nothing else.
    ``home`` is its working directory (the user's to write); the file itself must live in a
    directory that user cannot write, or amavisd refuses to start."""
    for name, value in (("home", str(home)), ("user", user), ("group", group)):
        if "'" in value or "\\" in value:
            raise ValueError(f"{name} cannot be quoted in amavisd's Perl configuration: {value!r}")
    return AMAVISD_CONF.format(home=home, port=port, sink_port=sink_port, user=user, group=group,
                               servers=servers)


class Sink:
    """A loopback SMTP server that accepts every message and keeps only a count."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.count = 0
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                with sink._lock:
                    sink.count += 1
                return "250 OK"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Sink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def amavisd_binary() -> str | None:
    return shutil.which("amavisd") or shutil.which("amavisd-new") or next(
        (p for p in ("/usr/sbin/amavisd", "/usr/sbin/amavisd-new") if os.access(p, os.X_OK)), None)


@contextmanager
def amavisd_server(sink_port: int, servers: int = AMAVISD_SERVERS
                   ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """amavisd-new in the foreground with the anchor's configuration in a temp dir."""
    exe = amavisd_binary()
    if exe is None:
        raise FileNotFoundError("amavisd-new")
    root = Path(tempfile.mkdtemp(prefix="qsamavis"))
    root.chmod(0o755)
    # as root, amavisd drops to its own user, who must own its home but not its configuration
    user = "amavis" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    pw = pwd.getpwnam(user)
    group = "amavis" if os.getuid() == 0 else user
    home = root / "home"
    for d in (home, home / "tmp", home / "db"):
        d.mkdir()
        if os.getuid() == 0:
            os.chown(d, pw.pw_uid, pw.pw_gid)
    port = free_port()
    conf = root / "amavisd.conf"
    conf.write_text(amavisd_config(home, port, sink_port, user, group, servers))
    conf.chmod(0o644)
    err = open(root / "stderr.log", "ab")  # noqa: SIM115 - the child keeps its own copy
    proc = subprocess.Popen([exe, "-c", str(conf), "foreground"], start_new_session=True, cwd=root,
                            stdout=err, stderr=err)
    err.close()
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"amavisd exited ({proc.returncode}): "
                                   + (root / "stderr.log").read_text(errors="replace")[-3000:])
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                    if s.noop()[0] == 250:
                        break
            except (OSError, smtplib.SMTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("amavisd did not start within 90 s")
            time.sleep(0.2)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def smtp_data(data: bytes) -> bytes:
    """A message as it travels in SMTP's DATA: CRLF line ends (smtplib sends bytes as they are)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def smtp_send(port: int) -> Send:
    def send(m: BenchMessage) -> tuple[bool, float]:
        env = parse_envelope(m.envelope)
        sender = env.sender.decode("utf-8", "replace")
        rcpts = [r.decode("utf-8", "replace") for r in env.recipients]
        data = smtp_data(m.data)
        t0 = time.perf_counter()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
                refused = s.sendmail(sender, rcpts, data)
            ok = not refused
        except smtplib.SMTPException:
            ok = False
        return ok, (time.perf_counter() - t0) * 1000

    return send


def run_amavisd(corpus: Sequence[BenchMessage], concurrencies: Sequence[int],
                log: Callable[[str], None]) -> dict[str, dict[str, float]] | None:
    if amavisd_binary() is None:
        log("  amavisd-new is not installed here (make bench-anchors installs it): no amavisd anchor")
        return None
    out: dict[str, dict[str, float]] = {}
    with Sink() as sink, amavisd_server(sink.port) as (proc, port):
        send = smtp_send(port)
        for c in concurrencies:
            log(f"amavisd-new, {AMAVISD_SERVERS} servers, {c} concurrent SMTP sender(s) ...")
            load(send, corpus[:50], c, lambda: 0.0)  # warm-up
            out[str(c)] = load(send, corpus, c, lambda: tree_cpu_seconds(proc.pid))
        out_count = sink.count
    log(f"  amavisd passed {out_count} messages to the sink")
    return out
