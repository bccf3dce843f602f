"""The archive consumer: the event log projected into archive and quarantine maildirs.

It is rebuilt by replay, so it must be idempotent: the file name is derived
from the event alone (``<unix time>.<event id>.qscan``) and a name already on
disk is left alone. Its position lives in a checkpoint file next to the
maildirs, written only after the batch's files and directories are fsynced:
after a crash the consumer re-applies at most one batch, and re-applying
changes nothing.

Quarantined mail is written whatever the archive settings say: the quarantine
is the only copy of a message that was accepted but not delivered.

**The archive decision is recorded when it is made.** Whether an accepted
message is archived depends on ``[archive] enabled`` and ``filter`` *at the time
the consumer handles it*; so for every delivered or dropped message the consumer
appends its decision, with a digest of the settings it used, to a decision
record beside the maildir (``.qscan-archive-decisions``, one per log source like
the checkpoint), and the settings themselves once per run. ``qscan verify``
judges each message by the decision recorded for it, never by today's settings
(archive.copies reads the record).

Record lines (text, one per line)::

    S <digest> <settings as JSON: {"enabled": bool, "filter": str|null}>
    D <event id> <1 archived | 0 not archived> <digest of the settings used>

A tombstone wins over any replay: a copy deleted lawfully (retention, quarantine
delete or expiry) is never written again. The ``message.deleted`` event follows its
message on the log, so a replay or a new consumer removes what an earlier batch wrote
back and drops the write when both are in one batch; with ``tombstoned`` (the SQL
store's tombstones, wired in qscan) the copy is not even written for a moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from archive.envelope_block import archived_message
from archive.maildir import FILE_MODE, Maildir, check_name, deliver_batch, fsync_dir, make_dirs
from ingest.event import QUARANTINE_FOLDERS, Action, MessageDeleted, MessageScanned, QueueFailed, utc
from ingest.ids import uuid7_time
from ingest.log import LogRecord
from scanners.settings import SECTION, Check, setting, valid_regex

log = logging.getLogger(__name__)

POSITION_FILE = ".qscan-archive-position"
DECISIONS_FILE = ".qscan-archive-decisions"
SUFFIX = ".qscan"

# How far the event time may be from the time inside its UUIDv7 before a
# queue_failed removal falls back to listing the maildir.
_ID_TIME_SLACK = 5


def message_name(event: MessageScanned) -> str:
    """The maildir name for an event: stable across replays, never from mail content."""
    return check_name(f"{int(utc(event.time).timestamp())}.{event.event_id}{SUFFIX}")


def _safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _filter(value: str | None) -> str | None:
    return valid_regex(value) or None


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """Where stored copies go (archive/consumer.py writes them) and which are kept."""

    __pydantic_config__ = SECTION
    enabled: bool = setting(True, "write the archive maildir")
    maildir: Path | None = setting(
        None, "archive maildir (default: DATA_DIR/archive)", example="@DATA_DIR@/archive")
    quarantine_dir: Path | None = setting(
        None, "root of viruses/ policy/ spam/ dlp/ maildirs (default: DATA_DIR/quarantine)",
        example="@DATA_DIR@/quarantine")
    filter: Annotated[str | None, Check(_filter)] = setting(
        None, "regex: archive only mail with an envelope address matching it (e.g. "
        "'(support|sales)@example\\.com'); unset archives everything",
        example=r"(support|sales)@example\.com")


def archive_rule(enabled: bool, pattern: str | None) -> Callable[[str, Sequence[str]], bool]:
    """Whether the archive settings keep an accepted message, from its envelope addresses.

    The one definition: the consumer decides with it, and verify checks each recorded
    decision against the settings recorded with it."""
    # Addresses are case-insensitive in practice; a filter that missed
    # "Support@Example.COM" would silently leave mail out of the archive.
    rx = re.compile(pattern, re.IGNORECASE) if pattern else None

    def keep(sender: str, recipients: Sequence[str]) -> bool:
        if not enabled:
            return False
        return rx is None or any(rx.search(a) for a in [sender, *recipients])

    return keep


def settings_record(enabled: bool, pattern: str | None) -> tuple[str, str]:
    """The settings as recorded (canonical JSON) and their digest."""
    text = json.dumps({"enabled": enabled, "filter": pattern}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], text


class ArchiveSink:
    """Sink for ``run_consumer`` writing archive and quarantine maildirs."""

    name = "archive"
    needs_raw = True

    def __init__(
        self,
        archive_dir: Path,
        quarantine_dir: Path,
        settings: ArchiveSettings | None = None,
        *,
        fsync_workers: int = 16,
        position_key: str | None = None,
        tombstoned: Callable[[Sequence[str]], set[str]] | None = None,
    ) -> None:
        # event ids -> those whose stored copy was deleted lawfully (never written again)
        self.tombstoned = tombstoned
        self.archive_dir = Path(archive_dir)
        # One checkpoint per log source: the journal's, or one per Kafka partition
        # (``kafka.<topic>.<partition>``), each replaced atomically on its own.
        self._position_file = POSITION_FILE + (f".{_safe_key(position_key)}" if position_key else "")
        self._decisions_file = DECISIONS_FILE + (f".{_safe_key(position_key)}" if position_key
                                                  else "")
        self.quarantine_dir = Path(quarantine_dir)
        settings = settings or ArchiveSettings()
        self.archive_enabled = settings.enabled
        self._keep = archive_rule(settings.enabled, settings.filter)
        self._settings = settings_record(settings.enabled, settings.filter)
        self._settings_written = False
        make_dirs(self.archive_dir)
        self._archive: Maildir | None = None
        self._quarantine: dict[str, Maildir] = {}
        self._position: int | None = None
        self._executor = (
            ThreadPoolExecutor(max_workers=fsync_workers, thread_name_prefix="archive-fsync")
            if fsync_workers > 1
            else None
        )

    # -- position -------------------------------------------------------------

    @property
    def position_path(self) -> Path:
        return self.archive_dir / self._position_file

    def position(self) -> int:
        if self._position is None:
            try:
                text = self.position_path.read_text("ascii").strip()
            except FileNotFoundError:
                self._position = 0
            else:
                self._position = int(text)
        return self._position

    def set_position(self, position: int) -> None:
        """Replace the checkpoint atomically: a crash leaves the old or the new value."""
        if position < 0:
            raise ValueError("position must be >= 0")
        tmp = self.archive_dir / (self._position_file + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
        try:
            os.write(fd, f"{position}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.position_path)
        fsync_dir(self.archive_dir)
        self._position = position

    # -- applying -------------------------------------------------------------

    def apply(self, records: Sequence[LogRecord], position: int) -> None:
        # Writes are collected first so that a queue_failed later in the same
        # batch cancels its message before anything touches the disk.
        pending: dict[tuple[Path, str], tuple[Maildir, str, MessageScanned]] = {}
        removed_from: list[Maildir] = []
        decided: list[tuple[str, bool]] = []
        for record in records:
            event = record.event
            if isinstance(event, MessageScanned):
                if event.action in (Action.DELIVER, Action.DROP):
                    decided.append((event.event_id, self._archives(event)))
                target = self._target(event)
                if target is None:
                    continue
                if not event.raw_message and event.size:
                    raise ValueError(
                        f"event {event.event_id} has no raw message: read the log with_raw=True"
                    )
                name = message_name(event)
                pending[(target.path, name)] = (target, name, event)
            elif isinstance(event, QueueFailed):
                ref = event.ref_event_id
                for key in [k for k, v in pending.items() if v[2].event_id == ref]:
                    del pending[key]
                if self._remove_archived(ref):
                    removed_from.append(self._archive_maildir())
            elif isinstance(event, MessageDeleted):
                ref = event.ref_event_id
                for key in [k for k, v in pending.items() if v[2].event_id == ref]:
                    del pending[key]
                removed_from.extend(self._remove_deleted(event))
        if pending and self.tombstoned is not None:
            gone = self.tombstoned(sorted({v[2].event_id for v in pending.values()}))
            for key in [k for k, v in pending.items() if v[2].event_id in gone]:
                del pending[key]
        # Built lazily: only one archived copy of a large message is in memory at a time.
        deliver_batch(
            ((m, n, archived_message(e)) for m, n, e in pending.values()), self._executor
        )
        for maildir in removed_from:
            maildir.sync()
        # after the files (a crash in between re-decides on replay), before the checkpoint
        self._record_decisions(decided)
        self.set_position(position)

    @property
    def decisions_path(self) -> Path:
        return self.archive_dir / self._decisions_file

    def _record_decisions(self, decided: list[tuple[str, bool]]) -> None:
        if not decided:
            return
        digest, text = self._settings
        lines = [] if self._settings_written else [f"S {digest} {text}\n"]
        lines += [f"D {event_id} {int(kept)} {digest}\n" for event_id, kept in decided]
        fd = os.open(self.decisions_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            data = "".join(lines).encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._settings_written = True

    def _target(self, event: MessageScanned) -> Maildir | None:
        if event.action == Action.QUARANTINE:
            return self._quarantine_maildir(event.quarantine_folder or "policy")
        if event.action in (Action.DELIVER, Action.DROP) and self._archives(event):
            return self._archive_maildir()
        return None  # reject / tempfail were never accepted; filtered-out mail is not kept

    def _archives(self, event: MessageScanned) -> bool:
        return self._keep(event.envelope.sender, event.envelope.recipients)

    def _archive_maildir(self) -> Maildir:
        if self._archive is None:
            self._archive = Maildir(self.archive_dir)
        return self._archive

    def _quarantine_maildir(self, folder: str) -> Maildir:
        if folder not in QUARANTINE_FOLDERS:
            raise ValueError(f"unknown quarantine folder {folder!r}")
        maildir = self._quarantine.get(folder)
        if maildir is None:
            maildir = self._quarantine[folder] = Maildir(self.quarantine_dir / folder)
        return maildir

    def _remove_archived(self, ref_event_id: str) -> bool:
        """Remove the archived copy of a message qmail-queue did not accept.

        The sender will retry, and the retry gets its own event and copy; the
        failed attempt must not appear in the archive as if it were delivered.
        The name holds the event time, which a queue_failed event does not
        carry: the UUIDv7 time finds it without a listing in the usual case.
        """
        if not self.archive_enabled:
            return False
        return self._remove_named(self._archive_maildir(), ref_event_id)

    def _remove_deleted(self, event: MessageDeleted) -> list[Maildir]:
        """Remove what a replay wrote back of a copy a tombstone records as deleted."""
        touched = []
        for location in filter(None, event.location.split(",")):
            if location == "archive":
                maildir = self._archive_maildir()
            elif location.startswith("quarantine/") and location[11:] in QUARANTINE_FOLDERS:
                maildir = self._quarantine_maildir(location[11:])
            else:
                log.warning("message.deleted %s names an unknown location %r", event.event_id, location)
                continue
            if self._remove_named(maildir, event.ref_event_id):
                touched.append(maildir)
        return touched

    def _remove_named(self, maildir: Maildir, ref_event_id: str) -> bool:
        suffix = f".{ref_event_id}{SUFFIX}"
        try:
            check_name("x" + suffix)
        except ValueError:
            log.warning("an event refers to an unusable event id %r", ref_event_id)
            return False
        names: list[str] = []
        try:
            t = int(uuid7_time(ref_event_id))
        except ValueError:
            t = None
        if t is not None:
            for s in range(t - _ID_TIME_SLACK, t + _ID_TIME_SLACK + 1):
                if maildir.exists(f"{s}{suffix}"):
                    names.append(f"{s}{suffix}")
        if not names:
            names = maildir.find(lambda n: n.endswith(suffix))
        removed = False
        for n in names:
            removed = maildir.remove(n) or removed
        return removed

    def close(self) -> None:
        close = getattr(self.tombstoned, "close", None)
        if close is not None:
            close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
