"""What a message's own header says about who may be told of it (sans-I/O).

The event's header summary has From/To/Subject but not the headers that mark
list, bulk and automatic mail, so the notify consumer reads the header block of
the raw message — only the header block, and only for the few events that may
produce a notice. Everything here takes bytes and returns values; the journal
lookup lives in sink.py.

The loop guard ``X-qscan-Notification`` is *signed*: anyone can write the header
name, so only a mark that carries a valid HMAC-SHA256 (per-site key, ``MarkKey``)
over the notice's identity silences a message — and only when the message is
addressed to the person that notice was for. A forged or copied mark makes the
message ordinary mail; it never suppresses a virus or DLP alert.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from ingest.private import make_private_dirs

log = logging.getLogger(__name__)

MAX_HEADER_BLOCK = 256 * 1024
# Mailing-list managers (Mailman, ezmlm, Sympa, listserv) and bulk senders set these.
LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailing-List")
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
# Set (signed) on every notification qscan sends: a notice about a notice would loop.
NOTIFICATION_HEADER = "X-qscan-Notification"

MARK_VERSION = "qscan-notification/1"
KEY_BYTES = 32
# KIND/AUDIENCE; notice=TAG; mac=HMAC; event=ID (the event last: tools split on "event=").
_MARK = re.compile(r"(?P<kind>[a-z]{1,16})/(?P<audience>[a-z]{1,16})\s*;\s*notice=(?P<notice>[0-9a-f]{12})"
                   r"\s*;\s*mac=(?P<mac>[0-9a-f]{64})\s*;\s*event=(?P<event>[A-Za-z0-9._-]{1,64})")

_END = re.compile(rb"\r?\n\r?\n")
_COMMENT = re.compile(r"\([^()]*\)")


def header_block(raw: bytes, limit: int = MAX_HEADER_BLOCK) -> bytes:
    """The header block of ``raw`` (up to the first empty line), at most ``limit`` bytes."""
    head = raw[:limit]
    m = _END.search(head)
    return head[: m.start()] + b"\n" if m else head


def _token(value: str) -> str:
    """The first word of a structured value, comments and parameters removed, lowercased."""
    for _ in range(5):  # nested comments, bounded
        value = _COMMENT.sub(" ", value)
    return value.split(";", 1)[0].strip().lower().split(" ", 1)[0] if value.strip() else ""


class MarkKeyError(Exception):
    """The mark key file cannot be used; the message names the file and the fix."""


def notice_tag(recipient: str, kind: str) -> str:
    """A notice's identity within its event: (recipient, kind), as in its Message-ID."""
    return hashlib.sha256(f"{recipient.lower()}\0{kind}".encode()).hexdigest()[:12]


class MarkKey:
    """The per-site secret that makes ``X-qscan-Notification`` unforgeable (HMAC-SHA256).

    Every host whose notices may pass another host's scanner must share it: copy
    the file (mode 0600) to each, or point ``notify.mark_key`` at one shared path.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise MarkKeyError("a mark key needs at least 16 bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "MarkKey(<secret>)"

    @classmethod
    def generate(cls) -> MarkKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def load(cls, path: Path, *, create: bool = True) -> MarkKey:
        """Read the key file; create it (mode 0600, atomically) when missing and ``create``."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if not create:
                raise MarkKeyError(f"{path}: no notification mark key (run `qscan consume notify` "
                                   "once to create it, or copy it from another host)") from None
            return cls._create(path)
        except OSError as exc:
            raise MarkKeyError(f"{path}: cannot open the notification mark key: {exc}") from exc
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(4096)
        if mode & 0o077:
            raise MarkKeyError(f"{path}: the notification mark key is readable or writable by others "
                               f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
        try:
            return cls(bytes.fromhex(data.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError, MarkKeyError):
            raise MarkKeyError(f"{path}: not a notification mark key (expected one line of at least "
                               "32 hex digits; delete it to have a new one made)") from None

    @classmethod
    def _create(cls, path: Path) -> MarkKey:
        key = cls.generate()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            make_private_dirs(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key._secret.hex().encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic, and never replaces a key another process just made
            except FileExistsError:
                return cls.load(path, create=False)
        except OSError as exc:
            raise MarkKeyError(f"{path}: cannot create the notification mark key: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        log.info("created the notification mark key %s", path)
        return key

    def _mac(self, kind: str, audience: str, event_id: str, notice: str) -> str:
        data = "\0".join((MARK_VERSION, kind, audience, event_id, notice)).encode()
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def sign(self, kind: str, audience: str, event_id: str, recipient: str) -> str:
        """The ``X-qscan-Notification`` value of the notice (event, recipient, kind)."""
        tag = notice_tag(recipient, kind)
        return (f"{kind}/{audience}; notice={tag}; mac={self._mac(kind, audience, event_id, tag)}; "
                f"event={event_id}")

    def verify(self, value: str, recipients: Iterable[str]) -> bool:
        """True for a mark this site made, on a message addressed to that notice's recipient.

        The recipient check stops a mark copied from a notice someone received (a sender's
        notice goes outside) from silencing mail to anyone else.
        """
        m = _MARK.fullmatch(" ".join(value.split()))
        if m is None:
            return False
        good = self._mac(m["kind"], m["audience"], m["event"], m["notice"])
        if not hmac.compare_digest(good, m["mac"]):
            return False
        return any(notice_tag(r, m["kind"]) == m["notice"] for r in recipients)


@dataclass(frozen=True, slots=True)
class MailMarks:
    """The markers that decide whether the sender of a message may be answered."""

    list_headers: tuple[str, ...] = ()
    precedence: str = ""
    auto_submitted: str | None = None
    notification: bool = False  # a genuine, verified mark: one of our own notices
    forged_mark: bool = False  # the header is there but not genuine: ordinary mail

    @property
    def is_list(self) -> bool:
        return bool(self.list_headers)

    @property
    def is_bulk(self) -> bool:
        return self.precedence in BULK_PRECEDENCE

    @property
    def is_automatic(self) -> bool:
        """RFC 3834: any Auto-Submitted value but ``no`` (an empty one too) means no reply."""
        return self.auto_submitted is not None and self.auto_submitted != "no"

    def silence_reason(self) -> str | None:
        """Why the sender must not be answered, or None."""
        if self.notification:
            return f"a qscan notification ({NOTIFICATION_HEADER})"
        if self.is_list:
            return f"mailing-list mail ({self.list_headers[0]})"
        if self.is_bulk:
            return f"bulk mail (Precedence: {self.precedence})"
        if self.is_automatic:
            return f"automatic mail (Auto-Submitted: {self.auto_submitted or '(empty)'})"
        return None


def read_marks(block: bytes, genuine: Callable[[str], bool] | None = None) -> MailMarks:
    """Parse a header block (any bytes: malformed headers are read as far as they go).

    ``genuine`` says whether an ``X-qscan-Notification`` value is a valid mark
    (``MarkKey.verify``); without it no mark is trusted.
    """
    msg = BytesHeaderParser(policy=compat32).parsebytes(block)
    present = {str(k).lower() for k in msg}

    def first(name: str) -> str | None:
        value = msg.get(name)
        return None if value is None else str(value)

    auto = first("Auto-Submitted")
    values = [str(v) for v in msg.get_all(NOTIFICATION_HEADER) or []]
    verified = genuine is not None and any(genuine(v) for v in values)
    return MailMarks(
        list_headers=tuple(h for h in LIST_HEADERS if h.lower() in present),
        precedence=_token(first("Precedence") or ""),
        auto_submitted=None if auto is None else _token(auto),
        notification=verified,
        forged_mark=bool(values) and not verified,
    )
