"""The DLP rule engine: one message's text through the detectors, then the rules.

The same engine runs inline (``scanners.dlp.scanner``, in the daemon) and
downstream (``qscan dlp hunt`` over the journal, Kafka or the archive), so a
finding means the same thing wherever it was made.

Cheap when nothing can fire: if no rule applies to the message's direction and
domains (say every rule is about outbound mail and this one is inbound), no text
is extracted at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from scanners.base import ScanPart
from scanners.dlp.detectors import Confidence, Hit
from scanners.dlp.extract import Extraction, ExtractLimits, extract, plan
from scanners.dlp.rules import ACTION_RANK, DlpPolicy, DlpSettings, Rule
from scanners.inventory import Inventory, Plan

_DIGIT = re.compile(r"\d")
MAX_EVIDENCE = 3  # masked examples kept per detector and rule
MAX_LOCATIONS = 10
ENCRYPTED_RULE = "encrypted-mail"


_DEFAULTS = DlpSettings()  # [dlp]: the headers read by default

@dataclass(frozen=True, slots=True)
class MessageFacts:
    sender: str
    recipients: list[str]
    outbound: bool  # the mail leaves the site (scanners.direction.leaves_site)


@dataclass
class _Seen:
    """One distinct value of one detector: its best confidence and where it was."""

    hit: Hit
    locations: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DetectorCount:
    detector: str
    count: int  # distinct values at or above the rule's minimum confidence
    confidence: Confidence  # the highest among them
    locations: tuple[str, ...]
    evidence: tuple[str, ...]  # masked


@dataclass(frozen=True)
class RuleHit:
    rule: Rule
    action: str  # the rule's action, or 'allow' for encrypted mail the rule lets through
    count: int
    confidence: Confidence
    detectors: tuple[DetectorCount, ...]
    encrypted: bool

    @property
    def notify(self) -> bool:
        return self.rule.notify

    def records(self) -> list[dict[str, Any]]:
        """The event's ``dlp_findings`` entries: one per contributing detector (masked only)."""
        return [{
            "rule": self.rule.id, "detector": d.detector, "confidence": d.confidence.label,
            "count": d.count, "action": self.action, "location": ", ".join(d.locations),
            "evidence": ", ".join(d.evidence), "notify": self.notify, "encrypted": self.encrypted,
        } for d in self.detectors]

    def describe(self) -> str:
        parts = [f"{d.detector} x{d.count} ({d.confidence.label}) in {', '.join(d.locations[:3])}"
                 f"{'…' if len(d.locations) > 3 else ''}: {', '.join(d.evidence)}" for d in self.detectors]
        text = "; ".join(parts)
        if self.encrypted and self.action == "allow":
            text += " [encrypted mail: allowed]"
        return text[:900]


@dataclass
class Evaluation:
    hits: list[RuleHit] = field(default_factory=list)
    encrypted: list[str] = field(default_factory=list)  # where S/MIME or PGP content was
    encrypted_action: str | None = None  # the [encrypted] policy applied to this message
    encrypted_record: bool = False
    notes: list[str] = field(default_factory=list)
    chars: int = 0
    segments: int = 0
    inspected: bool = False  # False: no rule applied, nothing was extracted
    duration_ms: float = 0.0
    found: dict[str, list[tuple[Hit, tuple[str, ...]]]] = field(default_factory=dict)  # per detector

    @property
    def action(self) -> str | None:
        """The strongest action asked for, or None when nothing fired."""
        actions = [h.action for h in self.hits]
        if self.encrypted_action is not None:
            actions.append(self.encrypted_action)
        return max(actions, key=lambda a: ACTION_RANK[a]) if actions else None

    def encrypted_record_entry(self) -> dict[str, Any] | None:
        if self.encrypted_action is None or not self.encrypted_record:
            return None
        return {
            "rule": ENCRYPTED_RULE, "detector": "encryption", "confidence": "high",
            "count": len(self.encrypted), "action": self.encrypted_action,
            "location": ", ".join(self.encrypted[:MAX_LOCATIONS]),
            "evidence": "S/MIME or PGP encrypted content, not inspected",
            "notify": self.encrypted_action in ("notify", "quarantine", "reject"), "encrypted": True,
        }

    def records(self) -> list[dict[str, Any]]:
        out = [r for h in self.hits for r in h.records()]
        entry = self.encrypted_record_entry()
        if entry is not None:
            out.append(entry)
        return out


class DlpEngine:
    """Compiled policy plus extraction settings; evaluate() is pure apart from the clock."""

    def __init__(self, policy: DlpPolicy, *, headers: Sequence[str] = _DEFAULTS.headers,
                 limits: ExtractLimits | None = None) -> None:
        self.policy = policy
        self.headers = tuple(headers)
        self.limits = limits or ExtractLimits()

    def evaluate(self, message: Message | None, facts: MessageFacts,
                 parts: Sequence[ScanPart] = (),
                 contents: Callable[[Plan], Inventory] | None = None) -> Evaluation:
        """``contents``: the message's inventory for a plan (``ScanContext.contents``), asked
        for only when a rule applies; without it the extractor builds its own."""
        t0 = time.perf_counter()
        out = Evaluation()
        rules = [r for r in self.policy.rules if r.applies(facts.sender, facts.recipients, facts.outbound)]
        enc = self.policy.encrypted
        if not rules and not enc.applies(facts.outbound):
            out.duration_ms = (time.perf_counter() - t0) * 1000
            return out
        inventory = contents(plan(self.limits)) if contents is not None else None
        ex = extract(message, parts=parts, headers=self.headers, limits=self.limits, contents=inventory)
        out.inspected = True
        out.notes, out.chars, out.segments = ex.notes, ex.chars, len(ex.segments)
        out.encrypted = ex.encrypted
        seen = self._detect(ex, {d for r in rules for d in r.detectors})
        out.found = {name: [(s.hit, tuple(s.locations)) for s in values.values()]
                     for name, values in seen.items()}
        for rule in rules:
            hit = self._rule(rule, seen, bool(ex.encrypted))
            if hit is not None:
                out.hits.append(hit)
        if ex.encrypted and enc.applies(facts.outbound):
            out.encrypted_action = enc.action
            out.encrypted_record = enc.record
        out.duration_ms = (time.perf_counter() - t0) * 1000
        return out

    def _detect(self, ex: Extraction, names: set[str]) -> dict[str, dict[str, _Seen]]:
        seen: dict[str, dict[str, _Seen]] = {name: {} for name in names}
        digits = [_DIGIT.search(seg.text) is not None for seg in ex.segments]
        for name in sorted(names):
            detector = self.policy.detectors[name]
            skip = getattr(detector, "needs_digits", False)
            values = seen[name]
            for seg, has_digits in zip(ex.segments, digits, strict=True):
                if skip and not has_digits:
                    continue
                for hit in detector.find(seg.text):
                    known = values.get(hit.key)
                    if known is None:
                        values[hit.key] = _Seen(hit, [seg.location])
                        continue
                    if hit.confidence > known.hit.confidence:
                        known.hit = hit
                    if seg.location not in known.locations:
                        known.locations.append(seg.location)
        return seen

    @staticmethod
    def _rule(rule: Rule, seen: dict[str, dict[str, _Seen]], encrypted: bool) -> RuleHit | None:
        keys: set[str] = set()
        counts: list[DetectorCount] = []
        for name in rule.detectors:
            good = [s for s in seen.get(name, {}).values() if s.hit.confidence >= rule.min_confidence]
            fresh = [s for s in good if s.hit.key not in keys]
            keys.update(s.hit.key for s in fresh)
            if not fresh:
                continue
            fresh.sort(key=lambda s: -s.hit.confidence)
            locations = list(dict.fromkeys(loc for s in fresh for loc in s.locations))
            counts.append(DetectorCount(
                detector=name, count=len(fresh), confidence=fresh[0].hit.confidence,
                locations=tuple(locations[:MAX_LOCATIONS]),
                evidence=tuple(dict.fromkeys(s.hit.masked for s in fresh))[:MAX_EVIDENCE],
            ))
        if len(keys) < rule.min_count or not counts:
            return None
        action = "allow" if encrypted and rule.allow_encrypted else rule.action
        return RuleHit(rule, action, len(keys), max(c.confidence for c in counts), tuple(counts), encrypted)
