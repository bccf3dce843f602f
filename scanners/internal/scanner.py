"""The internal scanner: format checks, bounded unpacking and the policy rules, in one pass.

Per message: the raw header blocks are checked; every MIME leaf becomes an
:class:`Item` (names, declared and detected type, head bytes); containers are
unpacked within one :class:`Budget` and their members become items too; each
item gets the name and content checks; then the rules decide. The result
list holds one informational finding per check hit, the tags, and the rule
that decided. Parts found inside containers are appended to
``ctx.found_parts`` for the event's part list.

The hot path (a plain-text message without attachments) touches neither
libmagic nor libarchive: a pass over the header lines, a few byte-prefix
tests on the body, and the compiled rules.

The scanner never raises: an internal error becomes an ``internal-error``
finding (category malformed) with the configured action, default quarantine,
so the message is kept and looked at rather than lost or waved through.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from email.header import decode_header
from email.message import Message
from email.utils import collapse_rfc2231_value

from scanners.base import PartInfo, ScanContext, ScanPart
from scanners.internal.attachment_checks import banned_checks, content_checks, name_checks
from scanners.internal.checks import CHECKS, INTERNAL_ERROR, MALFORMED, CheckHit
from scanners.internal.format_checks import header_checks, rename_repeated
from scanners.internal.items import Item
from scanners.internal.policy import Evaluation, InternalSettings, Match, MessageFacts, Rule, RuleSet
from scanners.internal.rawmime import walk_headers
from scanners.internal.safe_regex import Pattern, compile_globs
from scanners.internal.unpack import (
    Budget,
    HardDeadline,
    Member,
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
)
from scanners.mime.parse import parse as parse_mime
from scanners.mime.parse import part_children, part_content_type, part_payload
from scanners.result import Disposition, ScanResult, Verdict

log = logging.getLogger(__name__)

MAX_LEAVES = 1000
MAX_DEPTH = 20
MAX_REPORTED_HITS = 50
_DISPOSITION = {
    "quarantine": Disposition.QUARANTINE,
    "reject": Disposition.REJECT,
    "tempfail": Disposition.TEMPFAIL,
    "drop": Disposition.DROP,
    "tag": Disposition.DELIVER,
    "allow": Disposition.DELIVER,
    "deliver": Disposition.DELIVER,
}


class _Allowances:
    """What one message may carry of the banned files: the global allow-list, plus what
    every one of its recipients' domains allows (one recipient without the grant undoes it:
    a message is delivered or not as a whole)."""

    def __init__(self, opts: InternalSettings) -> None:
        self.always = frozenset(opts.allow_banned)
        self.by_domain: list[tuple[Pattern, frozenset[str]]] = [
            (compile_globs([glob]), frozenset(allowed))
            for glob, allowed in opts.allow_banned_by_domain.items() if allowed
        ]

    def for_recipients(self, recipients: list[str]) -> frozenset[str]:
        if not self.by_domain or not recipients:
            return self.always
        common: set[str] | None = None
        for rcpt in recipients:
            domain = rcpt.rpartition("@")[2].lower() if "@" in rcpt else ""
            granted: set[str] = set()
            for pattern, allowed in self.by_domain:
                if pattern.fullmatch(domain):
                    granted |= allowed
            common = granted if common is None else common & granted
            if not common:
                return self.always
        return self.always | (common or set())


def builtin_rules(opts: InternalSettings) -> list[Rule]:
    """One rule per check whose action is a policy action (not 'record' or 'off')."""
    out = []
    for check, (category, _default, description) in CHECKS.items():
        action = opts.action(check)
        if action in ("record", "off"):
            continue
        out.append(Rule(id=check, action=action, category=category, description=description,
                        builtin=True, finding=frozenset((check,))))
    return out


@dataclass
class Report:
    """Everything one scan saw: what `qscan policy explain` prints and the results are built from."""

    hits: list[CheckHit] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    parts: list[PartInfo] = field(default_factory=list)
    evaluation: Evaluation = field(default_factory=Evaluation)
    error: str | None = None


def _join(path: str, i: int) -> str:
    return f"{path}/{i}" if path else str(i)


def _leaves(msg: Message) -> Iterator[tuple[str, Message]]:
    """Leaf parts with the event's part paths (same numbering as ingest/mime.walk_parts)."""
    count = 0
    stack: list[tuple[Message, str, int]] = [(msg, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        children = part_children(node)
        if children is not None:
            stack.extend(reversed([(c, _join(path, i), depth + 1) for i, c in enumerate(children, 1)]))
            continue
        count += 1
        if count > MAX_LEAVES:
            return
        yield path or "1", node


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return "".join(
            chunk.decode(cs or "ascii", "replace") if isinstance(chunk, bytes) else chunk
            for chunk, cs in decode_header(value)
        )
    except Exception:
        return value


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
                    text = _decode_words(collapse_rfc2231_value(v)).strip()
                    if text:
                        names.append(text)
    return names, broken, bool(names) or disposition == "attachment"


def _claimed_type(name: str | None) -> str:
    if name:
        guess, _enc = mimetypes.guess_type(name, strict=False)
        if guess:
            return guess
    return "application/octet-stream"


def decoded_headers(msg: Message | None) -> list[tuple[str, str]]:
    """(lowercased name, unfolded RFC 2047-decoded value) for the header rules."""
    if msg is None:
        return []
    out: list[tuple[str, str]] = []
    try:
        for key, value in list(msg.raw_items())[:500]:
            text = " ".join(str(value).replace("\r", "").split("\n"))
            out.append((key.lower(), _decode_words(text).strip()))
    except Exception:
        pass
    return out


class _Inspection:
    """One message's walk: leaves, members, hits, within one budget."""

    def __init__(self, opts: InternalSettings, allowed: frozenset[str] = frozenset()) -> None:
        self.opts = opts
        self.budget = Budget(opts.limits)
        self.report = Report()
        self.allowed = allowed

    # -- messages (the top one, and any attached inside a container) --------------------------
    def message(self, raw: bytes, msg: Message | None, prefix: str, depth: int,
                known: Mapping[str, ScanPart] | None = None) -> None:
        walk = walk_headers(raw)
        for h in header_checks(walk, self.opts.ignore_eol):
            self.report.hits.append(CheckHit(h.check, prefix + h.path, h.detail) if prefix else h)
        if msg is None:
            return
        for path, node in _leaves(msg):
            self.budget.check_time(prefix + path)  # the time limit covers the whole inspection
            self.leaf(node, prefix + path, depth, known.get(path) if known is not None else None,
                      top=prefix == "")

    def leaf(self, node: Message, path: str, depth: int, known: ScanPart | None, top: bool) -> None:
        declared = known.content_type if known is not None else part_content_type(node)
        names, broken, is_attachment = declared_names(node)
        data = known.payload if known is not None else part_payload(node)
        body_text = declared.startswith("text/") and not names
        item = Item(
            path=path, filename=names[0] if names else None, declared_type=declared, head=data,
            size=len(data), sha256="", depth=depth, names=tuple(names),
            attachment=is_attachment,
        )
        if broken:
            self.report.hits.append(CheckHit("filename-mismatch", path, "conflicting RFC 2231 parameters"))
        found = None if body_text else locate_container(data, names[0] if names else None)
        if not body_text or exec_kind(data) is not None:
            item.detected_type = magic_type(data)
        if top:
            # the processor lists (and hashes) this part already: this refines its detected type
            if item.detected_type:
                self.report.parts.append(PartInfo(path, declared, item.detected_type, item.filename,
                                                  len(data), ""))
        else:
            item.sha256 = hashlib.sha256(data).hexdigest()
            self.report.parts.append(PartInfo(path, declared, item.detected_type, item.filename,
                                              len(data), item.sha256))
        self._check(item)
        label = f"{path}/{item.filename}" if item.filename else path
        if found is None and declared.startswith("text/") and has_uuencode(data):
            found = Located("uu")
        if found is None:
            return
        if not top:
            self.expand(item, label, data, found)
            return
        # a hard bound on the time left, for what no check between blocks reaches (libmagic,
        # a member's parse as mail): armed only here, so mail without containers pays nothing
        left = self.budget.limits.max_time - (time.monotonic() - self.budget.started)
        try:
            with hard_deadline(left):
                self.expand(item, label, data, found)
        except HardDeadline:
            limit = self.budget.limits.max_time
            self.budget.hit("unpack-time", label, f"unpacking took more than {limit:g} s")
            raise UnpackStop from None

    # -- containers ----------------------------------------------------------------------------
    @staticmethod
    def _keep(head: bytes, name: str) -> bool:
        """Which members are kept whole (``head``: up to their first SFX_WINDOW bytes): those
        holding a container there, executables (an SFX's zip is found at its end) and mail."""
        return locate_container(head, name) is not None or head[:2] == b"MZ" or name.lower().endswith(".eml")

    def expand(self, item: Item, label: str, data: bytes, found: Located) -> None:
        kind = found.kind
        if kind in UNOPENABLE or kind == UNOPENABLE_SEARCH:
            what = "too many false archive signatures" if kind == UNOPENABLE_SEARCH else kind
            self.budget.hit("unscannable", label, f"{what}: qscan cannot look inside")
            return
        if item.depth + 1 > self.opts.limits.max_depth:
            self.budget.hit("unpack-depth", label, f"nested deeper than {self.opts.limits.max_depth}")
            return
        if found.offset:
            data = data[found.offset:]  # a 7z/RAR/CAB behind a prefix (SFX): opened where it starts
        if kind == "tnef":
            self.members(item, label, tnef_members(data, label, self.budget, self._keep))
        elif kind == "uu":
            self.members(item, label, uu_members(data, label, self.budget, self._keep))
        else:
            self.members(item, label, archive_members(data, kind, item.filename or "", label,
                                                      self.budget, self._keep))

    def members(self, parent: Item, label: str, members: Iterator[Member]) -> None:
        depth = parent.depth + 1
        for m in members:
            path = f"{label}!/{m.name}"
            filename = m.name.rsplit("/", 1)[-1]
            item = Item(path=path, filename=filename, declared_type=None, head=m.data[:MAGIC_HEAD],
                        size=m.size, sha256=m.sha256, depth=depth, encrypted=m.encrypted,
                        attachment=True)
            if m.data:
                item.detected_type = magic_type(m.data)
            self.report.parts.append(PartInfo(path, _claimed_type(filename), item.detected_type,
                                              filename, m.size, m.sha256))
            self._check(item)
            if m.zip_at_end:
                self.budget.hit("unscannable", path, "ends with a zip archive, too big to keep and open")
            if not m.complete or m.encrypted:
                continue
            found = locate_container(m.data, filename)
            if found is not None:
                self.expand(item, path, m.data, found)
            elif filename.lower().endswith(".eml") or item.detected_type == "message/rfc822":
                try:
                    inner = parse_mime(m.data)
                except Exception:
                    inner = None
                self.message(m.data, inner, path + "!/", depth)

    def _check(self, item: Item) -> None:
        self.report.items.append(item)
        self.report.hits.extend(name_checks(item, self.opts.dangerous_extensions))
        self.report.hits.extend(banned_checks(item, self.opts.dangerous_extensions, self.allowed))
        self.report.hits.extend(content_checks(item))


class InternalScanner:
    """Qmail-Scanner's internal "perlscan" engine, rebuilt: see the module docstring."""

    name = "internal"
    version = "1"

    def __init__(self, settings: InternalSettings | None = None, rules: RuleSet | None = None) -> None:
        """``settings``: [internal] (scanners/internal/policy.py); ``rules``: its rules file, loaded."""
        self.opts = settings or InternalSettings()
        self.enabled = frozenset(c for c in CHECKS if self.opts.action(c) != "off")
        self.ruleset = (rules or RuleSet([])).plus(builtin_rules(self.opts))  # compiled once, here
        self.rename = self.opts.action("repeated-mime-header") != "off"
        self.allowances = _Allowances(self.opts)

    # -- the one entry point the processor calls ------------------------------------------------
    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        report = Report()
        try:
            report = self.inspect(ctx)
            results = self.results(report)
        except Exception as exc:  # never out of the daemon: keep the message, flag it
            log.exception("internal scanner failed")
            results = [self._error(f"{type(exc).__name__}: {exc}")]
        ctx.found_parts.extend(report.parts)
        return results

    def inspect(self, ctx: ScanContext) -> Report:
        """Walk, unpack, check and evaluate the rules; the raw material of the results."""
        insp = _Inspection(self.opts, self.allowances.for_recipients(ctx.recipients))
        known = {p.path: p for p in ctx.parts}
        try:
            insp.message(ctx.raw, ctx.message, "", 0, known)
        except UnpackStop:
            pass  # a message-wide limit: its hit is recorded, keep what was seen
        report = insp.report
        report.hits.extend(insp.budget.hits)
        report.hits = [h for h in _dedupe(report.hits) if h.check in self.enabled]
        facts = MessageFacts(
            sender=ctx.sender, recipients=ctx.recipients, client_ip=ctx.client_ip, relay=ctx.relay,
            size=ctx.size, items=report.items, hits=report.hits,
            header_source=lambda: decoded_headers(ctx.message), outbound=ctx.leaves_site,
        )
        report.evaluation = self.ruleset.evaluate(facts)
        return report

    def results(self, report: Report) -> list[ScanResult]:
        out: list[ScanResult] = []
        decided = report.evaluation.decided
        merged = decided.hit if decided is not None and decided.rule.builtin else None
        for h in report.hits[:MAX_REPORTED_HITS]:
            if h is merged:
                continue
            out.append(ScanResult(scanner=self.name, version=self.version, name=h.check,
                                  detail=h.describe()))
        if len(report.hits) > MAX_REPORTED_HITS:
            out.append(ScanResult(scanner=self.name, version=self.version, name="more-findings",
                                  detail=f"{len(report.hits) - MAX_REPORTED_HITS} more check hits"))
        for m in report.evaluation.tags:
            out.append(ScanResult(
                scanner=self.name, version=self.version, name=m.rule.id, detail=_detail(m),
                disposition=Disposition.DELIVER, add_headers=(m.rule.tag(),),
            ))
        if decided is not None:
            out.append(self._decision(decided))
        if self.rename and any(h.check == "repeated-mime-header" for h in report.hits) and out:
            at = next((i for i, r in enumerate(out) if r.name == "repeated-mime-header"), 0)
            out[at] = replace(out[at], transform=rename_repeated)
        return out

    def _decision(self, m: Match) -> ScanResult:
        rule = m.rule
        if rule.action == "allow":
            return ScanResult(scanner=self.name, version=self.version, name=rule.id, detail=_detail(m),
                              disposition=Disposition.DELIVER)
        return ScanResult(
            scanner=self.name, version=self.version, verdict=Verdict(rule.category), name=rule.id,
            detail=_detail(m), disposition=_DISPOSITION[rule.action], reply=rule.reply_text(),
        )

    def _error(self, why: str) -> ScanResult:
        action = self.opts.error_action
        reply = None
        if action == "reject":
            reply = "Dmessage could not be scanned (#5.7.1)"
        elif action == "tempfail":
            reply = "Zmessage could not be scanned, try again later (#4.3.0)"
        return ScanResult(
            scanner=self.name, version=self.version, verdict=Verdict(MALFORMED), name=INTERNAL_ERROR,
            detail=why[:500], disposition=_DISPOSITION[action], reply=reply, error=why[:500],
        )


def _detail(m: Match) -> str:
    if m.rule.builtin and m.hit is not None:
        return m.hit.describe()
    text = m.rule.description or m.rule.id
    return f"{text}: {m.evidence}" if m.evidence else text


def _dedupe(hits: list[CheckHit]) -> list[CheckHit]:
    seen: set[tuple[str, str]] = set()
    out = []
    for h in hits:
        key = (h.check, h.path)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out
