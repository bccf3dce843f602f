"""`qscan run`: the daemon and every consumer under one supervisor (embedded default).

Each component is its own process (``python -m qscan ...``), so a crash in a
consumer never touches the daemon. Crashed children are restarted with
back-off; SIGTERM is passed on and the supervisor waits for clean exits. The
journal is pruned periodically behind every consumer, and the chain heads are
anchored outside the database every ``anchor.interval_minutes`` and at shutdown
(qscan.ops.anchors).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from compliance.anchor import AnchorError
from ingest.journal import Journal
from qscan.config import Config
from qscan.ops.anchors import AnchorWriter
from qscan.ops.sdnotify import Notifier, child_env
from qscan.wiring.pipeline import log_readers_required

log = logging.getLogger(__name__)

# A component that exits with this (EX_CONFIG) stopped on something only a person can
# fix (a poison Kafka record, a topic with the wrong partition count): restarting it
# would only repeat the error, so the supervisor leaves it stopped and says so.
EXIT_NEEDS_OPERATOR = 78


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)


def components(cfg: Config, config_path: str) -> list[Child]:
    base = [sys.executable, "-m", "qscan", "-c", config_path]
    children = [Child("daemon", [*base, "daemon"])]
    if cfg.log.kafka is not None:
        children.append(Child("relay", [*base, "relay"]))
    for name in cfg.consumers.enabled:
        children.append(Child(f"consume-{name}", [*base, "consume", name]))
    return children


def _bound_since(path: Path, since: float) -> bool:
    """The daemon's socket exists and was made by this run (a stale one is older)."""
    try:
        return path.stat().st_mtime >= since - 1
    except OSError:
        return False


def supervise(cfg: Config, config_path: str, *, stop_timeout: float = 60.0) -> int:
    children = components(cfg, config_path)
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    journal = Journal(cfg.journal_path)
    next_prune = time.monotonic() + cfg.journal.prune_interval
    try:
        anchors = AnchorWriter(cfg, journal)
    except AnchorError as exc:  # before any child starts: nothing to stop
        log.error("%s: fix [anchor] and start again", exc)
        journal.close()
        return EXIT_NEEDS_OPERATOR
    every = cfg.anchor.interval_minutes * 60
    next_anchor = time.monotonic() + every if every else float("inf")
    from qscan.ops.journal_budget import budget_warning

    over_budget = budget_warning(cfg)
    systemd = Notifier()  # Type=notify: READY=1 once the daemon's socket is there; WATCHDOG=1 every pass
    ready = False
    began = time.time()
    try:
        while not stopping:
            now = time.monotonic()
            systemd.ping(now)
            for c in children:
                if c.proc is not None and c.proc.poll() is not None:
                    code = c.proc.returncode
                    if code == EXIT_NEEDS_OPERATOR:
                        log.error("%s stopped on an error it cannot recover from (see its message above); "
                                  "not restarting it: fix the cause and restart qscan run", c.name)
                        c.proc = None
                        c.next_start = float("inf")
                        continue
                    log.warning("%s exited with %s", c.name, code)
                    c.failures = c.failures + 1 if now - c.started < 10 else 1
                    c.next_start = now + min(30.0, 0.5 * 2 ** (c.failures - 1))
                    c.proc = None
                if c.proc is None and now >= c.next_start:
                    log.info("starting %s", c.name)
                    c.proc = subprocess.Popen(c.argv, env={**child_env(), **c.extra_env})
                    c.started = now
            if not ready and _bound_since(cfg.daemon.socket, began):
                systemd.ready(f"daemon listening on {cfg.daemon.socket}")
                ready = True
            if now >= next_prune:
                try:
                    n = journal.prune(log_readers_required(cfg), cfg.journal.retain_days * 86400)
                    if n:
                        log.info("pruned %d journal events", n)
                except Exception:
                    log.exception("journal prune failed")
                next_prune = now + cfg.journal.prune_interval
            if now >= next_anchor:
                _anchor(anchors)
                next_anchor = now + every
            over_budget()  # a rate-limited warning while the journal is over journal.disk_budget_mb
            time.sleep(0.2)
    finally:
        systemd.stopping()
        for c in children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        for c in children:
            if c.proc is None:
                continue
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in time; killing it", c.name)
                c.proc.kill()
                c.proc.wait()
        _anchor(anchors)  # the heads as the components left them
        journal.close()
    return 0


def _anchor(writer: AnchorWriter) -> None:
    try:
        writer.write()
    except Exception:
        log.exception("writing the chain anchor failed")
