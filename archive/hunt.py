"""The archive maildir and the quarantine maildirs as a DLP retro-hunt source (compliance.hunt).

Stored copies, envelope taken from the block at the bottom of each file
(``archive.copies.split_copy``); a message in both maildirs is read once. It lives here, not
beside the other sources in ``compliance.hunt``, because it reads ``archive.copies`` (one
layer up).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from archive.copies import MaildirCopies, ParsedCopy, open_copy, received_of, split_copy
from compliance.copystore import CopyError
from compliance.hunt import HuntFilter, Item, Stored, Unreadable, same
from scanners.direction import direction


def archive_source(archive_dir: Path, quarantine_dir: Path,
                   filt: HuntFilter | None = None) -> tuple[int, Iterator[Item]]:
    """Stored copies in the archive and quarantine maildirs (a message in both is read once).

    Files are opened without following symlinks (``archive.copies.open_copy``): a link planted
    in a maildir is reported unreadable, whatever it points at is never read. The filter is
    applied as early as the copy allows: the received time from the file name (the archive
    consumer names copies ``<unix time>.<event id>``) before the file is opened, then the
    envelope block from the file's tail before the whole message is read."""
    copies = [c for c in MaildirCopies(archive_dir, quarantine_dir).scan()]

    def items() -> Iterator[Item]:
        seen: set[str] = set()
        for copy in copies:
            if filt is not None and (when := received_of(copy.path.name)) is not None \
                    and not filt.in_time(when):
                yield Unreadable("", "")  # outside the dates: not even opened
                continue
            try:
                stored = _read_stored(copy.path, copy.event_id, filt)
            except (OSError, CopyError) as exc:
                yield Unreadable(str(copy.path), (exc.strerror if isinstance(exc, OSError) and exc.strerror
                                                  else str(exc))[:200])
                continue
            if stored is None:
                yield Unreadable("", "")  # the envelope is outside the selection: message not read
                continue
            if stored.event_id in seen:
                yield Unreadable("", "")  # the same message in two maildirs: counted once
                continue
            seen.add(stored.event_id)
            yield stored

    return len(copies), items()


TAIL = 64 * 1024  # bytes read first from a stored copy: its envelope block is at the end


def _read_stored(path: Path, name_event_id: str, filt: HuntFilter | None) -> Stored | None:
    """The copy at ``path`` (no symlinks), or None when its envelope is outside ``filt``
    (then only the last TAIL bytes were read)."""
    with open_copy(path) as f:
        size = os.fstat(f.fileno()).st_size
        if filt is not None and size > TAIL:
            f.seek(size - TAIL)
            try:
                tail = split_copy(f.read())
            except CopyError:
                tail = None  # a block longer than the tail (thousands of recipients): read it all
            if tail is not None and not _envelope_matches(filt, tail):
                return None
            f.seek(0)
        parsed = split_copy(f.read())
    if filt is not None and not _envelope_matches(filt, parsed):
        return None
    ip, relay = _client(parsed.client)
    message = parsed.candidates[-1]  # without the separator line archived_message() added
    return Stored(parsed.event_id or name_event_id, _received(parsed.received), parsed.envelope_from or "",
                  parsed.envelope_to, relay, ip, functools.partial(same, message))


def _envelope_matches(filt: HuntFilter, parsed: ParsedCopy) -> bool:
    ip, relay = _client(parsed.client)
    return filt.matches(_received(parsed.received), parsed.envelope_from or "", parsed.envelope_to,
                        direction(relay, ip))


def _client(line: str | None) -> tuple[str | None, bool]:
    """``X-qscan-Client: 192.0.2.10 host.example.com relay=yes`` -> (ip, relay)."""
    words = (line or "").split()
    ip = words[0] if words and words[0] != "local" else None
    return ip, "relay=yes" in words


def _received(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
