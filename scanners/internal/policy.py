"""The policy rules engine: an ordered list of rules from a TOML file, compiled once.

Rules are read top to bottom like a firewall. Within a rule every condition
given must hold (AND); within one condition's list any entry may match (OR);
attachment conditions must all hold for the *same* attachment (a MIME part or
an archive member). The first matching rule whose action is ``quarantine``,
``reject``, ``tempfail``, ``drop`` or ``allow`` decides and ends evaluation;
``tag`` rules add their header and evaluation goes on. After the site's rules
come the built-in rules of the format checks (one per enabled check, action
configurable), so a site rule naming a finding can pre-empt a check's default,
and an ``allow`` rule exempts mail from them.

Regexes and globs are compiled with RE2 (``safe_regex``): mail is hostile.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scanners.direction import leaves_site
from scanners.internal.checks import (
    CHECK_ACTIONS,
    CHECKS,
    DEFAULT_DANGEROUS_EXTENSIONS,
    EXECUTABLE_FORMATS,
    CheckHit,
)
from scanners.internal.items import Item
from scanners.internal.safe_regex import Pattern, RegexError, compile_globs, compile_regex
from scanners.internal.unpack import UnpackLimits
from scanners.settings import SECTION, Check, setting
from scanners.text import breaks_line, one_line

ActionName = Literal["quarantine", "reject", "tempfail", "drop", "tag", "allow"]
TERMINAL = frozenset(("quarantine", "reject", "tempfail", "drop", "allow"))
CategoryName = Literal["policy", "virus", "malformed", "spam", "dlp"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,79}$"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
MAX_REPLY = 400


class PolicyError(Exception):
    """A rules file that cannot be used; ``problems`` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Problem:
    level: Literal["error", "warning"]
    where: str  # 'file: rule #3 (id)'
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


class RuleSpec(BaseModel):
    """One rule as written in the rules file (see docs/policy.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    description: str = ""
    action: ActionName
    category: CategoryName = "policy"
    reply: str | None = Field(None, description="reject/tempfail text (no D/Z prefix needed)")
    tag_header: str | None = Field(None, description="'Name: value' added by action = 'tag'")
    # scope
    direction: Literal["inbound", "outbound", "any"] = "any"
    recipient_domain: list[str] = []
    # attachment conditions (one attachment must satisfy all of them)
    filename: list[str] = []
    filename_regex: list[str] = []
    declared_type: list[str] = []
    detected_type: list[str] = []
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    encrypted: bool | None = None
    in_archive: bool | None = None
    # message conditions
    header: dict[str, str] = {}
    sender: list[str] = []
    sender_domain: list[str] = []
    recipient: list[str] = []
    client_ip: list[str] = []
    relay: bool | None = None
    finding: list[str] = []
    message_min_size: int | None = Field(None, ge=0)
    message_max_size: int | None = Field(None, ge=0)

    def attachment_fields(self) -> bool:
        return bool(
            self.filename or self.filename_regex or self.declared_type or self.detected_type
            or self.min_size is not None or self.max_size is not None
            or self.encrypted is not None or self.in_archive is not None
        )


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: list[RuleSpec] = []


@dataclass(slots=True)
class MessageFacts:
    """What the rules see of one message."""

    sender: str
    recipients: list[str]
    client_ip: str | None
    relay: bool
    size: int
    items: list[Item]
    hits: list[CheckHit]
    header_source: Callable[[], list[tuple[str, str]]] = lambda: []
    _headers: list[tuple[str, str]] | None = None
    # The mail leaves the site: sent by a trusted relay client (RELAYCLIENT), or injected locally
    # to a recipient outside the local domains. None: the same as ``relay``.
    outbound: bool | None = None

    def headers(self) -> list[tuple[str, str]]:
        """(lowercased name, decoded value) pairs, computed on first use."""
        if self._headers is None:
            self._headers = self.header_source()
        return self._headers


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    evidence: str
    hit: CheckHit | None = None


@dataclass(slots=True)
class Evaluation:
    decided: Match | None = None
    tags: list[Match] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.decided is not None and self.decided.rule.action == "allow"


def _domain(addr: str) -> str:
    return addr.rsplit("@", 1)[1].lower() if "@" in addr else ""


@dataclass(slots=True)
class Rule:
    """A compiled rule. Built from a RuleSpec, or built in for a format check."""

    id: str
    action: str
    category: str = "policy"
    description: str = ""
    builtin: bool = False
    reply: str | None = None
    header: tuple[str, str] | None = None  # for tag
    direction: str = "any"
    # compiled conditions; None means "not constrained"
    recipient_domain: Pattern | None = None
    filename: Pattern | None = None
    filename_regex: list[Pattern] = field(default_factory=list)
    declared_type: Pattern | None = None
    detected_type: Pattern | None = None
    min_size: int | None = None
    max_size: int | None = None
    encrypted: bool | None = None
    in_archive: bool | None = None
    header_res: list[tuple[str, Pattern]] = field(default_factory=list)
    sender: Pattern | None = None
    sender_domain: Pattern | None = None
    recipient: Pattern | None = None
    client_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    relay: bool | None = None
    finding: frozenset[str] = frozenset()
    message_min_size: int | None = None
    message_max_size: int | None = None
    has_attachment_conditions: bool = False

    # -- evaluation ---------------------------------------------------------------------------
    def match(self, f: MessageFacts) -> Match | None:
        evidence: list[str] = []
        hit: CheckHit | None = None
        if self.direction != "any" and leaves_site(f.relay, f.outbound) != (self.direction == "outbound"):
            return None
        if self.relay is not None and self.relay != f.relay:
            return None
        if self.message_min_size is not None and f.size < self.message_min_size:
            return None
        if self.message_max_size is not None and f.size > self.message_max_size:
            return None
        if self.client_nets:
            ip = _ip(f.client_ip)
            if ip is None or not any(ip.version == n.version and ip in n for n in self.client_nets):
                return None
            evidence.append(f"client {f.client_ip}")
        if self.sender is not None and not self.sender.fullmatch(f.sender):
            return None
        if self.sender_domain is not None and not self.sender_domain.fullmatch(_domain(f.sender)):
            return None
        if self.recipient is not None:
            who = next((r for r in f.recipients if self.recipient.fullmatch(r)), None)
            if who is None:
                return None
            evidence.append(f"recipient {who}")
        if self.recipient_domain is not None and not any(
            self.recipient_domain.fullmatch(_domain(r)) for r in f.recipients
        ):
            return None
        if self.finding:
            hit = next((h for h in f.hits if h.check in self.finding), None)
            if hit is None:
                return None
            evidence.append(f"{hit.check} at {hit.describe()}")
        for name, pattern in self.header_res:
            value = next((v for n, v in f.headers() if n == name and pattern.search(v)), None)
            if value is None:
                return None
            evidence.append(f"{name}: {value[:80]}")
        if self.has_attachment_conditions:
            item = next((i for i in f.items if self._item_matches(i)), None)
            if item is None:
                return None
            evidence.append(f"{item.path}" + (f" ({item.filename})" if item.filename else ""))
        return Match(self, "; ".join(evidence), hit)

    def _item_matches(self, i: Item) -> bool:
        if self.encrypted is not None and i.encrypted != self.encrypted:
            return False
        if self.in_archive is not None and i.in_archive != self.in_archive:
            return False
        if self.min_size is not None and i.size < self.min_size:
            return False
        if self.max_size is not None and i.size > self.max_size:
            return False
        if self.filename is not None or self.filename_regex:
            names = i.all_names()
            if not names:
                return False
            if self.filename is not None and not any(self.filename.fullmatch(n.strip()) for n in names):
                return False
            if self.filename_regex and not all(any(r.search(n) for n in names) for r in self.filename_regex):
                return False
        if self.declared_type is not None and not self.declared_type.fullmatch(i.declared_type or ""):
            return False
        return self.detected_type is None or bool(self.detected_type.fullmatch(i.detected_type or ""))

    # -- what the action asks for --------------------------------------------------------------
    def reply_text(self) -> str | None:
        what = one_line(self.reply or self.description, MAX_REPLY)
        if self.action == "reject":
            return "D" + (what or "message refused by content policy") + (
                "" if self.reply else " (#5.7.1)")
        if self.action == "tempfail":
            return "Z" + (what or "temporarily refused by content policy") + (
                "" if self.reply else ", try again later (#4.7.1)")
        return None

    def tag(self) -> tuple[str, str]:
        return self.header or ("X-qscan-Policy", self.id)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class RuleSet:
    """Ordered compiled rules; ``evaluate`` walks them once per message."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(self, facts: MessageFacts) -> Evaluation:
        ev = Evaluation()
        present = {h.check for h in facts.hits}
        for rule in self.rules:
            if rule.finding and rule.finding.isdisjoint(present):
                continue  # cheap: most mail trips no check, and every check rule needs one
            m = rule.match(facts)
            if m is None:
                continue
            if rule.action == "tag":
                ev.tags.append(m)
                continue
            ev.decided = m
            break
        return ev

    def plus(self, more: Iterable[Rule]) -> RuleSet:
        return RuleSet([*self.rules, *more])


# -- compiling --------------------------------------------------------------------------------------
def _where(source: str, index: int, rule_id: str | None) -> str:
    return f"{source}: rule #{index}" + (f" ({rule_id})" if rule_id else "")


def compile_rule(spec: RuleSpec, where: str, problems: list[Problem]) -> Rule | None:
    """Compile one rule; append its problems. None when it has errors."""
    errors = len(problems)

    def err(msg: str) -> None:
        problems.append(Problem("error", where, msg))

    def globs(values: list[str], what: str) -> Pattern | None:
        if not values:
            return None
        try:
            return compile_globs([v.strip() for v in values])
        except RegexError as exc:
            err(f"{what}: {exc}")
            return None

    rule = Rule(id=spec.id, action=spec.action, category=spec.category, description=spec.description,
                reply=spec.reply, direction=spec.direction)
    rule.recipient_domain = globs(spec.recipient_domain, "recipient_domain")
    rule.filename = globs(spec.filename, "filename")
    rule.declared_type = globs(spec.declared_type, "declared_type")
    rule.detected_type = globs(spec.detected_type, "detected_type")
    rule.sender = globs(spec.sender, "sender")
    rule.sender_domain = globs(spec.sender_domain, "sender_domain")
    rule.recipient = globs(spec.recipient, "recipient")
    for pattern in spec.filename_regex:
        try:
            rule.filename_regex.append(compile_regex(pattern))
        except RegexError as exc:
            err(f"filename_regex: bad regex {exc}")
    for name, pattern in spec.header.items():
        if not _HEADER_NAME.fullmatch(name):
            err(f"header: {name!r} is not a header name")
            continue
        try:
            rule.header_res.append((name.lower(), compile_regex(pattern)))
        except RegexError as exc:
            err(f"header {name}: bad regex {exc}")
    for net in spec.client_ip:
        try:
            rule.client_nets.append(ipaddress.ip_network(net.strip(), strict=False))
        except ValueError as exc:
            err(f"client_ip: {exc}")
    unknown = [f for f in spec.finding if f not in CHECKS]
    if unknown:
        err(f"finding: unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    rule.finding = frozenset(spec.finding)
    rule.min_size, rule.max_size = spec.min_size, spec.max_size
    rule.message_min_size, rule.message_max_size = spec.message_min_size, spec.message_max_size
    rule.encrypted, rule.in_archive, rule.relay = spec.encrypted, spec.in_archive, spec.relay
    rule.has_attachment_conditions = spec.attachment_fields()
    if spec.tag_header is not None:
        name, sep, value = spec.tag_header.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(name.strip()) or breaks_line(value):
            err(f"tag_header: expected 'Name: value' on one line, got {spec.tag_header!r}")
        else:
            rule.header = (name.strip(), value.strip())
    if spec.action != "tag" and spec.tag_header is not None:
        problems.append(Problem("warning", where, "tag_header is only used by action = 'tag'"))
    if spec.action not in ("reject", "tempfail") and spec.reply is not None:
        problems.append(Problem("warning", where, "reply is only used by reject and tempfail"))
    return None if any(p.level == "error" for p in problems[errors:]) else rule


def parse_rules(text: str, source: str = "rules") -> tuple[list[tuple[int, RuleSpec, Rule]], list[Problem]]:
    """Parse and compile a rules file: (index, spec, rule) for each rule that compiled, and problems."""
    problems: list[Problem] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [Problem("error", source, f"TOML syntax error: {exc}")]
    extra = [k for k in data if k != "rule"]
    if extra:
        problems.append(Problem("error", source, f"unknown top-level key(s): {', '.join(extra)} "
                                                 "(rules are [[rule]] tables)"))
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        return [], [*problems, Problem("error", source, "'rule' must be an array of tables ([[rule]])")]
    out: list[tuple[int, RuleSpec, Rule]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules, 1):
        rid = raw.get("id") if isinstance(raw, dict) else None
        where = _where(source, index, rid if isinstance(rid, str) else None)
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"]) or "rule"
                msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
                problems.append(Problem("error", where, f"{loc}: {msg}"))
            continue
        if spec.id in seen:
            problems.append(Problem("error", where, f"duplicate id (also rule #{seen[spec.id]})"))
        elif spec.id in CHECKS:
            problems.append(Problem("error", where, "id is the name of a built-in check; choose another"))
        seen.setdefault(spec.id, index)
        rule = compile_rule(spec, where, problems)
        if rule is not None:
            out.append((index, spec, rule))
    return out, problems


def load_rules(path: str | Path | None) -> RuleSet:
    """The site's rules (empty without a file); raises PolicyError on any error."""
    if path is None:
        return RuleSet([])
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem("error", str(p), f"cannot read rules: {exc}")]) from exc
    compiled, problems = parse_rules(text, str(p))
    errors = [x for x in problems if x.level == "error"]
    if errors:
        raise PolicyError(errors)
    return RuleSet(rule for _i, _spec, rule in compiled)


# -- linting ----------------------------------------------------------------------------------------
def _covers_list(a: list[str], b: list[str]) -> bool:
    """Condition a (OR of its entries) holds wherever b holds: a unconstrained, or b's ⊆ a's."""
    if not a:
        return True
    return bool(b) and {x.strip().lower() for x in b} <= {x.strip().lower() for x in a}


def _covers_bound(a: int | None, b: int | None, lower: bool) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    return b >= a if lower else b <= a


def _covers_nets(a: list[str], b: list[str]) -> bool:
    if not a:
        return True
    if not b:
        return False
    try:
        an = [ipaddress.ip_network(x.strip(), strict=False) for x in a]
        bn = [ipaddress.ip_network(x.strip(), strict=False) for x in b]
    except ValueError:
        return False
    return all(any(n.version == m.version and n.subnet_of(m) for m in an) for n in bn)  # type: ignore[arg-type]


def shadows(a: RuleSpec, b: RuleSpec) -> bool:
    """Earlier terminal rule ``a`` matches every message ``b`` matches, so ``b`` can never decide."""
    if a.action not in TERMINAL:
        return False
    if a.direction != "any" and a.direction != b.direction:
        return False
    for flag in ("encrypted", "in_archive", "relay"):
        if getattr(a, flag) is not None and getattr(a, flag) != getattr(b, flag):
            return False
    for lst in ("recipient_domain", "filename", "filename_regex", "declared_type", "detected_type",
                "sender", "sender_domain", "recipient", "finding"):
        if not _covers_list(getattr(a, lst), getattr(b, lst)):
            return False
    if not _covers_nets(a.client_ip, b.client_ip):
        return False
    for lo, hi in (("min_size", "max_size"), ("message_min_size", "message_max_size")):
        if not (_covers_bound(getattr(a, lo), getattr(b, lo), True)
                and _covers_bound(getattr(a, hi), getattr(b, hi), False)):
            return False
    return all(b.header.get(k) == v for k, v in a.header.items())


def lint(text: str, source: str = "rules") -> list[Problem]:
    """Every problem in a rules file: errors (it will not load) and unreachable rules."""
    compiled, problems = parse_rules(text, source)
    for j, (index, b, _rule) in enumerate(compiled):
        for _i, a, _r in compiled[:j]:
            if shadows(a, b):
                problems.append(Problem(
                    "error", _where(source, index, b.id),
                    f"unreachable: rule {a.id!r} comes first, matches everything this rule matches "
                    f"and stops evaluation ({a.action})",
                ))
                break
    return problems


# -- [internal]: the scanner's settings (composed into qscan's Config, docs/policy.md) ---------
_DOMAIN_GLOB = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9.*?-]{0,252}")
_UNPACK = UnpackLimits()  # the unpacking defaults are the unpacker's own


def _known_checks(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    return value


def _extensions(value: frozenset[str]) -> frozenset[str]:
    return frozenset(v.strip().lstrip(".").lower() for v in value if v.strip().lstrip("."))


def _allowed(value: frozenset[str], dangerous: frozenset[str], key: str) -> frozenset[str]:
    """Entries normalised like dangerous_extensions; one that bans nothing is a mistake."""
    entries = _extensions(value)
    unknown = sorted(e for e in entries if e not in {*dangerous, *EXECUTABLE_FORMATS})
    if unknown:
        raise ValueError(f"{key}: {', '.join(unknown)} is not banned (entries are extensions from "
                         f"dangerous_extensions or the formats {', '.join(EXECUTABLE_FORMATS)})")
    return entries


def _allow(value: frozenset[str], *, dangerous_extensions: frozenset[str]) -> frozenset[str]:
    return _allowed(value, dangerous_extensions, "allow_banned")


def _allow_by_domain(value: dict[str, frozenset[str]], *,
                     dangerous_extensions: frozenset[str]) -> dict[str, frozenset[str]]:
    bad = [d for d in value if not _DOMAIN_GLOB.fullmatch(d.strip())]
    if bad:
        raise ValueError(f"allow_banned_by_domain: {', '.join(map(repr, bad))} is not a domain "
                         "(letters, digits, '.', '-', and '*' or '?' as wildcards)")
    return {domain.strip().lower(): _allowed(v, dangerous_extensions, f"allow_banned_by_domain.{domain}")
            for domain, v in value.items()}


@dataclass(frozen=True, slots=True)
class InternalSettings:
    """The internal scanner: format checks, unpacking limits, policy rules (docs/policy.md)."""

    __pydantic_config__ = SECTION
    rules: Path | None = setting(
        None, "policy rules file (TOML); unset: built-in check rules only", example="policy.toml")
    checks: Annotated[dict[str, Literal[CHECK_ACTIONS]], Check(_known_checks)] = setting(  # type: ignore[valid-type]
        {}, "per-check action: quarantine|reject|tempfail|drop|tag|record|off (defaults in "
        'docs/policy.md), e.g. { password-protected-archive = "quarantine" }')
    ignore_eol: bool = setting(False, "do not flag bare CR in MIME headers (NUL still is)")
    dangerous_extensions: Annotated[frozenset[str], Check(_extensions)] = setting(
        frozenset(DEFAULT_DANGEROUS_EXTENSIONS),
        "extensions banned at any depth (check banned-extension), and the final extensions that "
        "make a double-barrelled name (invoice.pdf.exe) dangerous")
    allow_banned: Annotated[frozenset[str], Check(_allow, "dangerous_extensions")] = setting(
        frozenset(), "banned extensions (exe) and executable formats (pe, elf, mach-o) delivered "
        'after all, e.g. ["exe"]')
    allow_banned_by_domain: Annotated[dict[str, frozenset[str]],
                                      Check(_allow_by_domain, "dangerous_extensions")] = setting(
        {}, "recipient domain (glob) -> extensions/formats it may receive; applies when every "
        'recipient\'s domain allows the file, e.g. { "build.example.com" = ["exe", "msi"] }')
    max_depth: int = setting(_UNPACK.max_depth, "archives nested within archives", ge=0, le=100)
    max_members: int = setting(_UNPACK.max_members, "archive members per message", ge=1)
    max_total_bytes: int = setting(_UNPACK.max_total_bytes, "expanded bytes per message", ge=1024)
    max_ratio: float = setting(_UNPACK.max_ratio, "expanded/compressed size of one archive (zip bombs)", gt=1)
    max_time: float = setting(_UNPACK.max_time, "seconds of inspection and unpacking per message", ge=0)
    error_action: Literal["quarantine", "reject", "tempfail", "drop", "deliver"] = setting(
        "quarantine", "what an internal error in the scanner does (finding: internal-error), and "
        "MIME the parser cannot read at all (finding: unparseable)")

    def action(self, check: str) -> str:
        return self.checks.get(check, CHECKS[check][1])

    @property
    def limits(self) -> UnpackLimits:
        return UnpackLimits(max_depth=self.max_depth, max_members=self.max_members,
                            max_total_bytes=self.max_total_bytes, max_ratio=self.max_ratio,
                            max_time=self.max_time)
