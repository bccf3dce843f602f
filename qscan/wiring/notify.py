"""Building the notify consumer from the ``[notify]`` config section (compliance/notify).

Kept apart from qscan/wiring/pipeline.py because it is the one place that joins the
notifications (compliance) to the quarantine layout (archive): the admin's
notice names the quarantine file, whose name only archive/ knows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from archive.consumer import message_name
from compliance.notify.audience import NotifyPolicy
from compliance.notify.compose import Identity
from compliance.notify.delivery import QmailInjectTransport, SmtpTransport, Transport
from compliance.notify.marks import MarkKey, MarkKeyError
from compliance.notify.outbox import RetryPolicy
from compliance.notify.render import Renderer
from compliance.notify.sink import JournalHeaders, Notifier, NotifySink
from ingest.event import MessageScanned
from qscan.config import Config, ConfigError
from scanners.settings import extend


def from_address(cfg: Config) -> str:
    return cfg.notify.from_address or f"postmaster@{cfg.hostname}"


def notify_policy(cfg: Config) -> NotifyPolicy:
    own = tuple(a for a in (from_address(cfg), cfg.notify.envelope_sender) if a)
    return extend(cfg.notify, NotifyPolicy, own_addresses=own)


def mark_key_path(cfg: Config) -> Path:
    return cfg.notify.mark_key or cfg.data_dir / "notify.key"


def mark_key(cfg: Config) -> MarkKey:
    """The site's notification mark key, created (0600) on first use."""
    try:
        return MarkKey.load(mark_key_path(cfg))
    except MarkKeyError as exc:
        raise ConfigError(f"notify.mark_key: {exc}") from exc


def identity(cfg: Config, *, create_key: bool = True) -> Identity:
    """Who notifications come from; ``create_key=False`` for commands that send nothing (a preview):
    they sign with the site's key if there is one, else with a throwaway key, and write no file."""
    n = cfg.notify
    key = mark_key(cfg) if create_key or mark_key_path(cfg).exists() else MarkKey.generate()
    return Identity(from_address=from_address(cfg), from_name=n.from_name,
                    envelope_sender=n.envelope_sender, host=cfg.hostname, mark_key=key)


def quarantine_file(cfg: Config) -> Callable[[MessageScanned], str | None]:
    root = Path(cfg.quarantine_dir)

    def where(event: MessageScanned) -> str | None:
        folder = event.quarantine_folder
        return str(root / folder / "new" / message_name(event)) if folder else None

    return where


def renderer(cfg: Config) -> Renderer:
    n = cfg.notify
    return Renderer(host=cfg.hostname, settings=n, contact=n.release_contact or n.admin,
                    quarantine_file=quarantine_file(cfg))


def notifier(cfg: Config, *, create_key: bool = True) -> Notifier:
    return Notifier(notify_policy(cfg), renderer(cfg), identity(cfg, create_key=create_key),
                    JournalHeaders(str(cfg.journal_path)))


def transport_factory(cfg: Config) -> Callable[[], Transport]:
    n = cfg.notify
    if n.transport == "qmail-inject":
        return lambda: QmailInjectTransport(n.qmail_inject, timeout=max(60.0, n.smtp_timeout))
    return lambda: SmtpTransport(n, helo=cfg.hostname)


def retry_policy(cfg: Config) -> RetryPolicy:
    return RetryPolicy(cfg.notify, lease=max(600.0, 4 * cfg.notify.smtp_timeout))


def make_notify_sink(cfg: Config, *, name: str = "notify", background: bool = True) -> NotifySink:
    """The consumer ``qscan consume notify`` runs (``background``: retry while the log is quiet)."""
    return NotifySink(cfg.sql_url, notifier(cfg), transport_factory(cfg), retry=retry_policy(cfg),
                      interval=cfg.notify.delivery_interval if background else None, name=name)
