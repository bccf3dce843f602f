"""Building the pieces from a Config: the only place that knows every package."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ingest.daemon import DaemonOptions
from ingest.journal import Journal
from ingest.log import Sink
from ingest.processor import Processor, ProcessorOptions
from ingest.summary_log import open_summary_log
from qscan.config import Config
from scanners.base import Scanner
from scanners.size import SizeScanner

# name -> factory(config). Scanner issues register theirs here; order of use is
# `scanners.enabled`, but AV-type scanners should be listed first (see README).
SCANNERS: dict[str, Callable[[Config], Scanner]] = {"size": lambda cfg: SizeScanner()}
CONSUMERS = ("archive", "summaries")


def make_scanners(cfg: Config) -> list[Scanner]:
    out: list[Scanner] = []
    for name in cfg.scanners.enabled:
        if name not in SCANNERS:
            raise ValueError(f"unknown scanner {name!r} (known: {', '.join(SCANNERS)})")
        out.append(SCANNERS[name](cfg))
    return out


def daemon_options(cfg: Config) -> DaemonOptions:
    d = cfg.daemon
    return DaemonOptions(
        socket_path=d.socket, socket_mode=d.socket_mode, socket_group=d.socket_group,
        workers=d.workers, max_messages_per_worker=d.max_messages_per_worker,
        max_message_size=d.max_message_size, timeout=d.timeout,
    )


def processor_options(cfg: Config) -> ProcessorOptions:
    d, h = cfg.daemon, cfg.headers
    return ProcessorOptions(
        hostname=cfg.hostname, qmail_queue=d.qmail_queue,
        qmail_queue_timeout=d.qmail_queue_timeout, max_message_size=d.max_message_size,
        diagnostics=h.diagnostics, diagnostics_style=h.style, header_mail_from=h.mail_from,
        header_attachments=h.attachments, header_recipients=h.recipients,
        queue_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


def make_processor(cfg: Config) -> Processor:
    """Called in each worker after fork: connections must not cross a fork."""
    summary = open_summary_log(cfg.summary_log.target, cfg.summary_log_path, cfg.summary_log.facility)
    return Processor(processor_options(cfg), Journal(cfg.journal_path), make_scanners(cfg), summary)


def make_sink(cfg: Config, name: str) -> Sink:
    if name == "archive":
        from archive.consumer import ArchiveSink

        return ArchiveSink(
            Path(cfg.archive_maildir), Path(cfg.quarantine_dir), cfg.archive.filter,
            archive_enabled=cfg.archive.enabled,
        )
    if name == "summaries":
        from compliance.summaries import SummarySink

        return SummarySink(cfg.sql_url)
    raise ValueError(f"unknown consumer {name!r} (known: {', '.join(CONSUMERS)})")
