"""Building the pieces from a Config: the only place that knows every package."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ingest.daemon import DaemonOptions
from ingest.journal import Journal
from ingest.log import Sink
from ingest.processor import Processor, ProcessorOptions
from ingest.summary_log import open_summary_log
from qscan.config import Config
from qscan.wiring.dlp import make_dlp_scanner
from qscan.wiring.internal import make_internal_scanner
from scanners.base import Scanner
from scanners.clamd import ClamdScanner
from scanners.cmdline import CmdlineScanner
from scanners.cymru import CymruScanner
from scanners.result import Disposition
from scanners.rspamd import RspamdScanner
from scanners.settings import extend
from scanners.size import SizeScanner
from scanners.spamd import SpamdScanner

if TYPE_CHECKING:
    from ingest.kafka_log import KafkaSettings

@dataclass(frozen=True)
class ScannerEntry:
    """One scanner qscan can run. Its settings are the Config section of the same name
    (qscan/config.py's SCANNER_SETTINGS); this says how it is built and what the start-up
    checks (qscan/ops/preflight.py) and `qscan status` (qscan/ops/status.py) need to know."""

    build: Callable[[Config], Scanner]
    rules: Literal["optional", "required"] | None = None  # its section's `rules` file, read at start
    needs: str | None = None  # the key of its section a failure to build comes from
    probe: Literal["version", "ping"] | None = None  # how `qscan status` asks a network scanner


# Scanner name -> entry: the wiring half of the scanner registry, whose names and settings are
# qscan/config.py's SCANNER_SETTINGS (a test keeps the key sets equal). Adding a scanner: its
# settings class there, its entry here. Order of use is `scanners.enabled`.
SCANNERS: dict[str, ScannerEntry] = {
    "size": ScannerEntry(lambda cfg: SizeScanner()),
    "clamd": ScannerEntry(lambda cfg: ClamdScanner(cfg.clamd), probe="version"),
    "cmdline": ScannerEntry(lambda cfg: CmdlineScanner(cfg.cmdline), needs="argv"),
    "cymru": ScannerEntry(lambda cfg: CymruScanner(cfg.cymru)),
    "internal": ScannerEntry(make_internal_scanner, rules="optional"),  # qscan/wiring/internal.py
    "spamd": ScannerEntry(lambda cfg: SpamdScanner(cfg.spamd), probe="version"),
    "rspamd": ScannerEntry(lambda cfg: RspamdScanner(cfg.rspamd), probe="ping"),
    "dlp": ScannerEntry(make_dlp_scanner, rules="required"),  # qscan/wiring/dlp.py
}
log = logging.getLogger(__name__)


def make_scanners(cfg: Config) -> list[Scanner]:
    out: list[Scanner] = []
    for name in cfg.scanners.enabled:
        if name not in SCANNERS:
            raise ValueError(f"unknown scanner {name!r} (known: {', '.join(SCANNERS)})")
        out.append(SCANNERS[name].build(cfg))
    return out


def resolve_uids(names: tuple[str, ...], key: str) -> frozenset[int]:
    """Users by name or number; a name with no account is skipped with a warning (qmaild
    on a box without qmail), `qscan install --check` names it. Called once, in the master."""
    uids = set()
    for name in names:
        if name.isdigit():
            uids.add(int(name))
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            log.warning("%s: no user %r on this system", key, name)
    return frozenset(uids)


def qmail_local_domains(qmail_queue: Path) -> tuple[str, ...]:
    """qmail's own idea of local domains: control/locals and control/rcpthosts beside the
    qmail-queue it runs (/var/qmail/bin/qmail-queue -> /var/qmail/control)."""
    control = qmail_queue.parent.parent / "control"
    out: list[str] = []
    for name in ("locals", "rcpthosts", "me"):
        try:
            text = (control / name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip().lower()
            if line and not line.startswith("#") and line not in out:
                out.append(line)
    return tuple(out)


def daemon_options(cfg: Config) -> DaemonOptions:
    d = cfg.daemon
    allow = resolve_uids(d.allow_users, "daemon.allow_users") if d.allow_users else None
    return extend(d, DaemonOptions, allow_uids=allow)


def processor_options(cfg: Config) -> ProcessorOptions:
    """The processor's settings ([daemon], [headers]) and what is resolved from them: the host
    name, the trusted uids, the local domains (qmail's when unset)."""
    d = cfg.daemon
    return ProcessorOptions(
        hostname=cfg.hostname, settings=d, headers=cfg.headers,
        queue_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        unparseable_action=Disposition(cfg.internal.error_action),
        smtp_uids=resolve_uids(d.smtp_users, "daemon.smtp_users"),
        local_domains=qmail_local_domains(d.qmail_queue) if d.local_domains is None else d.local_domains,
    )


def processor_factory(cfg: Config, journal_cls: type[Journal] = Journal) -> Callable[[], Processor]:
    """What each worker calls after fork to build its processor (connections must not cross a
    fork); the options are resolved here, once, in the master (one warning, not one a worker).

    ``journal_cls``: qscan.ops.metrics.TimedJournal when [metrics] is on (append latency)."""
    options = processor_options(cfg)
    # a worker checkpoints the journal itself, between messages (ingest.daemon.Worker.run)
    return lambda: _processor(cfg, options, journal_cls, autocheckpoint=False)


def make_processor(cfg: Config, journal_cls: type[Journal] = Journal) -> Processor:
    """A processor for in-process use (one process: tests, `qscan` tools)."""
    return _processor(cfg, processor_options(cfg), journal_cls)


def _processor(cfg: Config, options: ProcessorOptions, journal_cls: type[Journal],
               autocheckpoint: bool = True) -> Processor:
    summary = open_summary_log(cfg.summary_log, cfg.summary_log_path)
    return Processor(options, journal_cls(cfg.journal_path, autocheckpoint=autocheckpoint),
                     make_scanners(cfg), summary)


def _archive_sink(cfg: Config, position_key: str | None) -> Sink:
    from archive.consumer import ArchiveSink
    from compliance.retention import Tombstones

    return ArchiveSink(Path(cfg.archive_maildir), Path(cfg.quarantine_dir), cfg.archive,
                       position_key=position_key, tombstoned=Tombstones(cfg.sql_url))


def _summary_sink(cfg: Config, position_key: str | None) -> Sink:
    from compliance.summaries import SummarySink

    return SummarySink(cfg.sql_url, name=f"summaries@{position_key}" if position_key else "summaries")


def _notify_sink(cfg: Config, position_key: str | None) -> Sink:
    from qscan.wiring.notify import make_notify_sink

    return make_notify_sink(cfg, name=f"notify@{position_key}" if position_key else "notify")


def _index_sink(cfg: Config, position_key: str | None) -> Sink:
    from compliance.discovery.consumer import IndexSink

    return IndexSink(cfg.sql_url, cfg.discovery_path, cfg.discovery,
                     name=f"index@{position_key}" if position_key else "index")


@dataclass(frozen=True)
class SinkEntry:
    """One consumer `qscan run` can start: its sink, and where it keeps Kafka anchors."""

    build: Callable[[Config, str | None], Sink]
    # where it keeps its positions and Kafka anchors: files in its maildir root, or SQL rows
    store: Literal["maildir", "sql"]
    outbox: bool = False  # it sends mail from an SQL outbox (its own gauges on /metrics)


# Consumer name -> entry; the names are qscan/config.py's CONSUMER_NAMES (a test keeps them
# equal), whose order also gives each its metrics port (qscan/ops/metrics.py).
SINKS: dict[str, SinkEntry] = {
    "archive": SinkEntry(_archive_sink, "maildir"),
    "summaries": SinkEntry(_summary_sink, "sql"),
    "notify": SinkEntry(_notify_sink, "sql", outbox=True),
    "index": SinkEntry(_index_sink, "sql"),
}


def make_sink(cfg: Config, name: str, position_key: str | None = None) -> Sink:
    """The projection NAME; ``position_key`` names the log source it stores a position for
    (None: the journal; ``kafka.TOPIC.PARTITION``: one Kafka partition)."""
    if name not in SINKS:
        raise ValueError(f"unknown consumer {name!r} (known: {', '.join(SINKS)})")
    return SINKS[name].build(cfg, position_key)


def kafka_settings(cfg: Config) -> KafkaSettings:
    """[log.kafka] with this host's client id and the daemon's largest message; raises
    ValueError when [log.kafka] is not configured."""
    from ingest.kafka_log import KafkaSettings

    k = cfg.log.kafka
    if k is None:
        raise ValueError("Kafka is not configured: add a [log.kafka] section with bootstrap_servers")
    return extend(k, KafkaSettings, max_message_size=cfg.daemon.max_message_size,
                  client_id=f"qscan-{cfg.hostname}")


def log_readers_required(cfg: Config) -> list[str]:
    """Who must have passed an event before the journal may prune it."""
    names: list[str] = list(cfg.consumers.enabled) if cfg.consumers.source == "journal" else []
    if cfg.log.kafka is not None:
        names.append("relay")
    return names
