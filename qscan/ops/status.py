"""`qscan status`: is mail flowing, is anything stuck — one look, or one JSON for monitoring.

Everything here is read-only and cheap: the daemon's status file (rewritten by
its master every second from the worker scoreboard, ingest/scoreboard.py), the
journal's head and reader positions, a probe of each network scanner, and
``statvfs`` of the data directories. Nothing asks the daemon anything over its
socket beyond a connect, so a status check never takes a worker from mail.

Exit codes (documented in docs/operations.md): 0 all well, otherwise the most
urgent problem's code, in this order of urgency:
4 daemon down, 5 journal missing or unreadable, 3 journal over its disk budget,
6 disk space low, 7 a scanner unreachable, 9 a consumer's sink unreachable (the SQL
store, the archive directory), 10 the Kafka broker unreachable (or the topic gone),
11 the SMTP relay down while notices wait, 8 a reader (consumer, relay) lagging.
The sink, broker and SMTP checks report at once, not only once the lag builds up.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.journal import Journal
from ingest.scoreboard import read_status, status_path
from qscan.config import Config

DAEMON_DOWN, JOURNAL_BAD, OVER_BUDGET, DISK_LOW, SCANNER_DOWN, LAGGING = 4, 5, 3, 6, 7, 8
SINK_DOWN, BROKER_DOWN, SMTP_DOWN = 9, 10, 11
URGENCY = (DAEMON_DOWN, JOURNAL_BAD, OVER_BUDGET, DISK_LOW, SCANNER_DOWN, SINK_DOWN, BROKER_DOWN,
           SMTP_DOWN, LAGGING)
EXIT_CODES = {
    0: "all well",
    DAEMON_DOWN: "the daemon is not running (socket refuses connections or its status file is stale)",
    JOURNAL_BAD: "the journal is missing or unreadable",
    OVER_BUDGET: "the journal is over journal.disk_budget_mb (a reader is stuck)",
    DISK_LOW: "free space under --min-free for the journal, archive or quarantine",
    SCANNER_DOWN: "an enabled network scanner (one with a probe in SCANNERS) does not answer",
    LAGGING: "a consumer or the relay is more than --max-lag seconds behind",
    SINK_DOWN: "an enabled consumer cannot write where it projects to (SQL store, archive directory)",
    BROKER_DOWN: "the Kafka broker does not answer, or the topic does not exist",
    SMTP_DOWN: "the notify consumer's SMTP relay does not answer while notices wait to go out",
}
STALE_AFTER = 10.0  # seconds: the master rewrites its status file every second


@dataclass
class Problem:
    code: int
    what: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "what": self.what}


@dataclass
class Status:
    info: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = {p.code for p in self.problems}
        return next((c for c in URGENCY if c in codes), 0)

    def as_dict(self) -> dict[str, Any]:
        return {**self.info, "problems": [p.as_dict() for p in self.problems],
                "exit_code": self.exit_code}


# -- the journal (shared with `qscan journal status` and the metrics endpoint) ----------
def journal_bytes(path: Path) -> int:
    """The database with its -wal and -shm files."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def lag_seconds(j: Journal, position: int) -> float:
    """Age of the oldest event a reader has not handled yet (0 when caught up)."""
    pending = j.read(position, 1, with_raw=False)
    return round(max(0.0, time.time() - pending[0].appended), 1) if pending else 0.0


def journal_info(path: Path, budget_bytes: float) -> dict[str, Any]:
    """Head, oldest kept event, size and every reader's position and lag.

    Cheap enough for every metrics scrape: O(readers) index lookups, never a scan of the
    events. Sequence numbers are assigned without gaps (AUTOINCREMENT, one per append) and
    pruning deletes from the oldest end, so the events kept are head - oldest + 1 and a
    reader's lag in events is head - position; its lag in seconds is the age of the first
    event after its position (a primary-key seek).

    Raises FileNotFoundError when there is no journal (opening one would create it).
    """
    if not path.exists():
        raise FileNotFoundError(f"no journal at {path}")
    with Journal(path, readonly=True) as j:
        head = j.head()
        oldest = j.oldest()  # MIN(seq): the first entry of the primary key
        info: dict[str, Any] = {
            "path": str(path),
            "head": head,
            "oldest": oldest,
            "events": head - oldest + 1 if oldest else 0,
            "bytes": journal_bytes(path),
            "positions": {
                n: {"position": p, "lag": head - p, "lag_seconds": lag_seconds(j, p)}
                for n, p in sorted(j.positions().items())
            },
        }
    info["disk_budget_bytes"] = int(budget_bytes)
    info["over_budget"] = info["bytes"] > budget_bytes
    return info


# -- the daemon ----------------------------------------------------------------------
def socket_accepts(path: Path, timeout: float = 2.0) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's (qscand)
        return True
    return True


def daemon_info(socket_path: Path) -> dict[str, Any]:
    doc = read_status(status_path(socket_path))
    accepts = socket_accepts(socket_path)
    out: dict[str, Any] = {"socket": str(socket_path), "accepts": accepts,
                           "status_file": str(status_path(socket_path))}
    if doc is None:
        out.update(up=accepts, pid=None, workers=None)
        return out
    age = time.time() - float(doc.get("updated", 0))
    pid = int(doc.get("pid") or 0)
    fresh = age < STALE_AFTER and pid > 0 and _pid_alive(pid)
    out.update(
        up=accepts and fresh, pid=pid, status_age_seconds=round(age, 1),
        uptime_seconds=round(time.time() - float(doc.get("started", time.time())), 1),
        configured_workers=doc.get("configured_workers"),
        workers=len(doc.get("workers", [])), busy=doc.get("busy"), idle=doc.get("idle"),
        in_flight=doc.get("in_flight"),
        receiving=doc.get("receiving", 0), waiting=doc.get("waiting", 0),
        handled_by_live_workers=sum(int(w.get("handled", 0)) for w in doc.get("workers", [])),
    )
    return out


# -- scanners ----------------------------------------------------------------------
def probe_rspamd(host: str, port: int, timeout: float) -> tuple[bool, str, str | None]:
    """(reachable, version, error) from rspamd's ``/ping``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        server = response.getheader("Server") or ""
    except (OSError, http.client.HTTPException) as exc:
        return False, "", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    version = server.partition("/")[2] or server
    if response.status != 200:
        return False, version, f"HTTP {response.status}"
    return True, version, None


def _probe_ping(settings: Any, timeout: float) -> dict[str, Any]:
    ok, version, error = probe_rspamd(settings.host, settings.port, min(timeout, settings.timeout))
    return {"reachable": ok, "version": version or "unknown", "error": error,
            "endpoint": f"{settings.host}:{settings.port}"}


def _probe_version(scanner: Any, timeout: float) -> dict[str, Any]:
    scanner.opt = dataclasses.replace(  # a status check waits seconds, not a scan's minutes
        scanner.opt, connect_timeout=min(timeout, scanner.opt.connect_timeout),
        timeout=min(timeout, scanner.opt.timeout))
    try:
        error = scanner.refresh_version(force=True)
    except Exception as exc:  # a probe must never crash the status command
        error = f"{type(exc).__name__}: {exc}"
    return {"reachable": error is None, "version": scanner.version, "error": error,
            "endpoint": str(scanner.endpoint)}


def scanner_info(cfg: Config, timeout: float) -> dict[str, dict[str, Any]]:
    """Reachability and version of each enabled network scanner (its registry entry's ``probe``:
    ``version`` asks the scanner itself, ``ping`` its HTTP /ping); in-process ones need none."""
    from concurrent.futures import ThreadPoolExecutor

    from qscan.wiring.pipeline import SCANNERS

    def probe(name: str) -> dict[str, Any] | None:
        entry = SCANNERS[name]
        if entry.probe == "ping":
            return _probe_ping(getattr(cfg, name), timeout)
        if entry.probe == "version":
            return _probe_version(entry.build(cfg), timeout)
        return None

    # All at once: a status (or the console's dashboard) with two scanners down waits one
    # timeout, not one per scanner.
    names = list(cfg.scanners.enabled)
    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="status-probe") as pool:
        answers = list(pool.map(probe, names))
    return {name: got for name, got in zip(names, answers, strict=True) if got is not None}


# -- sinks, broker, SMTP relay ---------------------------------------------------------
SQL_SINKS = ("summaries", "notify")  # consumers whose sink is the SQL store


def _in_thread(work: Any, timeout: float, what: str) -> tuple[Any, str | None]:
    """``(work(), None)``, or ``(None, why)`` on an exception or no answer within ``timeout``
    (the thread is abandoned: a status check never hangs on a dead server)."""
    import threading

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    thread = threading.Thread(target=run, name=f"status-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, f"no answer within {timeout:g}s"
    if "error" in result:
        return None, str(result["error"])
    return result.get("value"), None


def sql_store_info(url: str, timeout: float, *, notices: bool) -> dict[str, Any]:
    """Can the SQL store be read (the consumer-positions table), and with ``notices`` how many
    notifications wait to go out (pending or being sent)."""
    # imported before the clock starts: on a busy host importing the models alone can take
    # longer than the probe's timeout, and an answer that slow is the host's, not the store's
    from sqlalchemy import func, make_url, select

    from compliance.db import make_engine
    from compliance.models import ConsumerPosition, Notification
    from qscan.redact import mask_url

    def work() -> int | None:
        u = make_url(url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
                and not Path(u.database).exists():  # a status check creates nothing
            raise FileNotFoundError(f"no SQL store at {u.database} (qscan db upgrade creates it)")
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(select(ConsumerPosition.name).limit(1)).all()
                if not notices:
                    return None
                return int(conn.scalar(select(func.count()).select_from(Notification)
                                       .where(Notification.state.in_(("pending", "sending")))) or 0)
        finally:
            engine.dispose()

    waiting, error = _in_thread(work, timeout, "sql")
    return {"url": mask_url(url), "reachable": error is None, "error": error,
            "notices_waiting": waiting}


def smtp_info(host: str, port: int, timeout: float) -> dict[str, Any]:
    """Does the SMTP relay greet (220)?"""
    import smtplib

    def work() -> None:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            code, text = smtp.noop()
            if code != 250:
                raise smtplib.SMTPResponseException(code, text)

    _, error = _in_thread(work, timeout * 2 + 1, "smtp")
    return {"endpoint": f"{host}:{port}", "reachable": error is None, "error": error}


def archive_dir_info(path: Path) -> dict[str, Any]:
    p = _existing(path)
    ok = p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return {"path": str(path), "writable": ok,
            "error": None if ok else f"{p} is not a writable directory"}


def sinks_and_relays(cfg: Config, st: Status, timeout: float) -> None:
    """The things consumers and the relay need besides the journal, each checked now."""
    enabled = set(cfg.consumers.enabled)
    sql_users = sorted(enabled & set(SQL_SINKS))
    sinks: dict[str, Any] = {}
    if sql_users:
        sql = sql_store_info(cfg.sql_url, timeout, notices="notify" in enabled)
        sinks["sql"] = dict(sql, consumers=sql_users)
        if not sql["reachable"]:
            st.problems.append(Problem(SINK_DOWN, (
                f"{', '.join(sql_users)}: the SQL store {sql['url']} is unreachable: {sql['error']}")))
    if "archive" in enabled:
        arch = archive_dir_info(Path(cfg.archive_maildir))
        sinks["archive"] = arch
        if not arch["writable"]:
            st.problems.append(Problem(SINK_DOWN, f"archive: {arch['error']}"))
    st.info["sinks"] = sinks
    st.info["smtp"] = None
    n = cfg.notify
    if "notify" in enabled and n.transport == "smtp":
        waiting = sinks.get("sql", {}).get("notices_waiting")
        smtp = dict(smtp_info(n.smtp_host, n.smtp_port, min(timeout, n.smtp_timeout)),
                    notices_waiting=waiting)
        st.info["smtp"] = smtp
        if not smtp["reachable"] and waiting:
            st.problems.append(Problem(SMTP_DOWN, (
                f"notify: SMTP relay {smtp['endpoint']} is down ({smtp['error']}) with "
                f"{waiting} notices waiting")))
    k = cfg.log.kafka
    st.info["broker"] = None
    if k is None:
        return
    kc = st.info.get("kafka_consumers") or {}
    broker = kc.get("broker")
    if broker is None:  # the relay alone: ask the broker here
        from qscan.ops.kafka_status import end_offsets

        offsets, error = end_offsets(k, timeout, f"qscan-status-{cfg.hostname}")
        broker = {"bootstrap_servers": list(k.bootstrap_servers), "topic": k.topic,
                  "reachable": offsets is not None, "error": error}
    st.info["broker"] = broker
    if not broker["reachable"]:
        st.problems.append(Problem(BROKER_DOWN, (
            f"Kafka broker {', '.join(broker['bootstrap_servers'])} (topic {broker['topic']}): "
            f"{broker['error']}")))


# -- disks ---------------------------------------------------------------------------
def _existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def disk_info(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        usage = shutil.disk_usage(_existing(path))
        out[name] = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total,
                     "free_percent": round(100.0 * usage.free / usage.total, 1) if usage.total else 0.0}
    return out


# -- everything ------------------------------------------------------------------------
def collect(cfg: Config, *, max_lag: float = 300.0, min_free_percent: float = 5.0,
            probe_timeout: float = 3.0, scanners: bool = True) -> Status:
    from qscan.wiring.pipeline import log_readers_required

    st = Status()
    st.info["host"] = cfg.hostname
    st.info["time"] = round(time.time(), 3)
    daemon = daemon_info(cfg.daemon.socket)
    st.info["daemon"] = daemon
    if not daemon["up"]:
        why = "socket refuses connections" if not daemon["accepts"] else "status file stale or missing"
        st.problems.append(Problem(DAEMON_DOWN, f"daemon not running on {cfg.daemon.socket}: {why}"))

    try:
        journal: dict[str, Any] | None = journal_info(cfg.journal_path, cfg.journal.disk_budget_mb * 1e6)
    except Exception as exc:
        journal = None
        st.problems.append(Problem(JOURNAL_BAD, f"journal {cfg.journal_path}: {exc}"))
    st.info["journal"] = journal
    readers: dict[str, Any] = {}
    if journal is not None:
        if journal["over_budget"]:
            st.problems.append(Problem(OVER_BUDGET, (
                f"journal is {journal['bytes'] / 1e6:.0f} MB, over its budget of "
                f"{journal['disk_budget_bytes'] / 1e6:.0f} MB")))
        positions = journal["positions"]
        with Journal(cfg.journal_path, readonly=True) as j:
            for name in log_readers_required(cfg):
                if name in positions:
                    readers[name] = dict(positions[name], started=True)
                else:  # never ran: everything kept is waiting for it
                    pos = 0
                    readers[name] = {"position": pos, "lag": journal["head"], "started": False,
                                     "lag_seconds": lag_seconds(j, pos)}
        waiting = [r["position"] for r in readers.values()]
        floor = min(waiting) if waiting else journal["head"]
        journal["oldest_unconsumed"] = None
        with Journal(cfg.journal_path, readonly=True) as j:
            nxt = j.read(floor, 1, with_raw=False)
        if nxt:
            journal["oldest_unconsumed"] = {"seq": nxt[0].seq,
                                            "age_seconds": round(time.time() - nxt[0].appended, 1)}
        for name, r in readers.items():
            if r["lag_seconds"] > max_lag:
                st.problems.append(Problem(LAGGING, (
                    f"{name} is {r['lag']} events / {r['lag_seconds']:.0f}s behind (max {max_lag:.0f}s)")))
    st.info["readers"] = readers
    st.info["relay"] = readers.get("relay") if cfg.log.kafka is not None else None
    st.info["kafka_consumers"] = None
    if cfg.consumers.source == "kafka" and cfg.log.kafka is not None:
        from qscan.ops.kafka_status import kafka_consumers_info

        st.info["kafka_consumers"] = kafka_consumers_info(cfg, probe_timeout)
    sinks_and_relays(cfg, st, probe_timeout)

    st.info["scanners"] = scanner_info(cfg, probe_timeout) if scanners else {}
    for name, s in st.info["scanners"].items():
        if not s["reachable"]:
            st.problems.append(Problem(SCANNER_DOWN, f"{name} at {s['endpoint']}: {s['error']}"))

    disks = disk_info({"journal": cfg.journal_path.parent, "archive": cfg.archive_maildir,
                       "quarantine": cfg.quarantine_dir})
    st.info["disk"] = disks
    for name, d in disks.items():
        if d["free_percent"] < min_free_percent:
            st.problems.append(Problem(DISK_LOW, (
                f"{name} ({d['path']}): {d['free_percent']}% free, under {min_free_percent}%")))
    return st


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def render(st: Status) -> list[str]:
    """The human table: one line per thing, problems last."""
    i = st.info
    rows: list[tuple[str, str, str]] = []
    d = i["daemon"]
    if d["up"]:
        rows.append(("daemon", "up", (f"pid {d['pid']}, {d['workers']}/{d['configured_workers']} workers: "
                                      f"{d['busy']} busy, {d['idle']} idle, {d['receiving']} receiving, "
                                      f"{d['waiting']} waiting; up {_age(d['uptime_seconds'])}")))
    else:
        rows.append(("daemon", "DOWN", f"socket {d['socket']}"))
    j = i["journal"]
    if j is None:
        rows.append(("journal", "BAD", "missing or unreadable"))
    else:
        oldest = j.get("oldest_unconsumed")
        rows.append(("journal", "over budget" if j["over_budget"] else "ok",
                     (f"{j['events']} events, {_size(j['bytes'])} of {_size(j['disk_budget_bytes'])}, "
                      f"head {j['head']}; oldest unconsumed: "
                      + (f"#{oldest['seq']} ({_age(oldest['age_seconds'])} old)" if oldest else "none"))))
    for name, r in i["readers"].items():
        lagging = any(p.code == LAGGING and p.what.startswith(name + " ") for p in st.problems)
        state = "never ran" if not r["started"] else ("lagging" if lagging else "ok")
        rows.append((name, state,
                     f"position {r['position']}, lag {r['lag']} events, {_age(r['lag_seconds'])}"))
    if i.get("kafka_consumers"):
        from qscan.ops.kafka_status import render_lines

        rows.extend(render_lines(i["kafka_consumers"]))
    elif i.get("broker") and not i["broker"]["reachable"]:
        b = i["broker"]
        rows.append(("kafka", "UNREACHABLE", f"{', '.join(b['bootstrap_servers'])}: {b['error']}"))
    for name, sink in (i.get("sinks") or {}).items():
        if name == "sql":
            state = "ok" if sink["reachable"] else "UNREACHABLE"
            rows.append((f"sql ({', '.join(sink['consumers'])})", state,
                         sink["url"] + (f": {sink['error']}" if sink["error"] else "")))
        else:
            rows.append((f"{name} dir", "ok" if sink["writable"] else "NOT WRITABLE",
                         sink["path"] + (f": {sink['error']}" if sink["error"] else "")))
    if i.get("smtp"):
        m = i["smtp"]
        waiting = m["notices_waiting"]
        rows.append(("smtp relay", "ok" if m["reachable"] else "DOWN",
                     m["endpoint"] + (f": {m['error']}" if m["error"] else "")
                     + (f"; {waiting} notices waiting" if waiting is not None else "")))
    for name, s in i["scanners"].items():
        rows.append((name, "ok" if s["reachable"] else "UNREACHABLE",
                     f"{s['endpoint']} version {s['version']}" + (f": {s['error']}" if s["error"] else "")))
    for name, disk in i["disk"].items():
        rows.append((f"disk {name}", "ok" if not any(p.code == DISK_LOW and p.what.startswith(name + " ")
                                                     for p in st.problems) else "LOW",
                     f"{_size(disk['free_bytes'])} free ({disk['free_percent']}%) at {disk['path']}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    if st.problems:
        lines.append("")
        lines.extend(f"problem (exit {p.code}): {p.what}" for p in st.problems)
    return lines
