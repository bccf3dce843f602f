"""Who is told about an event, in which language — and who is deliberately not.

The rules follow Qmail-Scanner's, which learned them the hard way: almost every
virus forges its sender, so senders are told only of policy blocks by default
("psender"); recipients are told only when they are ours (local domains); lists,
bulk mail, bounces and postmaster-style robots are never answered. Everything
here is a pure function of the event, its header marks and the policy, so
``qscan notify plan`` can show an administrator exactly why someone was or was
not told.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from compliance.notify.marks import MailMarks
from compliance.notify.settings import ALL_KINDS, Kind, NotifySettings
from ingest.event import Action, Category, MessageScanned
from scanners.direction import in_domains


class Audience(StrEnum):
    SENDER = "sender"
    RECIPIENT = "recipient"
    ADMIN = "admin"
    OFFICER = "officer"  # compliance officer: DLP events, reads the admin templates

    @property
    def template(self) -> str:
        return "admin" if self is Audience.OFFICER else self.value


SENDER_KINDS = {"none": frozenset(), "psender": frozenset({Kind.POLICY}), "all": ALL_KINDS}
_QUARANTINE_KIND = {Category.VIRUS: Kind.VIRUS, Category.SPAM: Kind.SPAM, Category.DLP: Kind.DLP}
# A usable mailbox: no spaces, controls, brackets or a leading dash (it becomes an argv
# element for qmail-inject), one @, a domain of letters, digits, dots and dashes.
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\\x00-\x1f\x7f-][^@\s<>()\[\],;:\"\\\x00-\x1f\x7f]*"
                      r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class NotifyPolicy(NotifySettings):
    """The audience rules' view of [notify] (compliance/notify/settings.py), with the addresses
    notifications come from (never told: a notice about a notice would loop)."""

    own_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification to send: to whom, as which audience, about which kind, in which language."""

    address: str
    audience: Audience
    kind: Kind
    language: str


@dataclass(frozen=True, slots=True)
class Plan:
    notices: list[Notice]
    skipped: list[tuple[str, str]]  # (address or role, why not)


def kind_of(event: MessageScanned) -> Kind | None:
    """The notification kind of an event; None when nobody is told (delivered clean, tempfail)."""
    if event.action == Action.REJECT:
        return Kind.REJECT
    if event.action == Action.QUARANTINE:
        return _QUARANTINE_KIND.get(event.category, Kind.POLICY)
    if is_dlp(event) and event.action in (Action.DELIVER, Action.DROP):
        return Kind.DLP  # the compliance officer still hears of it
    return None


def is_dlp(event: MessageScanned) -> bool:
    return event.category == Category.DLP or bool(event.dlp_findings)


def officer_wanted(event: MessageScanned) -> bool:
    """The compliance officer hears of DLP events a rule asked to tell them of: a finding whose
    ``notify`` is true (rules with action notify, quarantine or reject), or one that does not
    say (other producers). ``monitor`` findings carry ``notify: false``: recorded, not told."""
    if event.dlp_findings:
        return any(d.get("notify", True) for d in event.dlp_findings)
    return event.category == Category.DLP


def usable_address(address: str) -> bool:
    return len(address) <= 320 and _ADDRESS.fullmatch(address) is not None


def normalise(address: str) -> str:
    """Local part as given (it may be case-sensitive), domain lowercased."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def is_local(address: str, local_domains: tuple[str, ...]) -> bool:
    """Exact domains, and '.example.com' for every subdomain (qmail's rcpthosts convention)."""
    return in_domains(domain_of(address), local_domains)


def language_for(address: str, audience: Audience, policy: NotifyPolicy) -> str:
    """Admin and officer: their own setting; others: by domain (parents too), else the default."""
    if audience in (Audience.ADMIN, Audience.OFFICER):
        return policy.admin_language or policy.default_language
    labels = domain_of(address).split(".")
    for i in range(len(labels)):
        lang = policy.languages.get(".".join(labels[i:]))
        if lang:
            return lang
    return policy.default_language


def forging_virus(event: MessageScanned, patterns: tuple[str, ...]) -> str | None:
    """The first virus name matching a known sender-forging family, if any."""
    for f in event.findings:
        if f.verdict == Category.VIRUS and f.name:
            name = f.name.lower()
            if any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns):
                return f.name
    return None


def sender_silence(event: MessageScanned, marks: MailMarks | None, policy: NotifyPolicy) -> str | None:
    """Why the envelope sender must not be told, or None when they may be."""
    sender = event.envelope.sender
    if sender in ("", "#@[]"):
        return "null sender (a bounce)"
    if not usable_address(sender):
        return "not a usable address"
    local = sender.rpartition("@")[0].lower()
    for pattern in policy.never_notify:
        if fnmatch.fnmatchcase(local, pattern.lower()):
            return f"postmaster-style sender ({pattern})"
    if normalise(sender).lower() in {a.lower() for a in policy.own_addresses}:
        return "our own address"
    virus = forging_virus(event, policy.forging_viruses)
    if virus:
        return f"virus known to forge senders ({virus})"
    if marks is None:
        return "message headers unavailable: list or bulk mail cannot be ruled out"
    return marks.silence_reason()


def too_old(event: MessageScanned, policy: NotifyPolicy, now: datetime) -> bool:
    return policy.max_age > 0 and event.time < now - timedelta(seconds=policy.max_age)


def plan(event: MessageScanned, marks: MailMarks | None, policy: NotifyPolicy,
         now: datetime | None = None) -> Plan:
    """Everyone to tell about ``event`` (one notice per address, most informed role first).

    ``now`` (aware): events older than ``policy.max_age`` then tell nobody."""
    kind = kind_of(event)
    if kind is None:
        return Plan([], [("*", f"nothing to tell ({event.action.value}, {event.category.value})")])
    if now is not None and too_old(event, policy, now):
        return Plan([], [("*", f"the event is older than notify.max_age ({policy.max_age:g} s): "
                               f"it happened at {event.time.isoformat()}")])
    if marks is not None and marks.notification:  # verified: forged marks are ordinary mail
        return Plan([], [("*", "the message is itself a qscan notification (signed mark)")])
    notices: list[Notice] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, Audience] = {}

    def add(address: str, audience: Audience) -> None:
        addr = normalise(address)
        if addr.lower() in seen:
            skipped.append((address, f"already told as {seen[addr.lower()].value}"))
            return
        seen[addr.lower()] = audience
        notices.append(Notice(addr, audience, kind, language_for(addr, audience, policy)))

    held = event.action in (Action.QUARANTINE, Action.REJECT)
    if policy.admin and held and kind in policy.admin_kinds:
        add(policy.admin, Audience.ADMIN)
    if policy.compliance_officer and officer_wanted(event):
        add(policy.compliance_officer, Audience.OFFICER)
    elif policy.compliance_officer and is_dlp(event):
        skipped.append((policy.compliance_officer, "DLP findings are monitor-only (notify = false)"))
    if not held:
        skipped.append(("sender and recipients", f"the message was not held ({event.action.value})"))
        return Plan(notices, skipped)
    if not policy.recipients or kind not in policy.recipient_kinds:
        skipped.append(("recipients", f"recipients are not told of {kind.value}"))
    else:
        for rcpt in event.envelope.recipients:
            if not usable_address(rcpt):
                skipped.append((rcpt, "not a usable address"))
            elif not is_local(rcpt, policy.local_domains):
                skipped.append((rcpt, "not in a local domain"))
            else:
                add(rcpt, Audience.RECIPIENT)
    sender = event.envelope.sender or "<>"
    if kind not in SENDER_KINDS.get(policy.sender, frozenset()):
        skipped.append((sender, f"senders are not told of {kind.value} (notify.sender = {policy.sender})"))
    else:
        why = sender_silence(event, marks, policy)
        if why:
            skipped.append((sender, why))
        else:
            add(event.envelope.sender, Audience.SENDER)
    return Plan(notices, skipped)
