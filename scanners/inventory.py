"""One walk over a message's contents: every MIME leaf, archive member, TNEF attachment,
uuencoded file and attached mail, listed once per message under one set of unpack limits.

The processor builds the :class:`Inventory` right after parsing and hands it to every
scanner in the scan context (``ScanContext.inventory``); the event's part list is read
from it too. Nothing else walks the MIME tree for payloads or opens an archive: the
internal scanner runs its checks over the items, the DLP extractor reads text from them.

What is listed (:class:`Item`, in the order a depth-first reader meets them):

* the leaves of the message (paths ``1``, ``2/1`` ... as the event numbers them), with
  their declared type, names, decoded bytes, size and SHA-256;
* the members of every container found in a leaf (zip, 7z, rar, tar, gz/bz2/xz/zstd
  streams, cab, iso, TNEF, uuencode in text parts), at ``<leaf>/<name>!/<member>``, and
  members of members, as deep as the limits allow (``2/a.zip!/b.zip!/c.exe``);
* the leaves of mail attached inside a container (a ``.eml`` member), at
  ``<member>!/1`` ...; its parsed tree is kept (:attr:`Inventory.messages`).

Bytes: a leaf's are all there; a member's are all there when it is "kept whole"
(a container, an executable, mail, or what a consumer asked for: :class:`Plan`), else
the first ``MAGIC_HEAD`` bytes (``complete`` False). Every member is hashed and counted
as it streams past.

Limits: one :class:`~scanners.internal.unpack.Budget` per message (depth, members, total
bytes, ratio per archive, time; a hard alarm bounds the libraries between checks). The
first hit of each limit is recorded in :attr:`Inventory.hits`, as are archives that cannot
be read or looked into; the consumers turn them into their findings and notes. A limit
that stops all unpacking leaves the rest of the message's leaves listed (the event lists
every part) but past :attr:`Inventory.reached`.

The builder never raises: an unexpected error is kept in :attr:`Inventory.error`.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from types import MappingProxyType
from typing import Final

from scanners.internal.checks import CheckHit
from scanners.internal.unpack import (
    Budget,
    HardDeadline,
    Member,
    UnpackLimits,
    UnpackStop,
    archive_members,
    hard_deadline,
    has_uuencode,
    tnef_members,
    uu_members,
)
from scanners.mime.filetype import (
    MAGIC_HEAD,
    UNOPENABLE,
    UNOPENABLE_SEARCH,
    Located,
    exec_kind,
    locate_container,
    magic_type,
    sniff,
)
from scanners.mime.parse import (
    decode_words,
    decoded_payload,
    part_children,
    part_content_type,
    part_filename,
)
from scanners.mime.parse import parse as parse_mime

log = logging.getLogger(__name__)

MAX_LEAVES = 1000  # leaves of one message (the top one, or one attached in a container)
MAX_DEPTH = 20  # MIME nesting

Keep = Callable[[bytes, str], bool]  # (first bytes, member name) -> keep the member whole


@dataclass(frozen=True, slots=True)
class Item:
    """One thing in the message: a MIME leaf or something unpacked from one."""

    path: str  # '2', '2/files.zip!/a.exe', '1!/notes.txt' (uuencoded), '3/m.zip!/x.eml!/2'
    source: str  # 'mime' (leaf of the message), 'mail' (leaf of attached mail), 'archive', 'tnef', 'uuencode'
    declared_type: str  # Content-Type; for members the type their name claims
    detected_type: str | None  # libmagic's, where it was looked at (see Plan.detect)
    filename: str | None  # the stdlib's filename (leaves) or the member's base name
    names: tuple[str, ...]  # every file name a leaf declares (RFC 2231/2047 decoded; when the
    # plan unpacks, else empty); members: (filename,)
    size: int
    sha256: str
    data: bytes  # decoded bytes: all of them when ``complete``, else the first MAGIC_HEAD
    depth: int  # 0: leaf of the message; members one more than their container
    parent: str = ""  # the container's label ('' for leaves of the message)
    complete: bool = True
    encrypted: bool = False  # an encrypted archive member (no bytes)
    zip_at_end: bool = False  # not kept whole, yet ends with a zip's end record
    names_broken: bool = False  # RFC 2231 parameters that cannot be combined
    attachment: bool = False  # named, or Content-Disposition: attachment
    sniffed_type: str | None = None  # the signature type (filetype.sniff) of a leaf
    mail: bool = False  # read as attached mail: its leaves follow at path + '!/'

    @property
    def label(self) -> str:
        """Where its members are listed: a leaf's path and file name, a member's path."""
        if self.source in ("mime", "mail"):
            return f"{self.path}/{self.names[0]}" if self.names else self.path
        return self.path

    @property
    def head(self) -> bytes:
        return self.data[:MAGIC_HEAD]


@dataclass(frozen=True, slots=True)
class Plan:
    """How a message is unpacked: the limits (None: not at all, the leaves are listed) and
    which members are kept whole besides containers, executables and mail. ``own_budget``:
    the consumer asking charges its own limits as it reads (DLP), so an inventory unpacked
    under other limits serves it."""

    limits: UnpackLimits | None = None
    keep: tuple[Keep, ...] = ()
    own_budget: bool = False

    def keeps(self, head: bytes, name: str) -> bool:
        if locate_container(head, name) is not None or head[:2] == b"MZ" or name.lower().endswith(".eml"):
            return True
        return any(k(head, name) for k in self.keep)

    def covers(self, other: Plan) -> bool:
        """Whether an inventory built with this plan serves a scanner asking for ``other``."""
        if other.limits is not None and (
                self.limits is None or (self.limits != other.limits and not other.own_budget)):
            return False
        return all(k in self.keep for k in other.keep)


LEAVES_ONLY = Plan()


def plan_for(scanners: Sequence[object]) -> Plan:
    """The plan for a scanner list: the limits of the first scanner that unpacks (an
    ``unpack_limits`` attribute; the internal scanner's when it runs), and every scanner's
    ``keep_whole`` rule."""
    limits = next((lim for s in scanners if (lim := getattr(s, "unpack_limits", None)) is not None), None)
    keep = tuple(k for s in scanners if (k := getattr(s, "keep_whole", None)) is not None)
    return Plan(limits=limits, keep=keep)


@dataclass(frozen=True)
class Inventory:
    """A message's contents, built once (:func:`build`)."""

    items: tuple[Item, ...] = ()
    hits: tuple[CheckHit, ...] = ()  # the first hit of each limit, unreadable/unscannable containers
    defects: tuple[str, ...] = ()  # the parser's defects, and the walk's own (too-many-parts ...)
    reached: int = 0  # items[:reached] were walked before a message-wide limit stopped it
    stop: CheckHit | None = None  # the hit that stopped all unpacking
    error: str | None = None  # an unexpected error while building (the items up to it are kept)
    plan: Plan = LEAVES_ONLY
    messages: Mapping[str, Message] = field(default_factory=lambda: MappingProxyType({}))  # mail by prefix
    _by_path: Mapping[str, Item] = field(default_factory=dict, repr=False)
    _children: Mapping[str, tuple[Item, ...]] = field(default_factory=dict, repr=False)

    def get(self, path: str) -> Item | None:
        return self._by_path.get(path)

    def children(self, label: str) -> tuple[Item, ...]:
        """What was unpacked from the container at ``label`` (an item's ``label``), in order."""
        return self._children.get(label, ())

    def leaves(self) -> Iterator[Item]:
        """The leaves of the message itself (the event's parts)."""
        return (i for i in self.items if i.source == "mime")

    def opened(self, label: str) -> bool:
        """Whether the container at ``label`` was opened (it may have held nothing)."""
        return label in self._children


class Stats:
    """How often contents were walked, for the tests and the bench: one inventory per
    message, each container opened once."""

    __slots__ = ("builds", "containers")

    def __init__(self) -> None:
        self.builds = 0
        self.containers = 0


STATS = Stats()


# -- names --------------------------------------------------------------------------------------
def declared_names(part: Message) -> tuple[list[str], bool, bool]:
    """Every filename a part declares (disposition filename first, then Content-Type name),
    RFC 2231 and RFC 2047 decoded, duplicates kept; whether the parameters conflicted so
    badly the stdlib could not combine them (itself a mismatch); and whether the part is an
    attachment by disposition. Read from the raw headers: the structured header objects
    cost more than the whole check for a plain message."""
    names: list[str] = []
    broken = False
    disposition = ""
    raw_values: dict[str, list[str]] = {"content-disposition": [], "content-type": []}
    for key, raw in part.raw_items():
        lk = key.lower()
        if lk in raw_values:
            raw_values[lk].append(str(raw))
    if raw_values["content-disposition"]:
        disposition = raw_values["content-disposition"][0].split(";", 1)[0].strip().lower()
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        for value in raw_values[header]:
            if "name" not in value.lower():
                continue
            probe = Message()
            probe[header] = value.replace("\r", "").replace("\n", "")
            try:
                params = probe.get_params(header=header) or []
            except Exception:
                broken = True
                continue
            for k, v in params:
                if k.lower() == param and v:
                    text = decode_words(collapse_rfc2231_value(v)).strip()
                    if text:
                        names.append(text)
    return names, broken, bool(names) or disposition == "attachment"


def claimed_type(name: str | None) -> str:
    """The content type a file name claims (application/octet-stream when none)."""
    if name:
        guess, _enc = mimetypes.guess_type(name, strict=False)
        if guess:
            return guess
    return "application/octet-stream"


# -- the walk -----------------------------------------------------------------------------------
def _join(path: str, i: int) -> str:
    return f"{path}/{i}" if path else str(i)


class _Builder:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.unpack = plan.limits is not None
        self.budget = Budget(plan.limits or UnpackLimits())
        self.items: list[Item] = []
        self.defects: list[str] = []
        self.messages: dict[str, Message] = {}
        self.children: dict[str, list[Item]] = {}
        self.reached: int | None = None  # how many items were walked when all unpacking stopped

    def add(self, item: Item) -> None:
        self.items.append(item)
        if item.source not in ("mime", "mail"):
            self.children.setdefault(item.parent, []).append(item)

    # -- messages -------------------------------------------------------------------------------
    def leaves(self, msg: Message, top: bool) -> Iterator[tuple[str, Message]]:
        """Leaf parts in document order with their paths. The message's own walk also
        collects the parser's defects for the event."""
        count = 0
        stack: list[tuple[Message, str, int]] = [(msg, "", 0)]
        while stack:
            node, path, depth = stack.pop()
            if count >= MAX_LEAVES:  # as soon as any part is met past the limit
                if top and "too-many-parts" not in self.defects:
                    self.defects.append("too-many-parts")
                return
            if top:
                for d in getattr(node, "defects", ()):
                    name = type(d).__name__
                    if name not in self.defects:
                        self.defects.append(name)
            if depth > MAX_DEPTH:
                if top:
                    self.defects.append("nesting-too-deep")
                continue
            children = part_children(node)
            if children is not None:
                stack.extend(reversed([(c, _join(path, i), depth + 1) for i, c in enumerate(children, 1)]))
                continue
            count += 1
            yield path or "1", node

    def message(self, msg: Message, prefix: str, depth: int) -> None:
        top = prefix == ""
        for path, node in self.leaves(msg, top):
            if self.reached is not None:  # listed for the event, nothing more is done with it
                self.items.append(self.leaf(node, path, depth, "mime", detect=False))
                continue
            listed = False
            try:
                if self.unpack:
                    self.budget.check_time(prefix + path)  # the time limit covers the whole walk
                item = self.leaf(node, prefix + path, depth, "mime" if top else "mail")
                self.add(item)
                listed = True
                if self.unpack:
                    self.expand_leaf(item, top)
            except UnpackStop:
                if not top:
                    raise
                self.reached = len(self.items)
                if not listed:
                    self.items.append(self.leaf(node, path, depth, "mime", detect=False))

    def leaf(self, node: Message, path: str, depth: int, source: str, detect: bool = True) -> Item:
        declared = part_content_type(node)
        # what the checks look at: read only when something unpacks (the event needs none of it)
        names, broken, is_attachment = declared_names(node) if self.unpack else ([], False, False)
        data = _payload(node, self.defects if source == "mime" else None)
        body_text = declared.startswith("text/") and not names
        detected = None
        if detect and self.unpack and (not body_text or exec_kind(data) is not None):
            detected = magic_type(data)
        return Item(
            path=path, source=source, declared_type=declared, detected_type=detected,
            filename=part_filename(node), names=tuple(names), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), data=data, depth=depth,
            names_broken=broken, attachment=is_attachment,
            sniffed_type=sniff(data) if source == "mime" else None,
        )

    def expand_leaf(self, item: Item, top: bool) -> None:
        body_text = item.declared_type.startswith("text/") and not item.names
        data = item.data
        found = None if body_text else locate_container(data, item.names[0] if item.names else None)
        if found is None and item.declared_type.startswith("text/") and has_uuencode(data):
            found = Located("uu")
        if found is None:
            return
        if not top:
            self.expand(item, item.label, data, found)
            return
        # a hard bound on the time left, for what no check between blocks reaches (libmagic,
        # a member's parse as mail): armed only here, so mail without containers pays nothing
        left = self.budget.limits.max_time - (time.monotonic() - self.budget.started)
        try:
            with hard_deadline(left):
                self.expand(item, item.label, data, found)
        except HardDeadline:
            limit = self.budget.limits.max_time
            self.budget.hit("unpack-time", item.label, f"unpacking took more than {limit:g} s")
            raise UnpackStop from None

    # -- containers -----------------------------------------------------------------------------
    def expand(self, item: Item, label: str, data: bytes, found: Located) -> None:
        kind = found.kind
        if kind in UNOPENABLE or kind == UNOPENABLE_SEARCH:
            what = "too many false archive signatures" if kind == UNOPENABLE_SEARCH else kind
            self.budget.hit("unscannable", label, f"{what}: qscan cannot look inside")
            return
        limits = self.budget.limits
        if item.depth + 1 > limits.max_depth:
            self.budget.hit("unpack-depth", label, f"nested deeper than {limits.max_depth}")
            return
        if found.offset:
            data = data[found.offset:]  # a 7z/RAR/CAB behind a prefix (SFX): opened where it starts
        self.children.setdefault(label, [])
        name = item.names[0] if item.names else (item.filename or "")
        self.members(item, label, SOURCES.get(kind, "archive"),
                     open_container(data, kind, name, label, self.budget, self.plan.keeps))

    def members(self, parent: Item, label: str, source: str, members: Iterator[Member]) -> None:
        depth = parent.depth + 1
        for m in members:
            path = f"{label}!/{m.name}"
            filename = m.name.rsplit("/", 1)[-1]
            detected = magic_type(m.data) if m.data else None
            readable = m.complete and not m.encrypted
            found = locate_container(m.data, filename) if readable else None
            item = Item(
                path=path, source=source, declared_type=claimed_type(filename), detected_type=detected,
                filename=filename, names=(filename,), size=m.size, sha256=m.sha256, data=m.data,
                depth=depth, parent=label, complete=m.complete, encrypted=m.encrypted,
                zip_at_end=m.zip_at_end, attachment=True,
                mail=readable and found is None and (filename.lower().endswith(".eml")
                                                     or detected == "message/rfc822"),
            )
            self.add(item)
            if m.zip_at_end:
                self.budget.hit("unscannable", path, "ends with a zip archive, too big to keep and open")
            if found is not None:
                self.expand(item, path, m.data, found)
            elif item.mail:
                try:
                    inner = parse_mime(m.data)
                except Exception:
                    continue
                self.messages[path + "!/"] = inner
                self.message(inner, path + "!/", depth)


SOURCES: Final = {"tnef": "tnef", "uu": "uuencode"}  # container kind -> its members' source
STOPPING: Final = frozenset({"unpack-time", "unpack-members", "unpack-bytes"})  # these stop all unpacking


def open_container(data: bytes, kind: str, name: str, label: str, budget: Budget,
                   keep: Keep) -> Iterator[Member]:
    """The members of one container (``kind``: a located container kind, or 'uu'), charged
    to ``budget``; counted in :data:`STATS`. Raises UnpackStop while iterating."""
    STATS.containers += 1
    if kind == "tnef":
        return tnef_members(data, label, budget, keep)
    if kind == "uu":
        return uu_members(data, label, budget, keep)
    return archive_members(data, kind, name, label, budget, keep)


def _payload(node: Message, defects: list[str] | None) -> bytes:
    """A leaf's decoded bytes; its raw text when the transfer encoding is broken."""
    try:
        data = decoded_payload(node)
    except Exception:
        data = None
        if defects is not None:
            defects.append("undecodable-payload")
    if isinstance(data, bytes):
        return data
    try:
        raw = node.get_payload()
    except Exception:
        return b""
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def build(msg: Message | None, plan: Plan = LEAVES_ONLY) -> Inventory:
    """The inventory of one parsed message (None: the parser gave up, nothing is listed)."""
    STATS.builds += 1
    if msg is None:
        return Inventory(plan=plan)
    b = _Builder(plan)
    error = None
    try:
        b.message(msg, "", 0)
    except Exception as exc:  # never out of the daemon: the consumers report it
        log.exception("inventory failed")
        error = f"{type(exc).__name__}: {exc}"
    reached = b.reached if b.reached is not None else len(b.items)
    stop = next((h for h in b.budget.hits if h.check in STOPPING), None) if b.reached is not None else None
    by_path: dict[str, Item] = {}
    for it in b.items:
        by_path.setdefault(it.path, it)
    return Inventory(
        items=tuple(b.items), hits=tuple(b.budget.hits), defects=tuple(b.defects), reached=reached,
        stop=stop, error=error, plan=plan, messages=MappingProxyType(b.messages),
        _by_path=MappingProxyType(by_path),
        _children=MappingProxyType({k: tuple(v) for k, v in b.children.items()}),
    )
