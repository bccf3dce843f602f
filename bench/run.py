"""The benchmark harness: `make bench` (or `python -m bench.run --help`).

Measures, on one deterministic corpus and in one run:
  floors       what the machine and Python allow (parse, fsync, interpreter start-up)
  daemon_core  the daemon fed straight over its socket (our scanning cost, no process spawns)
  end_to_end   a real qscan-queue process per message, as qmail runs it, at 1/4/8 senders
  consumers    events/s of the archive maildir writer and the SQL summaries
  anchors      rspamd /checkv2 (and with --anchors rspamd,amavisd, amavisd-new) on the same
               corpus at the same concurrencies: qscan's end-to-end rate as a ratio to each
and prints each qscan figure beside its floor. Results go to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from bench import anchors as anchor_runs
from bench.anchors import pct, tree_cpu_seconds
from bench.corpus import BenchMessage, generate
from qscan.config import ConsumersConfig
from qscan.testing import rawclient
from qscan.testing.clients import native_client
from qscan.testing.injector import inject

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLIENT = native_client()  # the installed qscan-queue (native)
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine ------------------------------------------------------------------
def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "model": model or platform.processor(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


# -- floors -------------------------------------------------------------------
def floor_parse(corpus: list[BenchMessage]) -> float:
    parser = BytesParser(policy=policy.default)
    t0 = time.perf_counter()
    for m in corpus:
        msg = parser.parsebytes(m.data)
        for part in msg.walk():
            if not part.is_multipart():
                part.get_payload(decode=True)
    return len(corpus) / (time.perf_counter() - t0)


def floor_fsync(corpus: list[BenchMessage], work: Path) -> float:
    path = work / "fsync-floor.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    t0 = time.perf_counter()
    try:
        for m in corpus:
            os.write(fd, m.data)
            os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return len(corpus) / (time.perf_counter() - t0)


# The consumers run with the shipped default batch, as a new installation does.
CONSUMER_BATCH: int = ConsumersConfig().batch


def floor_maildir(corpus: list[BenchMessage], work: Path, batch: int = CONSUMER_BATCH, threads: int = 16
                  ) -> float:
    """Durable maildir deliveries/s at the syscall level, the archive writer's way.

    The durability steps of archive/maildir.py and its batching, with no Python layer on
    top: per batch (the consumers' default size), open tmp/NAME (O_CREAT|O_EXCL) and
    write each file, fsync them all from 16 threads (the filesystem commits concurrent
    fsyncs together), rename each into new/, fsync new/ once.
    """
    root = Path(tempfile.mkdtemp(prefix="maildir-floor", dir=work))
    pool = ThreadPoolExecutor(max_workers=threads)

    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        (root / "tmp").mkdir()
        (root / "new").mkdir()
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
        jobs = [(f"{root}/tmp/{i}.bench", f"{root}/new/{i}.bench", m.data) for i, m in enumerate(corpus)]
        t0 = time.perf_counter()
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            fds = []
            for tmp, _, data in chunk:
                fd = os.open(tmp, flags, 0o600)
                fds.append(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            for f in [pool.submit(sync, fd) for fd in fds]:
                f.result()
            for tmp, new, _ in chunk:
                os.rename(tmp, new)
            dfd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return len(jobs) / (time.perf_counter() - t0)
    finally:
        pool.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def start_ms(argv: list[str], env: dict[str, str] | None = None, runs: int = 40) -> tuple[float, float]:
    """Median wall ms and median CPU ms (the child's user + sys) of running ``argv`` once."""
    times, cpu = [], []
    for _ in range(runs):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        times.append((time.perf_counter() - t0) * 1000)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) * 1000)
    return statistics.median(times), statistics.median(cpu)


# -- the daemon under test ----------------------------------------------------
class Daemon:
    def __init__(self, work: Path, standin: Path, workers: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qsb", dir=work))
        self.socket = Path(tempfile.mkdtemp(prefix="qsb")) / "q.sock"
        workers_line = f"workers = {workers}\n" if workers else ""
        self.config = self.dir / "qscan.toml"
        self.config.write_text(
            f'data_dir = "{self.dir}"\n[daemon]\nsocket = "{self.socket}"\n'
            f'qmail_queue = "{standin}"\n{workers_line}'
            # the bench plays qmail-smtpd: its client attributes are trusted, as qmaild's are
            f'smtp_users = ["{os.getuid()}"]\n[summary_log]\ntarget = "file"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qscan", "-c", str(self.config), "daemon"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "daemon.log", "wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("daemon did not start: " + (self.dir / "daemon.log").read_text())
        time.sleep(0.5)  # let every worker finish importing
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.socket.parent, ignore_errors=True)
        if not exc[0]:  # a failed run keeps its data dir (daemon.log) for a look
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        assert self.proc is not None
        pids = [self.proc.pid]
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(k) for k in kids]
        except OSError:
            pass
        return pids

    def cpu_seconds(self) -> float:
        """Master + workers, each with the children they reaped (recycled workers, qmail-queue)."""
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def pss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024


def send_direct(sock_path: Path, m: BenchMessage) -> tuple[int, float]:
    """One message straight over the daemon socket (no qscan-queue process, no qmail-queue)."""
    t0 = time.perf_counter()
    got = rawclient.send(sock_path, m.data, m.envelope, m.env)
    if got is None:
        raise RuntimeError("daemon closed without an answer")
    return got[0], (time.perf_counter() - t0) * 1000


def send_client(sock_path: Path, m: BenchMessage) -> tuple[int, float]:
    # qscan-queue runs the stand-in qmail-queue itself (main() names it in the environment)
    env = {"QSCAN_SOCKET": str(sock_path), "QSCAN_QMAIL_QUEUE": os.environ["QSCAN_QMAIL_QUEUE"], **m.env}
    r = inject(CLIENT, m.data, m.envelope, env, fd6=True)
    return r.code, r.elapsed * 1000


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent running anything (user, system, interrupts) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / TICK


def drive(
    d: Daemon,
    corpus: list[BenchMessage],
    concurrency: int,
    send: Callable[[Path, BenchMessage], tuple[int, float]],
    sample_pss: bool = False,
) -> dict[str, float]:
    pss: list[float] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.1):
            pss.append(d.pss_mb())

    watcher = threading.Thread(target=sampler, daemon=True)
    if sample_pss:
        watcher.start()
    cpu0 = d.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda m: send(d.socket, m), corpus))
    wall = time.perf_counter() - t0
    busy1 = machine_busy_seconds()
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = d.cpu_seconds()
    stop.set()
    if sample_pss:
        watcher.join()
        pss.append(d.pss_mb())  # a run shorter than one sampling interval still has a figure
    bad = [c for c, _ in results if c != 0]
    if bad:
        log(f"  warning: {len(bad)} messages answered non-zero (e.g. {bad[0]})")
    lat = [ms for _, ms in results]
    clients = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "msgs_per_s": round(len(corpus) / wall, 1),
        "p50_ms": round(pct(lat, 50), 2),
        "p95_ms": round(pct(lat, 95), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "cpu_ms_per_msg": round((cpu1 - cpu0 + clients) * 1000 / len(corpus), 2),
        "daemon_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / len(corpus), 2),
        # the harness's own senders (threads of this process) and everything the machine did:
        # the rest is the kernel's own threads (journal commits, writeback) and neighbours
        "driver_cpu_ms_per_msg": round(
            ((me1.ru_utime - me0.ru_utime) + (me1.ru_stime - me0.ru_stime)) * 1000 / len(corpus), 2
        ),
        "machine_cpu_ms_per_msg": round((busy1 - busy0) * 1000 / len(corpus), 2),
        "pss_mb": round(max(pss), 1) if pss else 0.0,
        "non_zero": len(bad),
    }


# -- consumers ------------------------------------------------------------------
def consumers(
    corpus: list[BenchMessage], work: Path, n_events: int, pg_url: str | None
) -> dict[str, float | None]:
    from archive.consumer import ArchiveSink
    from compliance.db import upgrade
    from compliance.summaries import SummarySink
    from ingest.envelope import parse_envelope
    from ingest.event import to_json
    from ingest.ids import uuid7
    from ingest.journal import Journal
    from ingest.log import ConsumerSettings, JournalReader, Sink, run_consumer
    from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
    from qscan.config import parse_config
    from qscan.wiring.pipeline import make_scanners

    root = Path(tempfile.mkdtemp(prefix="consumers", dir=work))
    cfg = parse_config(f'data_dir = "{root}"\n', root / "q.toml")
    journal = Journal(root / "journal.db")
    proc = Processor(
        ProcessorOptions(hostname="bench.example", settings=ProcessorSettings(qmail_queue=Path("/bin/true"))),
        journal, make_scanners(cfg)
    )
    base = []
    for m in corpus[:500]:
        base.append(proc._scan(make_request(m.data, m.envelope, m.env), parse_envelope(m.envelope)))
    log(f"  filling a journal with {n_events} events ...")

    def entries() -> Iterator[tuple[str, str, bytes, bytes | None]]:
        for i in range(n_events):
            ev, raw = base[i % len(base)]
            ev = ev.model_copy(update={"event_id": str(uuid7())})
            yield ev.event_id, ev.type, to_json(ev, with_raw=False), raw

    journal.append_many(entries())
    out: dict[str, float | None] = {}

    def timed(sink: Sink) -> float:
        # Each consumer starts on a quiet disk: not flushing what the fill or the
        # previous consumer left in the page cache while it is being timed.
        os.sync()
        t0 = time.perf_counter()
        n = run_consumer(JournalReader(journal), sink, ConsumerSettings(batch=CONSUMER_BATCH), once=True)
        rate = n / (time.perf_counter() - t0)
        sink.close()
        return round(rate, 1)

    out["archive_events_per_s"] = timed(ArchiveSink(root / "archive", root / "quarantine"))
    url = f"sqlite:///{root / 'qscan.db'}"
    upgrade(url)
    out["sqlite_events_per_s"] = timed(SummarySink(url))
    out["postgres_events_per_s"] = None
    if pg_url:
        upgrade(pg_url)
        out["postgres_events_per_s"] = timed(SummarySink(pg_url))
    journal.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


def postgres_url(work: Path) -> tuple[str | None, Callable[[], None]]:
    """A throw-away PostgreSQL on loopback (the tests' helper), made durable again for figures."""
    try:
        from qscan.testing import postgres as pg
    except ImportError:
        return None, lambda: None
    if not pg.available():
        log("  PostgreSQL is not installed here: postgres_events_per_s = n/a")
        return None, lambda: None
    base = Path(tempfile.mkdtemp(prefix="pg", dir=work))
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
    try:
        server = pg.start_server(base)
        # the test server trades durability for speed; a benchmark must not
        for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on"):
            server.admin(f"ALTER SYSTEM SET {setting}")
        server.admin("SELECT pg_reload_conf()")
        name = server.create_database()
    except Exception as exc:  # no server here: say so, measure the rest
        log(f"  PostgreSQL did not start: {exc}")
        shutil.rmtree(base, ignore_errors=True)
        return None, lambda: None

    def stop() -> None:
        pg.stop_server(server)
        shutil.rmtree(base, ignore_errors=True)

    return server.url(name), stop


# -- main -------------------------------------------------------------------------
TARGETS = {
    ("end_to_end", "4", "msgs_per_s"): (">=", 250),
    ("end_to_end", "4", "p50_ms"): ("<=", 10),
    ("end_to_end", "4", "p99_ms"): ("<=", 50),
    ("daemon_core", "msgs_per_s"): (">=", 650),
    ("consumers", "sqlite_events_per_s"): (">=", 2000),
    ("consumers", "archive_events_per_s"): (">=", 1000),
    # qscan's end-to-end msgs/s over the anchor's, same corpus, same concurrency, same run
    ("vs_anchors", "rspamd", "4"): (">=", 1.2),
    ("vs_anchors", "amavisd", "4"): (">=", 10),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=2000, help="corpus size (default 2000)")
    ap.add_argument("--events", type=int, default=20000, help="journal events for the consumer figures")
    ap.add_argument("--concurrency", default="1,4,8", help="end-to-end sender counts")
    ap.add_argument("--workers", type=int, default=None, help="daemon workers (default: the config default)")
    ap.add_argument("--skip", default="",
                    help="comma list of sections to skip: floors,core,e2e,anchors,consumers")
    ap.add_argument("--anchors", default="rspamd",
                    help="other filters run on the same corpus at the same concurrencies: "
                         "rspamd, amavisd (default: rspamd; make bench-anchors: both)")
    ap.add_argument("--amavisd-concurrency", default="4",
                    help="sender counts amavisd-new runs at (default 4, the target's: it is slow; "
                         "rspamd runs at every --concurrency)")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    ap.add_argument(
        "--docs", type=Path, default=None,
        help="markdown file whose figures section (between the figures markers) is rewritten",
    )
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    runners = {"rspamd": anchor_runs.run_rspamd, "amavisd": anchor_runs.run_amavisd}
    chosen = list(filter(None, args.anchors.split(",")))
    unknown = [name for name in chosen if name not in runners]
    if unknown:
        ap.error(f"--anchors: unknown {', '.join(unknown)} (known: {', '.join(runners)})")

    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    standin = work / "qmail-queue-standin"
    subprocess.run(["cc", "-O2", "-o", str(standin), str(ROOT / "bench" / "standin.c")], check=True)
    os.environ["QSCAN_QMAIL_QUEUE"] = str(standin)  # what qscan-queue runs

    log(f"generating corpus ({args.messages} messages + 25 MB + nested archive) ...")
    corpus = generate(args.messages)
    steady = corpus[:-2]  # the two outliers are measured separately
    result: dict[str, object] = {
        "machine": machine(),
        "corpus": {"messages": len(corpus), "bytes": sum(len(m.data) for m in corpus), "seed": 20261125},
    }

    if "floors" not in skip:
        log("floors ...")
        py = sys.executable
        python_ms, _ = start_ms([py, "-c", "pass"])
        python_s_ms, python_s_cpu = start_ms([py, "-S", "-c", "pass"])
        client_ms, client_cpu = start_ms([CLIENT], env={"QSCAN_SOCKET": "/nonexistent/q.sock"})
        cpus = os.cpu_count() or 1
        result["floors"] = {
            "parse_msgs_per_s": round(floor_parse(steady), 1),
            "fsync_msgs_per_s": round(floor_fsync(steady, work), 1),
            "maildir_files_per_s": round(floor_maildir(steady[:2000], work), 1),
            "python_start_ms": round(python_ms, 2),
            "python_S_start_ms": round(python_s_ms, 2),
            "python_S_start_cpu_ms": round(python_s_cpu, 2),
            "client_start_ms": round(client_ms, 2),
            "client_start_cpu_ms": round(client_cpu, 2),
            # every message starts one client: even a free daemon cannot go faster
            "e2e_ceiling_msgs_per_s": round(cpus * 1000 / client_cpu, 1) if client_cpu else None,
        }
    if "core" not in skip:
        log("daemon core (straight over the socket, 4 connections) ...")
        with Daemon(work, standin, args.workers) as d:
            drive(d, steady[:200], 4, send_direct)  # warm-up
            core: dict[str, Any] = dict(drive(d, steady, 4, send_direct, sample_pss=True))
            t0 = time.perf_counter()
            big = [send_direct(d.socket, m) for m in corpus[-2:]]
            core["outliers_ms"] = {"huge_25mb": round(big[0][1], 1), "nested_zip": round(big[1][1], 1)}
            core["outliers_wall_s"] = round(time.perf_counter() - t0, 2)
            core["pss_after_outliers_mb"] = round(d.pss_mb(), 1)
        result["daemon_core"] = core
    if "e2e" not in skip:
        e2e: dict[str, object] = {}
        for c in [int(x) for x in args.concurrency.split(",")]:
            log(f"end to end, {c} concurrent sender(s), a qscan-queue process per message ...")
            with Daemon(work, standin, args.workers) as d:
                drive(d, steady[:100], c, send_client)  # warm-up
                e2e[str(c)] = drive(d, steady, c, send_client, sample_pss=True)
        result["end_to_end"] = e2e
    if "anchors" not in skip:
        found: dict[str, object] = {}
        for name in chosen:
            counts = args.amavisd_concurrency if name == "amavisd" else args.concurrency
            got = runners[name](steady, [int(x) for x in counts.split(",")], log)
            if got is not None:
                found[name] = got
        if found:
            result["anchors"] = found
            result["vs_anchors"] = anchor_runs.ratios(result)
    if "consumers" not in skip:
        log("consumers ...")
        pg_url, pg_stop = postgres_url(work)
        try:
            result["consumers"] = consumers(steady, work, args.events, pg_url)
        finally:
            pg_stop()

    report(result)
    if args.docs and args.docs.exists():
        update_docs(args.docs, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    log(f"wrote {args.out}")
    return 0


def _get(result: dict[str, object], path: tuple[str, ...]) -> float | None:
    node: object = result
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node if isinstance(node, (int, float)) else None


BEGIN = "<!-- figures:begin (written by bench/run.py) -->"
END = "<!-- figures:end -->"


def update_docs(path: Path, r: dict[str, object]) -> None:
    """Rewrite the figures section of docs/performance.md from this run."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        log(f"{path}: no figures markers; not updated")
        return
    m = r["machine"]
    assert isinstance(m, dict)
    lines = [
        BEGIN,
        "",
        f"Measured {m['date']} on {m['cpus']} × {m['model']}, Python {m['python']}, "
        f"Linux {m['kernel']}; corpus seed 20261125.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    targets = {".".join(k): f"{op} {t}" for k, (op, t) in TARGETS.items()}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, (int, float)) or node is None:
            lines.append(f"| `{prefix}` | {'n/a' if node is None else node} | {targets.get(prefix, '')} |")

    for section in ("end_to_end", "vs_anchors", "anchors", "daemon_core", "floors", "consumers"):
        walk(section, r.get(section))
    lines += ["", END]
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + "\n".join(lines) + tail)
    log(f"updated {path}")


def report(r: dict[str, object]) -> None:
    f = r.get("floors") or {}
    assert isinstance(f, dict)
    rows: list[tuple[str, str, str]] = []

    def ratio(value: float | None, floor: float | None, inverse: bool = False, of: str = "floor") -> str:
        if not value or not floor:
            return ""
        return f"{(floor / value if inverse else value / floor):.2f}x {of}"

    core = r.get("daemon_core")
    if isinstance(core, dict):
        rows.append(
            (
                "daemon core msgs/s",
                f"{core['msgs_per_s']}",
                ratio(core["msgs_per_s"], f.get("parse_msgs_per_s") and 2 * f["parse_msgs_per_s"])
                + " (2 cores' parse)",
            )
        )
        rows.append(("daemon core p50 / p99 ms", f"{core['p50_ms']} / {core['p99_ms']}", ""))
        rows.append(
            (
                "daemon core CPU ms/msg: daemon / machine",
                f"{core['daemon_cpu_ms_per_msg']} / {core.get('machine_cpu_ms_per_msg')}",
                f"senders {core.get('driver_cpu_ms_per_msg')}",
            )
        )
        rows.append(
            ("daemon PSS MB (peak)", f"{core['pss_mb']}", f"after outliers {core['pss_after_outliers_mb']}")
        )
        rows.append(
            (
                "25 MB msg / nested zip ms",
                f"{core['outliers_ms']['huge_25mb']} / {core['outliers_ms']['nested_zip']}",
                "",
            )
        )
    e2e = r.get("end_to_end")
    if isinstance(e2e, dict):
        for c, v in e2e.items():
            rows.append(
                (
                    f"end-to-end c={c} msgs/s",
                    f"{v['msgs_per_s']}",
                    ratio(v["msgs_per_s"], f.get("e2e_ceiling_msgs_per_s"), of="ceiling")
                    + " (client start-up CPU)",
                )
            )
            rows.append(
                (f"end-to-end c={c} p50/p95/p99 ms", f"{v['p50_ms']} / {v['p95_ms']} / {v['p99_ms']}", "")
            )
            rows.append(
                (
                    f"end-to-end c={c} CPU ms/msg",
                    f"{v['cpu_ms_per_msg']}",
                    f"daemon {v['daemon_cpu_ms_per_msg']}, machine {v.get('machine_cpu_ms_per_msg')}",
                )
            )
            rows.append((f"end-to-end c={c} daemon PSS MB (peak)", f"{v['pss_mb']}", ""))
    rows += anchor_runs.rows(r)
    if f:
        rows.append(("floor: parse+walk+decode msgs/s", f"{f['parse_msgs_per_s']}", "1 process"))
        rows.append(("floor: write+fsync msgs/s", f"{f['fsync_msgs_per_s']}", ""))
        batches = f"batches of {CONSUMER_BATCH}, 16 fsyncs"
        rows.append(("floor: maildir files/s", f"{f['maildir_files_per_s']}", batches))
        rows.append(("python -c pass / -S ms", f"{f['python_start_ms']} / {f['python_S_start_ms']}", ""))
        rows.append(
            (
                "qscan-queue start-up ms",
                f"{f['client_start_ms']}",
                ratio(f["client_start_ms"], f["python_S_start_ms"]) + " (python -S)",
            )
        )
        rows.append(
            (
                "start-up CPU ms: -S / qscan-queue",
                f"{f['python_S_start_cpu_ms']} / {f['client_start_cpu_ms']}",
                ratio(f["client_start_cpu_ms"], f["python_S_start_cpu_ms"]) + " (python -S)",
            )
        )
        ceiling_text = f"{f['e2e_ceiling_msgs_per_s']}"
        rows.append(("ceiling: end-to-end msgs/s", ceiling_text, "cpus x 1000 / client start-up CPU"))
    cons = r.get("consumers")
    if isinstance(cons, dict):
        for k, v in cons.items():
            floor = f.get("maildir_files_per_s") if k == "archive_events_per_s" else None
            rows.append((k.replace("_", " "), "n/a" if v is None else f"{v}", ratio(v, floor)))
    width = max(len(a) for a, _, _ in rows) + 2
    print("\nqscan benchmark", json.dumps(r["machine"]))
    for a, b, c in rows:
        print(f"  {a:<{width}}{b:>22}   {c}")
    print("\ntargets:")
    for path, (op, target) in TARGETS.items():
        v = _get(r, path)
        if v is None:
            continue
        ok = v >= target if op == ">=" else v <= target
        print(f"  {'.'.join(path):<40} {v:>10} {op} {target:<6} {'ok' if ok else 'MISSED'}")
    # The absolute targets were set for a machine that parses ~650 msgs/s per core; these
    # are the same targets against this run's own floors.
    print("\nagainst this run's floors:")
    core, parse = _get(r, ("daemon_core", "msgs_per_s")), _get(r, ("floors", "parse_msgs_per_s"))
    if core and parse:
        share = core / (2 * parse)
        print(f"  {'daemon core / 2 cores of stdlib parse':<40} {share:>10.2f} >= 0.5    "
              f"{'ok' if share >= 0.5 else 'MISSED'}  (650/s would need a parse floor of 650/s per "
              f"core; this machine's is {parse})")
    e2e, ceiling = _get(r, ("end_to_end", "4", "msgs_per_s")), _get(r, ("floors", "e2e_ceiling_msgs_per_s"))
    if e2e and ceiling:
        verdict = "impossible here" if ceiling < 250 else ("ok" if e2e >= 250 else "MISSED")
        print(f"  {'end-to-end ceiling (client start-up CPU)':<40} {ceiling:>10} >= 250    {verdict}"
              f"  (c=4 reached {e2e / ceiling:.2f}x of it)")
    # every message pays one client start, so no message (let alone the median) beats it
    p50, start = _get(r, ("end_to_end", "4", "p50_ms")), _get(r, ("floors", "client_start_ms"))
    if p50 and start:
        verdict = "impossible here" if start > 10 else ("ok" if p50 <= 10 else "MISSED")
        print(f"  {'end-to-end p50 floor (one client start)':<40} {start:>10} <= 10     {verdict}"
              f"  (c=4 p50 {p50} ms)")


if __name__ == "__main__":
    sys.exit(main())
