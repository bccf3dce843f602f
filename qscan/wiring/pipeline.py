"""Building the pieces from a Config: the only place that knows every package."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.daemon import DaemonOptions
from ingest.journal import Journal
from ingest.log import Sink
from ingest.processor import Processor, ProcessorOptions
from ingest.summary_log import open_summary_log
from qscan.config import Config
from qscan.wiring import external
from qscan.wiring.dlp import make_dlp_scanner
from qscan.wiring.internal import make_internal_scanner
from scanners.base import Scanner
from scanners.result import Disposition
from scanners.size import SizeScanner

if TYPE_CHECKING:
    from ingest.kafka_log import KafkaSettings

# Scanner name -> factory(config): the wiring half of the scanner registry, whose names and
# settings sections are qscan/config.py's SCANNER_SETTINGS (a test keeps the key sets equal).
# Order of use is `scanners.enabled`.
SCANNERS: dict[str, Callable[[Config], Scanner]] = {
    "size": lambda cfg: SizeScanner(),
    "clamd": external.clamd,  # the external ones: qscan/wiring/external.py
    "cmdline": external.cmdline,
    "cymru": external.cymru,
    "internal": make_internal_scanner,  # format checks, unpacking, policy rules
    "spamd": external.spamd,
    "rspamd": external.rspamd,
    "dlp": make_dlp_scanner,  # data loss prevention; needs dlp.rules (qscan/wiring/dlp.py)
}
log = logging.getLogger(__name__)


def make_scanners(cfg: Config) -> list[Scanner]:
    out: list[Scanner] = []
    for name in cfg.scanners.enabled:
        if name not in SCANNERS:
            raise ValueError(f"unknown scanner {name!r} (known: {', '.join(SCANNERS)})")
        out.append(SCANNERS[name](cfg))
    return out


def resolve_uids(names: list[str], key: str) -> frozenset[int]:
    """Users by name or number; a name with no account is skipped with a warning (qmaild
    on a box without qmail), `qscan install --check` names it."""
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
    return DaemonOptions(
        socket_path=d.socket, socket_mode=d.socket_mode, socket_group=d.socket_group,
        workers=d.workers, max_messages_per_worker=d.max_messages_per_worker,
        recycle_after_bytes=d.recycle_after_bytes,
        max_message_size=d.max_message_size, timeout=d.timeout, client_timeout=d.client_timeout,
        allow_uids=resolve_uids(d.allow_users, "daemon.allow_users") if d.allow_users else None,
        max_connections_per_uid=d.max_connections_per_uid, handoff_after=d.handoff_after,
    )


def processor_options(cfg: Config) -> ProcessorOptions:
    d, h = cfg.daemon, cfg.headers
    return ProcessorOptions(
        hostname=cfg.hostname, qmail_queue=d.qmail_queue,
        qmail_queue_timeout=d.qmail_queue_timeout, max_message_size=d.max_message_size,
        diagnostics=h.diagnostics, diagnostics_style=h.style, header_mail_from=h.mail_from,
        header_attachments=h.attachments, header_recipients=h.recipients,
        queue_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        deadline_margin=d.deadline_margin, unparseable_action=Disposition(cfg.internal.error_action),
        smtp_uids=resolve_uids(d.smtp_users, "daemon.smtp_users"),
        local_domains=qmail_local_domains(d.qmail_queue) if d.local_domains is None
        else tuple(x.strip().lower().rstrip(".") for x in d.local_domains),
        max_recipients=d.max_recipients,
    )


def make_processor(cfg: Config, journal_cls: type[Journal] = Journal) -> Processor:
    """Called in each worker after fork: connections must not cross a fork.

    ``journal_cls``: qscan.ops.metrics.TimedJournal when [metrics] is on (append latency)."""
    summary = open_summary_log(cfg.summary_log.target, cfg.summary_log_path, cfg.summary_log.facility)
    return Processor(processor_options(cfg), journal_cls(cfg.journal_path), make_scanners(cfg), summary)


def _archive_sink(cfg: Config, position_key: str | None) -> Sink:
    from archive.consumer import ArchiveSink
    from compliance.retention import Tombstones

    return ArchiveSink(
        Path(cfg.archive_maildir), Path(cfg.quarantine_dir), cfg.archive.filter,
        archive_enabled=cfg.archive.enabled, position_key=position_key,
        tombstoned=Tombstones(cfg.sql_url),
    )


def _summary_sink(cfg: Config, position_key: str | None) -> Sink:
    from compliance.summaries import SummarySink

    return SummarySink(cfg.sql_url, name=f"summaries@{position_key}" if position_key else "summaries")


def _notify_sink(cfg: Config, position_key: str | None) -> Sink:
    from qscan.wiring.notify import make_notify_sink

    return make_notify_sink(cfg, name=f"notify@{position_key}" if position_key else "notify")


# Consumer name -> factory(config, position_key); the names are qscan/config.py's CONSUMER_NAMES
# (a test keeps them equal).
SINKS: dict[str, Callable[[Config, str | None], Sink]] = {
    "archive": _archive_sink, "summaries": _summary_sink, "notify": _notify_sink,
}


def make_sink(cfg: Config, name: str, position_key: str | None = None) -> Sink:
    """The projection NAME; ``position_key`` names the log source it stores a position for
    (None: the journal; ``kafka.TOPIC.PARTITION``: one Kafka partition)."""
    if name not in SINKS:
        raise ValueError(f"unknown consumer {name!r} (known: {', '.join(SINKS)})")
    return SINKS[name](cfg, position_key)


def kafka_settings(cfg: Config) -> KafkaSettings:
    """The Kafka side of the config; raises ValueError when [log.kafka] is not configured."""
    from ingest.kafka_log import KafkaSettings

    k = cfg.log.kafka
    if k is None:
        raise ValueError("Kafka is not configured: add a [log.kafka] section with bootstrap_servers")
    return KafkaSettings(
        bootstrap_servers=k.bootstrap_servers, topic=k.topic, partitions=k.partitions,
        replication_factor=k.replication_factor, retention_ms=int(k.retention_days * 86400 * 1000),
        compression=k.compression, max_message_size=cfg.daemon.max_message_size,
        client_id=f"qscan-{cfg.hostname}", group_prefix=k.group_prefix,
        request_timeout_ms=k.request_timeout_ms,
    )


def log_readers_required(cfg: Config) -> list[str]:
    """Who must have passed an event before the journal may prune it."""
    names: list[str] = list(cfg.consumers.enabled) if cfg.consumers.source == "journal" else []
    if cfg.log.kafka is not None:
        names.append("relay")
    return names
