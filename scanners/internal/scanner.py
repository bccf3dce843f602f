"""The internal scanner: format checks, bounded unpacking and the policy rules, in one pass.

Per message: the raw header blocks are checked; every item of the message's
inventory (``scanners.inventory``: MIME leaves, and the members of containers
unpacked there within one budget, built once per message and shared with the
other scanners) becomes an :class:`Item` and gets the name and content checks;
the limits the inventory hit are findings too; then the rules decide. The result
list holds one informational finding per check hit, the tags, and the rule
that decided. Parts found inside containers are appended to
``ctx.found_parts`` for the event's part list. The scanner's unpack limits are
the message's when it runs (``inventory.plan_for``).

The hot path (a plain-text message without attachments) touches neither
libmagic nor libarchive: a pass over the header lines, a few byte-prefix
tests on the body, and the compiled rules.

The scanner never raises: an internal error becomes an ``internal-error``
finding (category malformed) with the configured action, default quarantine,
so the message is kept and looked at rather than lost or waved through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from email.message import Message

from scanners import inventory
from scanners.base import PartInfo, ScanContext
from scanners.internal.attachment_checks import banned_checks, content_checks, name_checks
from scanners.internal.checks import CHECKS, INTERNAL_ERROR, MALFORMED, CheckHit
from scanners.internal.format_checks import header_checks, rename_repeated
from scanners.internal.items import Item
from scanners.internal.policy import Evaluation, InternalSettings, Match, MessageFacts, Rule, RuleSet
from scanners.internal.rawmime import walk_headers
from scanners.internal.safe_regex import Pattern, compile_globs
from scanners.mime.parse import decode_words
from scanners.result import Disposition, ScanResult, Verdict

log = logging.getLogger(__name__)

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


def decoded_headers(msg: Message | None) -> list[tuple[str, str]]:
    """(lowercased name, unfolded RFC 2047-decoded value) for the header rules."""
    if msg is None:
        return []
    out: list[tuple[str, str]] = []
    try:
        for key, value in list(msg.raw_items())[:500]:
            text = " ".join(str(value).replace("\r", "").split("\n"))
            out.append((key.lower(), decode_words(text).strip()))
    except Exception:
        pass
    return out


class InventoryFailed(Exception):
    """The message's inventory could not be built (its error is the message)."""


def _item(it: inventory.Item) -> Item:
    """The checks' view of an inventory item."""
    if it.source in ("mime", "mail"):
        return Item(path=it.path, filename=it.names[0] if it.names else None,
                    declared_type=it.declared_type, head=it.data, size=it.size,
                    sha256="" if it.source == "mime" else it.sha256, depth=it.depth, names=it.names,
                    attachment=it.attachment, detected_type=it.detected_type)
    return Item(path=it.path, filename=it.filename, declared_type=None, head=it.head, size=it.size,
                sha256=it.sha256, depth=it.depth, encrypted=it.encrypted, attachment=True,
                detected_type=it.detected_type)


def _part(it: inventory.Item) -> PartInfo | None:
    """The event's record of an item: a member, a leaf of attached mail, or (a leaf of the
    message, listed and hashed by the processor already) the libmagic type it refines."""
    if it.source == "mime":
        if not it.detected_type:
            return None
        return PartInfo(it.path, it.declared_type, it.detected_type,
                        it.names[0] if it.names else None, it.size, "")
    return PartInfo(it.path, it.declared_type, it.detected_type,
                    it.names[0] if it.names else None, it.size, it.sha256)


class InternalScanner:
    """Qmail-Scanner's internal "perlscan" engine, rebuilt: see the module docstring."""

    name = "internal"
    version = "1"

    def __init__(self, settings: InternalSettings | None = None, rules: RuleSet | None = None) -> None:
        """``settings``: [internal] (scanners/internal/policy.py); ``rules``: its rules file, loaded."""
        self.opts = settings or InternalSettings()
        self.unpack_limits = self.opts.limits  # the message's limits when it runs (inventory.plan_for)
        self.plan = inventory.Plan(limits=self.opts.limits)
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
        except InventoryFailed as exc:
            results = [self._error(str(exc))]
        except Exception as exc:  # never out of the daemon: keep the message, flag it
            log.exception("internal scanner failed")
            results = [self._error(f"{type(exc).__name__}: {exc}")]
        ctx.found_parts.extend(report.parts)
        return results

    def inspect(self, ctx: ScanContext) -> Report:
        """Check the message's inventory and evaluate the rules; the raw material of the results."""
        inv = ctx.contents(self.plan)
        if inv.error is not None:
            raise InventoryFailed(inv.error)
        report = Report()
        hits = report.hits
        hits.extend(header_checks(walk_headers(ctx.raw), self.opts.ignore_eol))
        allowed = self.allowances.for_recipients(ctx.recipients)
        dangerous = self.opts.dangerous_extensions
        for it in inv.items[:inv.reached]:
            item = _item(it)
            if it.names_broken:
                hits.append(CheckHit("filename-mismatch", it.path, "conflicting RFC 2231 parameters"))
            part = _part(it)
            if part is not None:
                report.parts.append(part)
            report.items.append(item)
            hits.extend(name_checks(item, dangerous))
            hits.extend(banned_checks(item, dangerous, allowed))
            hits.extend(content_checks(item))
            if it.mail:  # attached mail: its header blocks, then its leaves (next in the list)
                prefix = it.path + "!/"
                hits.extend(CheckHit(h.check, prefix + h.path, h.detail)
                            for h in header_checks(walk_headers(it.data), self.opts.ignore_eol))
        hits.extend(inv.hits)
        report.hits = [h for h in _dedupe(hits) if h.check in self.enabled]
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
