"""Reading, checking and deleting the stored copies in the archive and quarantine maildirs.

A stored copy is the message as handed to qmail-queue followed by the envelope
block (archive.envelope_block). ``split_copy`` takes a copy apart again - a
pure function over bytes - so verification can hash the message part against
the SQL row's ``raw_sha256`` and compare the block with the row's envelope,
and exports can hand out the message exactly as it was queued.

Implements ``compliance.copystore.CopyStore`` (the composition root wires it).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from archive.consumer import (
    DECISIONS_FILE,
    SUFFIX,
    ArchiveSettings,
    archive_rule,
    message_name,
    settings_record,
)
from archive.envelope_block import BEGIN, END
from archive.maildir import fsync_dir
from compliance.copystore import ArchiveDecision, CopyError, MessageFacts, StoredCopy
from ingest.event import QUARANTINE_FOLDERS, MessageScanned

_NAME = re.compile(r"^(\d+)\.([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12})" + re.escape(SUFFIX) + r"$")
_BEGIN = BEGIN.encode()
_END = END.encode()


class _NameKey(NamedTuple):
    time: datetime
    event_id: str


def copy_name(event_id: str, received_at: datetime) -> str:
    """The maildir name the archive consumer gave this message (its own function decides)."""
    return message_name(cast(MessageScanned, _NameKey(received_at, event_id)))


def event_id_of(name: str) -> str:
    """The event id in a copy's file name ('' when it is not a qscan copy)."""
    m = _NAME.match(name.split(":", 1)[0])
    return m.group(2).lower() if m else ""


# -- the copy format (sans-I/O) -------------------------------------------------
@dataclass
class ParsedCopy:
    """A stored copy taken apart: the message (two readings, see ``candidates``) and block."""

    candidates: list[bytes]  # the message with and without the separator line ending
    envelope_from: str | None = None
    envelope_to: list[str] = field(default_factory=list)
    client: str | None = None
    event_id: str | None = None
    received: str | None = None


def split_copy(data: bytes) -> ParsedCopy:
    """Find the last envelope block (ours: mail may contain a fake one above it)."""
    at = len(data)
    while True:
        at = data.rfind(_BEGIN, 0, at)
        if at < 0:
            raise CopyError("no envelope block")
        if at == 0 or data[at - 1 : at] == b"\n":
            break
    block = data[at:]
    eol = b"\r\n" if block[len(_BEGIN) : len(_BEGIN) + 2] == b"\r\n" else b"\n"
    lines = block.split(eol)
    if lines[-1] != b"" or lines[-2] != _END:
        raise CopyError("the envelope block is not closed at the end of the file")
    message = data[:at]
    # archived_message() puts a line ending before the block only when the message
    # did not end with one: both readings are offered, the hash decides.
    candidates = [message]
    if message.endswith(eol) and not message[: -len(eol)].endswith(b"\n"):
        candidates.append(message[: -len(eol)])
    parsed = ParsedCopy(candidates)
    for raw_line in lines[1:-2]:
        line = raw_line.decode("utf-8", "replace")
        name, _, value = line.partition(": ")
        if name == "X-Envelope-From":
            parsed.envelope_from = _unbracket(value)
        elif name == "X-Envelope-To":
            parsed.envelope_to.append(_unbracket(value))
        elif name == "X-qscan-Client":
            parsed.client = value
        elif name == "X-qscan-Event-ID":
            parsed.event_id = value
        elif name == "X-qscan-Received":
            parsed.received = value
        else:
            raise CopyError(f"unexpected line in the envelope block: {line[:60]!r}")
    return parsed


def _unbracket(value: str) -> str:
    return value[1:-1] if value.startswith("<") and value.endswith(">") else value


def _plain(value: str) -> str:
    """An address without anything either cleaning step may have removed or replaced."""
    return "".join(c for c in value if not c.isspace() and unicodedata.category(c)[0] != "C"
                   and unicodedata.category(c) not in ("Zl", "Zp"))


def same_address(in_block: str, in_sql: str) -> bool:
    """The block and SQL clean hostile addresses differently; SQL may also have cut it short."""
    a, b = _plain(in_block), _plain(in_sql)
    if b.endswith("...") and len(in_sql) >= 300:
        return a.startswith(b[:-3])
    return a == b


def check_copy(data: bytes, facts: MessageFacts) -> str | None:
    """None when ``data`` is an intact copy of the message ``facts`` describes."""
    try:
        parsed = split_copy(data)
    except CopyError as exc:
        return str(exc)
    if facts.raw_sha256 is None:
        return "SQL recorded no hash for this message, yet a copy exists"
    if not any(hashlib.sha256(c).hexdigest() == facts.raw_sha256 for c in parsed.candidates):
        return "the message does not hash to the recorded raw_sha256"
    if parsed.event_id != facts.event_id:
        return f"the envelope block names event {parsed.event_id!r}"
    received = facts.received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if parsed.received != received:
        return f"the envelope block says received {parsed.received!r}, SQL {received!r}"
    if parsed.envelope_from is None or not same_address(parsed.envelope_from, facts.sender):
        return "the envelope sender in the block differs from SQL"
    if len(parsed.envelope_to) != len(facts.recipients) or not all(
            same_address(a, b) for a, b in zip(parsed.envelope_to, facts.recipients, strict=True)):
        return "the envelope recipients in the block differ from SQL"
    return None


def message_of(data: bytes, raw_sha256: str | None) -> bytes:
    """The message part of a copy, proven by its hash."""
    parsed = split_copy(data)
    for candidate in parsed.candidates:
        if hashlib.sha256(candidate).hexdigest() == raw_sha256:
            return candidate
    raise CopyError("the stored copy does not hash to the recorded raw_sha256")


# -- the maildirs ---------------------------------------------------------------
def archive_predicate(settings: ArchiveSettings) -> Callable[[str, list[str]], bool]:
    """Whether the archive settings keep a message (ArchiveSink's rule, for SQL rows)."""
    return archive_rule(settings.enabled, settings.filter)


# -- the recorded archive decisions (archive.consumer writes them) --------------
def archive_judge(decisions: Mapping[str, ArchiveDecision],
                  today: Callable[[str, list[str]], bool]) -> Callable[[str, str, list[str]], bool]:
    """Whether a message should have an archive copy: ``(event id, sender, recipients)``.

    Its recorded decision (``MaildirCopies.archive_decisions``: archived once means kept
    until a tombstone), never today's settings - except for messages handled before
    decisions were recorded, which ``today`` (``archive_predicate``) judges. The one
    rule retention, export and ``audit show`` judge archive copies by (verify reads the
    same decisions and also checks them against their recorded settings)."""

    def kept(event_id: str, sender: str, recipients: list[str]) -> bool:
        decision = decisions.get(event_id.lower())
        return decision.archived if decision is not None else today(sender, recipients)

    return kept


def parse_decisions(lines: Iterable[str], where: str
                    ) -> tuple[dict[str, list[tuple[bool, str]]], dict[str, tuple[bool, str | None]]]:
    """Decision lines by event id, and the recorded settings by digest (pure)."""
    decisions: dict[str, list[tuple[bool, str]]] = {}
    settings: dict[str, tuple[bool, str | None]] = {}
    for n, line in enumerate(lines, 1):
        parts = line.rstrip("\n").split(" ", 2)
        try:
            if parts[0] == "D" and len(parts) == 3:
                event_id, rest = parts[1], parts[2].split(" ")
                if len(rest) != 2 or rest[0] not in ("0", "1") or not event_id:
                    raise ValueError(line)
                decisions.setdefault(event_id.lower(), []).append((rest[0] == "1", rest[1]))
            elif parts[0] == "S" and len(parts) == 3:
                data = json.loads(parts[2])
                enabled, pattern = data["enabled"], data["filter"]
                if not isinstance(enabled, bool) or not (pattern is None
                                                          or isinstance(pattern, str)):
                    raise ValueError(line)
                if settings_record(enabled, pattern)[0] != parts[1]:
                    raise ValueError("the settings do not match their digest")
                settings[parts[1]] = (enabled, pattern)
            elif line.strip():
                raise ValueError(line)
        except (ValueError, KeyError, TypeError) as exc:
            raise CopyError(f"{where} line {n}: not a decision record ({exc})") from None
    return decisions, settings


class MaildirCopies:
    """``compliance.copystore.CopyStore`` over the archive and quarantine maildirs."""

    def __init__(self, archive_dir: Path, quarantine_dir: Path) -> None:
        self.maildirs = [("archive", Path(archive_dir))] + [
            (f"quarantine/{folder}", Path(quarantine_dir) / folder)
            for folder in sorted(QUARANTINE_FOLDERS)
        ]
        self._cur: dict[Path, dict[str, list[str]]] = {}
        self._settings: dict[str, tuple[bool, str | None]] = {}

    def scan(self) -> Iterator[StoredCopy]:
        for location, root in self.maildirs:
            for sub in ("new", "cur"):
                try:
                    entries = sorted(os.scandir(root / sub), key=lambda e: e.name)
                except FileNotFoundError:
                    continue
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                        yield StoredCopy(event_id_of(entry.name), location, Path(entry.path))

    def _cur_index(self, root: Path) -> dict[str, list[str]]:
        index = self._cur.get(root)
        if index is None:
            index = {}
            try:
                with os.scandir(root / "cur") as it:
                    for entry in it:
                        index.setdefault(entry.name.split(":", 1)[0], []).append(entry.name)
            except FileNotFoundError:
                pass
            self._cur[root] = index
        return index

    def locate(self, facts: MessageFacts) -> list[StoredCopy]:
        name = copy_name(facts.event_id, facts.received_at)
        found = []
        for location, root in self.maildirs:
            if os.path.lexists(root / "new" / name):
                found.append(StoredCopy(facts.event_id, location, root / "new" / name))
            for full in self._cur_index(root).get(name, []):
                found.append(StoredCopy(facts.event_id, location, root / "cur" / full))
        return found

    def check(self, copy: StoredCopy, facts: MessageFacts) -> str | None:
        try:
            data = read_copy(copy.path)
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        return check_copy(data, facts)

    def read_message(self, copy: StoredCopy, facts: MessageFacts) -> bytes:
        try:
            data = read_copy(copy.path)
        except OSError as exc:
            raise CopyError(f"{copy.path}: {exc.strerror or exc}") from exc
        return message_of(data, facts.raw_sha256)

    def _decision_files(self) -> list[Path]:
        root = self.maildirs[0][1]
        try:
            names = sorted(n for n in os.listdir(root) if n == DECISIONS_FILE
                           or n.startswith(DECISIONS_FILE + "."))
        except FileNotFoundError:
            names = []
        return [root / n for n in names]

    def archive_decision(self, event_id: str) -> ArchiveDecision | None:
        """One message's decisions: each record searched for its ``D EVENT_ID `` lines with
        ``mmap.find`` and only those parsed: 22 ms for a record of a million messages, where
        ``archive_decisions`` (every line parsed) takes 5.8 s."""
        wanted = event_id.lower()
        needle = f"D {wanted} ".encode()
        made: list[tuple[bool, str]] = []
        for path in self._decision_files():
            try:
                with open_copy(path) as f:
                    if os.fstat(f.fileno()).st_size == 0:
                        continue
                    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
                        lines = []
                        pos = text.find(needle)
                        while pos >= 0:
                            end = text.find(b"\n", pos)
                            if pos == 0 or text[pos - 1] == 0x0A:  # at a line's start
                                lines.append(text[pos:end if end >= 0 else len(text)].decode("utf-8"))
                            pos = text.find(needle, pos + 1)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise CopyError(f"{path}: unreadable: {exc}") from exc
            found, _ = parse_decisions(lines, str(path))
            made.extend(found.get(wanted, []))
        return ArchiveDecision(wanted, tuple(made)) if made else None

    def archive_decisions(self) -> dict[str, ArchiveDecision]:
        decisions: dict[str, list[tuple[bool, str]]] = {}
        self._settings = {}
        root = self.maildirs[0][1]
        for path in self._decision_files():
            name = path.name
            try:
                with open_copy(root / name) as f:
                    text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CopyError(f"{root / name}: unreadable: {exc}") from exc
            found, settings = parse_decisions(text.splitlines(), str(root / name))
            for event_id, made in found.items():
                decisions.setdefault(event_id, []).extend(made)
            self._settings.update(settings)
        return {e: ArchiveDecision(e, tuple(made)) for e, made in decisions.items()}

    def decision_trouble(self, decision: ArchiveDecision, sender: str,
                         recipients: list[str]) -> str | None:
        for kept, digest in decision.made:
            settings = self._settings.get(digest)
            if settings is None:
                return f"recorded under settings {digest} that the record does not hold"
            if archive_rule(*settings)(sender, recipients) != kept:
                return (f"recorded as {'archived' if kept else 'not archived'}, but the "
                        f"settings recorded with it ({settings_record(*settings)[1]}) "
                        f"{'do not keep' if kept else 'keep'} this message")
        return None

    def remove(self, copy: StoredCopy) -> bool:
        try:
            os.unlink(copy.path)
        except FileNotFoundError:
            return False
        fsync_dir(copy.path.parent)
        index = self._cur.get(copy.path.parent.parent)
        if index is not None and copy.path.parent.name == "cur":
            base = copy.path.name.split(":", 1)[0]
            index[base] = [n for n in index.get(base, []) if n != copy.path.name]
        return True


def open_copy(path: Path) -> BinaryIO:
    """A stored copy opened for reading. O_NOFOLLOW: a symlink planted in a maildir is refused
    (OSError, ELOOP), never followed - whatever it points at is not read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "rb")


def read_copy(path: Path) -> bytes:
    """A stored copy's bytes (``open_copy``: symlinks refused)."""
    with open_copy(path) as f:
        return f.read()


def received_of(name: str) -> datetime | None:
    """The received time a copy's file name starts with (the archive consumer names copies
    ``<unix time>.<event id>...``); None when it is not a qscan copy's name."""
    m = _NAME.match(name.split(":", 1)[0])
    return datetime.fromtimestamp(int(m.group(1)), UTC) if m else None
