"""Bounded unpacking of attachments, in memory: archives (libarchive), TNEF, uuencode.

Nothing here touches the filesystem: libarchive reads from the bytes in memory
and members come back as bytes, so no name taken from mail ever becomes a path.
Every byte expanded is charged to one per-message :class:`Budget` (members,
total bytes, expansion ratio per archive, wall-clock time); the first time a
limit is hit it becomes a finding, and unpacking stops where it stands.

libarchive is given only the formats and filters named here, chosen by exact
signature (see ``filetype.container_kind``): never ``all``, which would let a
text file be read as an mtree spec naming local files, or hand a stream to an
external lrzip/lzop program.

A compressed stream is identified by what it holds, not by what libarchive bids
on first: it is opened as one raw stream, and only if its first bytes are a tar
header is it read as a tar (a tar reader takes a block of zeros for the end of
an empty archive, so an ISO, or anything else led by zeros, would "read" as a
tar with nothing in it). Nothing is skipped silently: a container that cannot
be read is ``archive-unreadable``; one that reads cleanly but yields no file,
or that nothing here can open (UDF, VHD, DMG, disk images), is ``unscannable``.
"""

from __future__ import annotations

import binascii
import ctypes
import functools
import hashlib
import itertools
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scanners.internal.checks import CheckHit
from scanners.mime.filetype import MAGIC_HEAD, SFX_WINDOW, UNOPENABLE, is_tar, zip_at_end

MiB = 1024 * 1024
BLOCK = 64 * 1024

_FORMATS: dict[str, tuple[str, ...]] = {
    "zip": ("zip",),
    "7z": ("7zip",),
    "rar": ("rar", "rar5"),
    "tar": ("tar",),
    "cab": ("cab",),
    "iso": ("iso9660",),
    "raw": ("raw",),  # one compressed stream, read as it is (then as a tar if it holds one)
}
_FILTERS = ("gzip", "bzip2", "xz", "lzma", "zstd")
_COMPRESSED_SUFFIXES = (
    (".tgz", ".tar"), (".tbz2", ".tar"), (".tbz", ".tar"), (".txz", ".tar"),
    (".gz", ""), (".bz2", ""), (".xz", ""), (".lzma", ""), (".zst", ""),
)
_UU_BEGIN = re.compile(rb"^begin[ \t]+([0-7]{3,4})[ \t]+([^\r\n]+?)[ \t]*\r?$", re.M)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    max_depth: int = 10  # archives within archives (a MIME part's members are at depth 1)
    max_members: int = 1000  # members across the whole message
    max_total_bytes: int = 200 * MiB  # expanded bytes across the whole message
    max_ratio: float = 100.0  # expanded / compressed bytes of one archive ...
    ratio_floor: int = 1 * MiB  # ... enforced once an archive has expanded past this
    max_time: float = 10.0  # seconds of unpacking per message


class UnpackStop(Exception):
    """A message-wide limit was hit: stop all unpacking (the hit is already recorded)."""


@dataclass
class Budget:
    """What one message may still expand; records the first hit of each limit."""

    limits: UnpackLimits
    started: float = field(default_factory=time.monotonic)
    members: int = 0
    total: int = 0
    hits: list[CheckHit] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def hit(self, check: str, path: str, detail: str) -> None:
        if check not in self._seen:
            self._seen.add(check)
            self.hits.append(CheckHit(check, path, detail))

    def check_time(self, path: str) -> None:
        if time.monotonic() - self.started > self.limits.max_time:
            self.hit("unpack-time", path, f"unpacking took more than {self.limits.max_time:g} s")
            raise UnpackStop

    def add_member(self, path: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            self.hit("unpack-members", path, f"more than {self.limits.max_members} members")
            raise UnpackStop

    def add_bytes(self, n: int, path: str) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            self.hit("unpack-bytes", path, f"more than {self.limits.max_total_bytes} bytes expanded")
            raise UnpackStop


class HardDeadline(BaseException):
    """Raised by :func:`hard_deadline`'s alarm. A BaseException, so that a library's
    ``except Exception`` (pypdf has many) cannot swallow it and carry on."""


class _Alarm:
    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True

    def __call__(self, signum: int, frame: object) -> None:
        if self.active:
            raise HardDeadline


@contextmanager
def hard_deadline(seconds: float) -> Iterator[bool]:
    """Interrupt the code inside after ``seconds``, wherever it is, with :class:`HardDeadline`.

    Why an alarm: document and archive libraries (pypdf above all) spend their time in
    loops of their own that no caller-side check between pages or members can reach; a
    one-page PDF can hold millions of content-stream operators. ``setitimer`` costs two
    system calls per document set, nothing while it runs, and its signal handler raises
    between any two bytecodes, so pure-Python libraries are stopped within milliseconds
    and C code (zlib, expat, libarchive) as soon as its current call returns (each such
    call is bounded by the input sizes). A child process per document would also bound
    memory, but costs a fork of a warm worker per attachment; memory is bounded here by
    the text counters inside the readers instead. The timer repeats every 50 ms, in case a
    bare ``except:`` swallows the first signal.

    Signals reach only the main thread: elsewhere (or on a platform without
    ``setitimer``) this yields False and the callers' own between-step checks are the
    only bound. A timer already armed by an outer caller is kept: the inner deadline is
    the earlier of the two, and the outer one is re-armed, with its time left (or fired
    at once if that ran out), on the way out.
    """
    if (not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread()
            or seconds == float("inf")):
        yield False
        return
    alarm = _Alarm()
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, 0)
    outer_handler = signal.signal(signal.SIGALRM, alarm)
    started = time.monotonic()
    delay = max(seconds, 1e-3) if not outer_delay else max(min(seconds, outer_delay), 1e-3)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay, 0.05)
        yield True
    finally:
        # first, and with no call before it (CPython runs handlers only at calls and loop
        # jumps): a signal arriving from here on raises nothing
        alarm.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler if outer_handler is not None else signal.SIG_DFL)
        if outer_delay:
            left = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), outer_interval)


@dataclass(slots=True)
class Member:
    name: str  # cleaned inner path, e.g. 'docs/a.exe'
    data: bytes  # all of it when `complete`, else the first MAGIC_HEAD bytes
    size: int
    sha256: str
    complete: bool
    encrypted: bool = False
    zip_at_end: bool = False  # not kept whole, yet a zip's end record closes it (a prefixed zip)


def clean_name(name: str | bytes | None, fallback: str = "unnamed") -> str:
    """A member name fit for a part path and a log line: no control characters, bounded."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not name:
        return fallback
    name = _CONTROL.sub("?", name).lstrip("/")
    parts = [p[:MAX_NAME] for p in name.split("/") if p not in ("", ".")]
    out = "/".join(parts)[:1024]
    return out or fallback


def decompressed_name(container: str) -> str:
    low = container.lower()
    for suffix, replacement in _COMPRESSED_SUFFIXES:
        if low.endswith(suffix) and len(container) > len(suffix):
            return container[: -len(suffix)] + replacement
    return "data"


class _Reader:
    """Reads one member's blocks: hash, count, charge the budget, keep what is needed.

    The first ``SFX_WINDOW`` bytes are buffered before deciding (``keep_all``) whether to
    keep the member whole, so a container behind a prefix of up to that size is seen;
    a member not kept keeps its head, and its last two blocks are looked at for a zip's
    end record (a zip behind a longer prefix), which is then flagged rather than missed.
    """

    def __init__(self, budget: Budget, path: str, archive_size: int, archive_total: list[int],
                 keep_all: Callable[[bytes], bool]) -> None:
        self.budget = budget
        self.path = path
        self.archive_size = archive_size
        self.archive_total = archive_total  # shared across the archive's members: [bytes]
        self.keep_all = keep_all
        self.zip_at_end = False

    def read(self, blocks: Iterator[bytes]) -> tuple[bytes, int, str, bool]:
        """(data, size, sha256, complete); raises _RatioHit or UnpackStop."""
        lim = self.budget.limits
        digest = hashlib.sha256()
        buf = bytearray()
        size = 0
        keep: bool | None = None
        tail = bytearray()
        allowed = max(lim.max_ratio * self.archive_size, lim.ratio_floor)
        for block in blocks:
            n = len(block)
            size += n
            digest.update(block)
            self.archive_total[0] += n
            if self.archive_total[0] > allowed:
                self.budget.hit("unpack-ratio", self.path,
                                f"expanded past {lim.max_ratio:g}x its {self.archive_size} bytes")
                raise _RatioHit
            self.budget.add_bytes(n, self.path)
            self.budget.check_time(self.path)
            if keep is None:
                buf += block
                if len(buf) >= SFX_WINDOW:
                    keep = self.keep_all(bytes(buf))
                    if not keep:
                        del buf[MAGIC_HEAD:]
            elif keep:
                buf += block
            else:
                tail += block
                if len(tail) > 4 * BLOCK:
                    del tail[: -2 * BLOCK]
        complete = keep is not False
        if not complete:
            self.zip_at_end = zip_at_end(bytes(tail), whole=False)
        data = bytes(buf)
        return data, size, digest.hexdigest(), complete


class _RatioHit(Exception):
    """This archive expanded past its ratio: stop reading it (the hit is recorded)."""


# -- libarchive ---------------------------------------------------------------------------------
_LA: Any = None


def _libarchive() -> Any:
    """libarchive-c's ffi, with the entry-encryption call registered once."""
    global _LA
    if _LA is None:
        # libarchive-c logs optional features the system library lacks at INFO on import
        logging.getLogger("libarchive").setLevel(logging.WARNING)
        from libarchive import ffi

        if not hasattr(ffi, "entry_is_encrypted"):
            ffi.ffi("entry_is_encrypted", [ffi.c_archive_entry_p], ctypes.c_int)
        _LA = ffi
    return _LA


@contextmanager
def _open(data: bytes, kind: str) -> Iterator[Any]:
    from libarchive.read import ArchiveRead

    ffi = _libarchive()
    archive_p = ffi.read_new()
    try:
        for name in _FILTERS:
            if name in ffi.READ_FILTERS:
                ffi.get_read_filter_function(name)(archive_p)
        for name in _FORMATS[kind]:
            ffi.get_read_format_function(name)(archive_p)
        # libarchive reads the bytes in place (no copy); `data` outlives the reader
        ffi.read_open_memory(archive_p, ctypes.cast(data, ctypes.c_void_p), len(data))  # type: ignore[arg-type]
        yield ArchiveRead(archive_p)
    finally:
        ffi.read_free(archive_p)


def _encrypted_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "encrypt" in text or "passphrase" in text or "password" in text


def archive_members(data: bytes, kind: str, container: str, path: str, budget: Budget,
                    keep_all: Callable[[bytes, str], bool]) -> Iterator[Member]:
    """Members of one archive in order, charged to the budget. Raises UnpackStop.

    ``kind`` is a ``filetype.container_kind``; an :data:`UNOPENABLE` kind is recorded as
    ``unscannable``. An archive that fails is ``archive-unreadable`` (members read before the
    failure are kept); one that reads cleanly and holds no file is ``unscannable``."""
    if kind in UNOPENABLE:
        budget.hit("unscannable", path, f"{kind}: qscan cannot look inside this kind of image")
        return
    if kind == "compressed":
        yield from _stream_members(data, container, path, budget, keep_all)
        return
    ffi = _libarchive()
    total = [0]
    files = 0
    try:
        with _open(data, kind) as archive:
            for entry in archive:
                budget.check_time(path)
                if not entry.isreg:
                    continue
                files += 1
                name = clean_name(entry.pathname)
                member_path = f"{path}!/{name}"
                budget.add_member(member_path)
                encrypted = bool(ffi.entry_is_encrypted(entry._entry_p))
                if encrypted:
                    budget.hit("password-protected-archive", path, f"encrypted member {name}")
                    size = ffi.entry_size(entry._entry_p) if ffi.entry_size_is_set(entry._entry_p) else 0
                    yield Member(name, b"", max(0, size), "", complete=False, encrypted=True)
                    continue
                keep = functools.partial(_keep_named, keep_all, name)
                reader = _Reader(budget, path, len(data), total, keep)
                member_data, size, sha, complete = reader.read(entry.get_blocks(BLOCK))
                yield Member(name, member_data, size, sha, complete, zip_at_end=reader.zip_at_end)
    except _RatioHit:
        return
    except UnpackStop:
        raise
    except Exception as exc:  # libarchive's ArchiveError, or anything odd in a hostile archive
        _failed(budget, path, kind, exc)
        return
    if files == 0:
        budget.hit("unscannable", path, f"{kind}: read, but no file found in it")


def _failed(budget: Budget, path: str, kind: str, exc: Exception) -> None:
    if _encrypted_error(exc):
        budget.hit("password-protected-archive", path, "encrypted archive")
    else:
        budget.hit("archive-unreadable", path, f"{kind}: {str(exc)[:200]}")


def _stream_members(data: bytes, container: str, path: str, budget: Budget,
                    keep_all: Callable[[bytes, str], bool]) -> Iterator[Member]:
    """One gzip/bzip2/xz/lzma/zstd stream: a tar's members if it holds a tar, else the one
    file it holds (named after the container, ``x.iso.gz`` -> ``x.iso``), whatever that
    file starts with; its bytes are charged like any member's (ratio, total, time)."""
    name = clean_name(decompressed_name(container))
    try:
        with _open(data, "raw") as archive:
            for entry in archive:
                blocks = entry.get_blocks(BLOCK)
                first = bytearray()
                for block in blocks:
                    first += block
                    if len(first) >= 512:
                        break
                if is_tar(bytes(first)):
                    break
                budget.add_member(f"{path}!/{name}")
                keep = functools.partial(_keep_named, keep_all, name)
                reader = _Reader(budget, path, len(data), [0], keep)
                member_data, size, sha, complete = reader.read(itertools.chain((bytes(first),), blocks))
                yield Member(name, member_data, size, sha, complete, zip_at_end=reader.zip_at_end)
                return
            else:  # the raw reader always yields its one entry; nothing came
                budget.hit("unscannable", path, "compressed stream: nothing in it")
                return
    except _RatioHit:
        return
    except UnpackStop:
        raise
    except Exception as exc:
        _failed(budget, path, "compressed", exc)
        return
    yield from archive_members(data, "tar", container, path, budget, keep_all)


def _keep_named(keep_all: Callable[[bytes, str], bool], name: str, head: bytes) -> bool:
    return keep_all(head, name)


# -- TNEF -----------------------------------------------------------------------------------------
def tnef_members(data: bytes, path: str, budget: Budget,
                 keep_all: Callable[[bytes, str], bool]) -> Iterator[Member]:
    """Attachments of a TNEF (winmail.dat) blob."""
    try:
        from tnefparse import TNEF

        tnef = TNEF(data, do_checksum=False)
        attachments = list(tnef.attachments)
    except Exception as exc:
        budget.hit("archive-unreadable", path, f"tnef: {str(exc)[:200]}")
        return
    for i, att in enumerate(attachments, 1):
        budget.check_time(path)
        try:
            raw_name = att.long_filename() or att.name
        except Exception:
            raw_name = None
        name = clean_name(raw_name, f"attachment-{i}")
        payload = att.data if isinstance(att.data, bytes) else b""
        yield from _whole_member(payload, name, path, budget, keep_all)


# -- uuencode -------------------------------------------------------------------------------------
def has_uuencode(text: bytes) -> bool:
    return b"begin " in text and _UU_BEGIN.search(text) is not None


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # sloppy encoders pad lines; decode only the length the line announces
        n = (((line[0] - 32) & 63) * 4 + 5) // 3 if line else 0
        try:
            return binascii.a2b_uu(line[:n])
        except binascii.Error:
            return b""


def uu_members(text: bytes, path: str, budget: Budget,
               keep_all: Callable[[bytes, str], bool]) -> Iterator[Member]:
    """Files uuencoded inside a text part (``begin 644 name`` ... ``end``)."""
    lines = 0
    for m in _UU_BEGIN.finditer(text):
        budget.check_time(path)
        name = clean_name(m.group(2).decode("utf-8", "replace"))
        out = bytearray()
        pos = m.end() + 1
        ended = False
        while pos < len(text):
            nl = text.find(b"\n", pos)
            line_end = len(text) if nl < 0 else nl
            line = text[pos:line_end].rstrip(b"\r")
            pos = line_end + 1
            if line.strip() == b"end":
                ended = True
                break
            if not line or line in (b"`", b" "):
                continue
            chunk = _uu_line(line)
            out += chunk
            lines += 1
            if lines % 4096 == 0:
                budget.check_time(path)
            if len(out) > budget.limits.max_total_bytes:
                break
        if not ended and not out:
            continue
        yield from _whole_member(bytes(out), name, path, budget, keep_all)


def _whole_member(payload: bytes, name: str, path: str, budget: Budget,
                  keep_all: Callable[[bytes, str], bool]) -> Iterator[Member]:
    member_path = f"{path}!/{name}"
    budget.add_member(member_path)
    budget.add_bytes(len(payload), member_path)
    complete = keep_all(payload[:MAGIC_HEAD], name)
    yield Member(
        name, payload if complete else payload[:MAGIC_HEAD], len(payload),
        hashlib.sha256(payload).hexdigest(), complete,
    )
