"""The end-to-end demo on embedded defaults (`qscan demo`, `make demo`).

Everything is real except qmail itself: the corpus goes through the installed
(native) ``qscan-queue`` program over the qmail-queue protocol (pipes on fd 0, fd 1
and fd 6), into the daemon started by ``qscan run``, onto the journal, back to
``qscan-queue``, which hands it to a stand-in qmail-queue, and out to the archive
maildir and the SQLite store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from ingest.journal import Journal
from qscan.testing.clients import native_client
from qscan.testing.corpus import CorpusMessage, demo_dir, load_corpus
from qscan.testing.injector import InjectResult, inject
from qscan.testing.standin import write_standin

MARKER = ".qscan-demo"


def _socket_path(data_dir: Path) -> Path:
    """Unix socket paths are limited to 107 bytes; fall back to a short temp dir."""
    path = data_dir / "qscan.sock"
    if len(str(path)) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="qscan-")) / "qscan.sock"


def write_demo_config(data_dir: Path, standin: Path, socket_path: Path) -> Path:
    cfg = data_dir / "qscan.toml"
    cfg.write_text(
        f"""# written by `qscan demo`
data_dir = "{data_dir}"

[daemon]
socket = "{socket_path}"
workers = 2
qmail_queue = "{standin}"
hostname = "mx1.demo.example"

[summary_log]
target = "file"

[headers]
attachments = true

[scanners]
enabled = ["size", "internal", "dlp"]

[dlp]
rules = "{demo_dir() / 'dlp.toml'}"
"""
    )
    return cfg


def client_program() -> str:
    """The installed qscan-queue (native: ``make install`` builds it; from a checkout whose venv
    lacks it, a build of ingest/native/qscan_queue.c)."""
    try:
        return native_client()
    except RuntimeError as exc:  # no compiler
        raise click.ClickException(f"qscan-queue is not installed and cannot be built: {exc}") from exc


def push(program: str, msg: CorpusMessage, socket_path: Path, qmail_queue: Path) -> InjectResult:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QSCAN_SOCKET": str(socket_path),
           "QSCAN_QMAIL_QUEUE": str(qmail_queue), **msg.env}  # qscan-queue runs the stand-in
    return inject(program, msg.data, msg.envelope, env)


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"qscan run exited early with {proc.returncode}")
        if path.exists():
            return
        time.sleep(0.05)
    raise click.ClickException(f"daemon socket {path} did not appear in {timeout}s")


def wait_for_consumers(journal_path: Path, names: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with Journal(journal_path) as j:
        while time.monotonic() < deadline:
            head = j.head()
            pos = j.positions()
            if all(pos.get(n, 0) >= head for n in names):
                return
            time.sleep(0.1)
    raise click.ClickException("consumers did not catch up in time")


def run_demo(data_dir: Path, *, concurrency: int = 4, keep_running: bool = False) -> int:
    data_dir = data_dir.resolve()
    if data_dir.exists():
        if any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
            raise click.ClickException(f"{data_dir} exists and is not a demo directory; not wiping it")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, mode=0o700)
    (data_dir / MARKER).write_text("created by qscan demo\n")
    record = data_dir / "queued"
    standin = write_standin(data_dir / "bin" / "qmail-queue", record)
    socket_path = _socket_path(data_dir)
    cfg_path = write_demo_config(data_dir, standin, socket_path)

    click.echo("loading corpus ...")
    corpus = load_corpus()
    total_bytes = sum(len(m.data) for m in corpus)
    click.echo(f"  {len(corpus)} messages, {total_bytes / 1e6:.1f} MB")
    program = client_program()

    qscan = [sys.executable, "-m", "qscan", "-c", str(cfg_path)]
    log_file = open(data_dir / "qscan-run.log", "wb")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen([*qscan, "run"], stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    status = 1
    try:
        wait_for_socket(socket_path, proc)
        click.echo(f"daemon up on {socket_path}; pushing the corpus through {program} "
                   f"with {concurrency} concurrent sender(s)")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            results = list(pool.map(lambda m: push(program, m, socket_path, standin), corpus))
        wall = time.perf_counter() - t0
        failures = [(m, r) for m, r in zip(corpus, results, strict=True) if r.code != 0]
        for m, r in failures:
            click.echo(f"  {m.name}: qscan-queue exited {r.code} {r.fd6!r}")
        lat = sorted(r.elapsed * 1000 for r in results)
        click.echo(f"  {len(results) - len(failures)}/{len(results)} accepted in {wall:.2f}s "
                   f"({len(results) / wall:.1f} msgs/s, p50 {statistics.median(lat):.1f} ms, "
                   f"max {lat[-1]:.1f} ms)")
        wait_for_consumers(data_dir / "journal.db", ["archive", "summaries"])
        _report(qscan, data_dir)
        status = 0 if not failures else 1
        if keep_running:
            click.echo("running; Ctrl-C to stop")
            while proc.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log_file.close()
        click.echo("stopped qscan run" + ("" if proc.returncode == 0 else f" (exit {proc.returncode})"))
    return status


def _report(qscan: list[str], data_dir: Path) -> None:
    click.echo("\naudit table (qscan audit search --limit 50):")
    out = subprocess.run([*qscan, "audit", "search", "--limit", "50"], capture_output=True, text=True,
                         check=True)
    click.echo(out.stdout)
    counts = subprocess.run([*qscan, "audit", "search", "--format", "json", "--limit", "1000"],
                            capture_output=True, text=True, check=True)
    rows = json.loads(counts.stdout)
    by_action: dict[str, int] = {}
    for row in rows:
        by_action[row["action"]] = by_action.get(row["action"], 0) + 1
    archive = data_dir / "archive"
    archived = len(list((archive / "new").glob("*"))) if (archive / "new").exists() else 0
    queued = len(list((data_dir / "queued").glob("*.msg")))
    click.echo("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(by_action.items())))
    click.echo(f"stand-in qmail-queue received {queued} messages -> {data_dir / 'queued'}")
    click.echo(f"archive maildir:   {archive} ({archived} messages in new/)")
    click.echo(f"quarantine:        {data_dir / 'quarantine'}")
    click.echo(f"SQLite database:   {data_dir / 'qscan.db'}")
    click.echo(f"journal:           {data_dir / 'journal.db'}")
    click.echo(f"one-line log:      {data_dir / 'summary.log'}")
    click.echo(f"config:            {data_dir / 'qscan.toml'}  (try: qscan -c {data_dir / 'qscan.toml'} "
               "audit search --sender '*@example.com')")
    _console(qscan, data_dir)


def _console(qscan: list[str], data_dir: Path) -> None:
    """A demo account for the web console, and how to open it on this machine (docs/web.md)."""
    import secrets

    config = data_dir / "qscan.toml"
    try:
        import argon2  # noqa: F401  (the web extra)
    except ImportError:
        click.echo("web console:       needs the web extra: pip install 'qscan[web]' (docs/web.md)")
        return
    password = secrets.token_urlsafe(12)
    subprocess.run([*qscan, "web", "user", "add", "demo", "--role", "postmaster", "--password-stdin"],
                   input=password + "\n", capture_output=True, text=True, check=True)
    click.echo(f"web console:       qscan -c {config} web --insecure-cookies   (this machine only), "
               f"then open http://127.0.0.1:8470/ and sign in as demo, password {password}")
