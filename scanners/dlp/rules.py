"""The DLP rules file: detectors, rules and what to do with encrypted mail (TOML, docs/dlp.md).

::

    [detectors.cards]                  # optional: the built-in detectors need no section
    type = "payment_card"
    allow_test_numbers = false

    [detectors.project-falcon]
    type = "keywords"
    keywords = ["Project Falcon", "Falcon roadmap"]
    context = ["confidential", "internal only"]

    [[rule]]
    id = "cards-outbound"
    detectors = ["payment_card"]
    direction = "outbound"
    min_confidence = "high"
    action = "quarantine"
    notify = true

Built-in detector names (usable without a section): ``payment_card``, ``iban``
and every identifier in ``detectors.NATIONAL_IDS`` (``us.ssn``, ``de.idnr``, ...).
A section with such a name changes its options; any other name defines a new
detector of the given ``type``.

Every rule whose conditions hold fires (rules are not first-match: a message
can break several); the strongest action among them is what happens to it,
and every fired rule is recorded.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scanners.dlp.detectors import (
    IBAN_CONTEXT,
    NATIONAL_IDS,
    CardDetector,
    Confidence,
    Context,
    Detector,
    IbanDetector,
    card_context,
    keyword_detector,
    national_id_detector,
    regex_detector,
)
from scanners.dlp.extract import ExtractLimits
from scanners.internal.safe_regex import Pattern, RegexError, compile_globs
from scanners.settings import SECTION, setting

ActionName = Literal["monitor", "notify", "quarantine", "reject"]
ConfidenceName = Literal["low", "medium", "high"]
ACTION_RANK = {"allow": 0, "monitor": 1, "notify": 2, "quarantine": 3, "reject": 4}
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,79}$"
MAX_REPLY = 400


class DlpRulesError(Exception):
    """A rules file that cannot be used; each line of the message names where and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DetectorCommon(_Spec):
    context: list[str] | None = Field(None, description="words raising confidence; unset: built-in list")
    window: int = Field(50, ge=0, le=2000, description="characters either side searched for context")
    require_context: bool = False
    ignore: list[str] = Field([], description="values never reported (e.g. the company's own IBANs)")


class CardSpec(_DetectorCommon):
    type: Literal["payment_card"]
    allow_test_numbers: bool = False


class IbanSpec(_DetectorCommon):
    type: Literal["iban"]
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = []


class NationalIdSpec(_DetectorCommon):
    type: Literal["national_id"]
    id: str = Field(description="a built-in identifier (us.ssn, ...) or a python-stdnum module")
    pattern: str | None = Field(None, description="candidate regex; required for non-built-in modules")
    allow_test_numbers: bool = False


class RegexSpec(_DetectorCommon):
    type: Literal["regex"]
    pattern: str
    ignore_case: bool = True
    confidence: ConfidenceName = "medium"


class KeywordsSpec(_DetectorCommon):
    type: Literal["keywords"]
    keywords: list[str] = Field(min_length=1)
    case_sensitive: bool = False
    confidence: ConfidenceName = "medium"
    evidence: Literal["masked", "clear"] = "masked"


DetectorSpec = Annotated[CardSpec | IbanSpec | NationalIdSpec | RegexSpec | KeywordsSpec,
                         Field(discriminator="type")]


class RuleSpec(_Spec):
    id: str = Field(pattern=_ID)
    description: str = ""
    detectors: list[str] = Field(min_length=1, description="any of these counts towards the rule")
    min_confidence: ConfidenceName = "medium"
    min_count: int = Field(1, ge=1, description="distinct values (at min_confidence or above) needed")
    direction: Literal["inbound", "outbound", "any"] = "any"
    sender_domain: list[str] = Field([], description="globs; the envelope sender's domain")
    recipient_domain: list[str] = Field([], description="globs; any envelope recipient's domain")
    except_recipient_domain: list[str] = Field(
        [], description="globs; the rule does not apply when every recipient is in these (internal mail)")
    action: ActionName = "monitor"
    notify: bool | None = Field(
        None, description="tell the compliance officer (default: yes for notify, quarantine, reject)")
    allow_encrypted: bool = Field(False, description="encrypted (S/MIME, PGP) mail: allow, with a record")
    reply: str | None = Field(None, max_length=MAX_REPLY, description="reject text (no D prefix)")


class EncryptedSpec(_Spec):
    action: Literal["allow", "monitor", "notify", "quarantine", "reject"] = Field(
        "allow", description="what S/MIME- or PGP-encrypted mail gets, whatever the rules say")
    direction: Literal["inbound", "outbound", "any"] = "outbound"
    record: bool = Field(True, description="record encrypted mail as a DLP finding")


class RulesFile(_Spec):
    detectors: dict[str, DetectorSpec] = {}
    rule: list[RuleSpec] = []
    encrypted: EncryptedSpec = EncryptedSpec()


# -- compiled ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    detectors: tuple[str, ...]
    min_confidence: Confidence
    min_count: int
    direction: str
    sender_domain: Pattern | None
    recipient_domain: Pattern | None
    except_recipient_domain: Pattern | None
    action: str
    notify: bool
    allow_encrypted: bool
    reply: str | None

    def applies(self, sender: str, recipients: list[str], outbound: bool) -> bool:
        """The rule's scope (direction and domains); the detectors decide the rest."""
        if self.direction != "any" and outbound != (self.direction == "outbound"):
            return False
        if self.sender_domain is not None and not self.sender_domain.fullmatch(_domain(sender)):
            return False
        domains = [_domain(r) for r in recipients]
        if self.recipient_domain is not None and not any(self.recipient_domain.fullmatch(d) for d in domains):
            return False
        internal = self.except_recipient_domain
        return internal is None or not domains or not all(internal.fullmatch(d) for d in domains)

    def reply_text(self) -> str:
        text = self.reply or "message refused: it appears to contain protected data"
        text = "".join(c if c.isprintable() else " " for c in text).strip()[:MAX_REPLY]
        return "D" + (text if "(#" in text else f"{text} (#5.7.1)")


@dataclass(frozen=True)
class EncryptedPolicy:
    action: str = "allow"
    direction: str = "outbound"
    record: bool = True

    def applies(self, outbound: bool) -> bool:
        return self.direction == "any" or outbound == (self.direction == "outbound")


@dataclass
class DlpPolicy:
    """A loaded rules file: the detectors the rules use, compiled once, and the rules."""

    rules: list[Rule] = field(default_factory=list)
    detectors: dict[str, Detector] = field(default_factory=dict)
    encrypted: EncryptedPolicy = field(default_factory=EncryptedPolicy)
    source: str = ""


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1].lower().rstrip(".") if "@" in address else ""


def builtin_detector_names() -> list[str]:
    return ["payment_card", "iban", *NATIONAL_IDS]


def _build(name: str, spec: DetectorSpec | None) -> Detector:
    """One detector from its section (None: a built-in with its defaults). Raises ValueError."""
    if spec is None:
        if name == "payment_card":
            return CardDetector(name)
        if name == "iban":
            return IbanDetector(name)
        if name in NATIONAL_IDS:
            return national_id_detector(name, name)
        raise ValueError(f"unknown detector {name!r} (built in: {', '.join(builtin_detector_names())}; "
                         "or define it in a [detectors.NAME] section)")
    ignore = frozenset("".join(c for c in v if c.isalnum()).upper() for v in spec.ignore)
    if isinstance(spec, CardSpec):
        return CardDetector(name, spec.allow_test_numbers,
                            card_context(spec.window) if spec.context is None
                            else Context(spec.context, spec.window), ignore)
    if isinstance(spec, IbanSpec):
        return IbanDetector(name, frozenset(spec.countries),
                            Context(spec.context if spec.context is not None else IBAN_CONTEXT, spec.window),
                            ignore)
    if isinstance(spec, NationalIdSpec):
        return national_id_detector(name, spec.id, pattern=spec.pattern, context=spec.context,
                                    window=spec.window, require_context=spec.require_context,
                                    allow_test_numbers=spec.allow_test_numbers, ignore=spec.ignore)
    if isinstance(spec, RegexSpec):
        try:
            return regex_detector(name, spec.pattern, ignore_case=spec.ignore_case,
                                  confidence=spec.confidence, context=spec.context or (),
                                  window=spec.window, require_context=spec.require_context)
        except RegexError as exc:
            raise ValueError(f"bad regex {exc}") from None
    return keyword_detector(name, spec.keywords, case_sensitive=spec.case_sensitive,
                            confidence=spec.confidence, context=spec.context or (), window=spec.window,
                            require_context=spec.require_context, evidence=spec.evidence)


def _globs(values: list[str]) -> Pattern | None:
    values = [v.strip().lower().rstrip(".") for v in values if v.strip()]
    return compile_globs(values) if values else None


def compile_rules(data: RulesFile, source: str = "rules") -> DlpPolicy:
    """Check and compile a parsed rules file. Raises DlpRulesError naming every problem."""
    problems: list[str] = []
    detectors: dict[str, Detector] = {}
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, spec in enumerate(data.rule, 1):
        where = f"{source}: rule #{i} ({spec.id})"
        if spec.id in seen:
            problems.append(f"{where}: duplicate rule id")
        seen.add(spec.id)
        for name in spec.detectors:
            if name in detectors:
                continue
            try:
                detectors[name] = _build(name, data.detectors.get(name))
            except ValueError as exc:
                problems.append(f"{where}: detector {name!r}: {exc}")
        try:
            scope = [_globs(spec.sender_domain), _globs(spec.recipient_domain),
                     _globs(spec.except_recipient_domain)]
        except RegexError as exc:
            problems.append(f"{where}: bad domain pattern {exc}")
            continue
        rules.append(Rule(
            id=spec.id, description=spec.description, detectors=tuple(dict.fromkeys(spec.detectors)),
            min_confidence=Confidence.parse(spec.min_confidence), min_count=spec.min_count,
            direction=spec.direction, sender_domain=scope[0], recipient_domain=scope[1],
            except_recipient_domain=scope[2], action=spec.action,
            notify=spec.notify if spec.notify is not None else spec.action != "monitor",
            allow_encrypted=spec.allow_encrypted, reply=spec.reply,
        ))
    for name, dspec in data.detectors.items():  # defined but unused: still checked
        if name not in detectors:
            try:
                _build(name, dspec)
            except ValueError as exc:
                problems.append(f"{source}: detector {name!r}: {exc}")
    if problems:
        raise DlpRulesError(problems)
    enc = data.encrypted
    return DlpPolicy(rules, detectors, EncryptedPolicy(enc.action, enc.direction, enc.record), source)


def parse_rules(text: str, source: str = "rules") -> DlpPolicy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DlpRulesError([f"{source}: TOML syntax error: {exc}"]) from None
    problems = _evidence_problems(raw, text, source)
    try:
        data = RulesFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = list(err["loc"])
            if len(loc) >= 3 and loc[0] == "detectors" and loc[-1] == "evidence" \
                    and any(f"'detectors.{loc[1]}.evidence'" in p for p in problems):
                continue  # said above, more clearly
            if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
                listed = raw.get("rule")
                rules: list[Any] = listed if isinstance(listed, list) else []
                entry = rules[loc[1]] if loc[1] < len(rules) else None
                rid = entry.get("id", "?") if isinstance(entry, dict) else "?"
                where = f"rule #{loc[1] + 1} ({rid})"
                key = ".".join(str(k) for k in loc[2:])
            else:
                where, key = "", ".".join(str(k) for k in loc)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{source}: {where + ': ' if where else ''}key '{key}': {msg}")
        raise DlpRulesError(problems) from None
    if problems:
        raise DlpRulesError(problems)
    return compile_rules(data, source)


def _evidence_problems(raw: dict[str, Any], text: str, source: str) -> list[str]:
    """``evidence = "clear"`` shows what was matched: allowed for keyword dictionaries (the
    word is the site's own), never for a detector that finds numbers or a regex's matches."""
    problems = []
    detectors = raw.get("detectors")
    for name, spec in (detectors.items() if isinstance(detectors, dict) else ()):
        if not isinstance(spec, dict) or "evidence" not in spec or spec.get("type") == "keywords":
            continue
        kind = spec.get("type", "?")
        line = _line_of(text, name, "evidence")
        problems.append(
            f"{source}{f':{line}' if line else ''}: key 'detectors.{name}.evidence': only a keyword "
            f"dictionary (type = \"keywords\") may set evidence; what a {kind} detector finds is always "
            "masked (full values never go to events, logs or SQL)")
    return problems


def _line_of(text: str, detector: str, key: str) -> int | None:
    """The line of ``key`` in ``[detectors.NAME]`` (or an inline/dotted form naming it)."""
    header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    assign = re.compile(rf"^\s*{re.escape(key)}\s*=")
    table: list[str] = []
    fallback = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            table = [p.strip().strip('"').strip("'") for p in m.group(1).split(".")]
            continue
        if table == ["detectors", detector] and assign.match(line):
            return lineno
        if fallback is None and detector in line and re.search(rf"\b{re.escape(key)}\s*=", line):
            fallback = lineno
    return fallback


def load_rules(path: Path) -> DlpPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DlpRulesError([f"{path}: cannot read the DLP rules: {exc}"]) from None
    return parse_rules(text, str(path))


# -- [dlp]: the scanner's settings (composed into qscan's Config, docs/dlp.md) ----------------
_EXTRACT = ExtractLimits()  # the extraction defaults are the extractor's own
DlpErrorAction = Literal["quarantine", "reject", "tempfail", "deliver"]


@dataclass(frozen=True, slots=True)
class DlpSettings:
    """Data loss prevention (docs/dlp.md). Runs only when "dlp" is in scanners.enabled, which
    needs a rules file: the DLP rules say what matters, there is no useful default."""

    __pydantic_config__ = SECTION
    rules: Path | None = setting(
        None, "DLP rules file (TOML); required when 'dlp' is enabled", example="dlp.toml")
    headers: tuple[str, ...] = setting(("Subject",), "headers whose text is inspected besides bodies")
    max_part_size: int = setting(_EXTRACT.max_part_size, "attachments bigger than this are not read", ge=1024)
    max_text: int = setting(_EXTRACT.max_text, "characters of text inspected per message", ge=1000)
    max_time: float = setting(_EXTRACT.max_time, "seconds of text extraction per message", gt=0)
    max_pdf_pages: int = setting(_EXTRACT.max_pdf_pages, "pages of one PDF read", ge=1)
    max_depth: int = setting(_EXTRACT.unpack.max_depth, "archives within archives unpacked", ge=0, le=100)
    max_members: int = setting(_EXTRACT.unpack.max_members, "archive members per message", ge=1)
    max_total_bytes: int = setting(
        _EXTRACT.unpack.max_total_bytes, "bytes unpacked from archives per message", ge=1024)
    error_action: DlpErrorAction = setting(
        "quarantine", "an internal DLP error: the message is not let out unexamined by default")

    @property
    def limits(self) -> ExtractLimits:
        return ExtractLimits.of(self)
