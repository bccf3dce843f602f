"""[notify]: who is told about quarantined, rejected and DLP-caught mail, and how.

One frozen dataclass for the whole section (docs/notifications.md), composed into qscan's
Config and handed to the notify consumer as it is: the audience rules read it as the base of
``NotifyPolicy`` (audience.py), the renderer, the transports and the outbox's retry policy
take it whole. The notification kinds and the template languages are defined here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from scanners.settings import SECTION, Check, Secret, domain_names, setting

LANGUAGES = ("en", "it", "af", "pl", "sv", "cs", "de", "es", "tr", "lt", "fr", "pt", "nl", "zh")
Language = Literal[LANGUAGES]  # type: ignore[valid-type]


class Kind(StrEnum):
    VIRUS = "virus"
    POLICY = "policy"
    SPAM = "spam"
    DLP = "dlp"
    REJECT = "reject"


ALL_KINDS = frozenset(Kind)
# Viruses known to forge the sender (Qmail-Scanner's list, kept up to date): their
# "senders" are innocent bystanders and are never told. Case-insensitive globs on the name.
DEFAULT_FORGING_VIRUSES = (
    "*klez*", "*bugbear*", "*hybris*", "*yaha*", "*braid*", "*nimda*", "*tanatos*", "*sobig*",
    "*winevar*", "*palyh*", "*fizzer*", "*gibe*", "*cailont*", "*lovelorn*", "*swen*", "*dumaru*",
    "*sober*", "*hawawi*", "*holar*", "*mimail*", "*poffer*", "*bagle*", "*beagle*", "*mydoom*",
    "*novarg*", "*netsky*", "*lovgate*", "*zafi*", "*mytob*", "*warezov*", "*stration*",
    "*nyxem*", "*bagz*", "*@mm*", "*mass-mailer*", "*massmailer*", "*email-worm*", "*email.worm*",
    "*i-worm*", "*worm.mass*", "*phish*",
)
# Sender local parts that are never told (postmaster-style and list robots).
DEFAULT_NEVER_NOTIFY = (
    "postmaster", "mailer-daemon", "mailer_daemon", "mailerdaemon", "double-bounce", "daemon",
    "root", "listserv", "majordomo", "ezmlm", "mailman", "owner-*", "*-owner", "*-request",
    "*-bounces", "*-bounce", "bounce*", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "*-errors",
)
_PLAIN_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+")


def _address(value: str) -> str:
    value = value.strip()
    if value and (not _PLAIN_ADDRESS.fullmatch(value) or value.startswith("-")):
        raise ValueError(f"not a plain address (local@domain): {value!r}")
    return value


def _language_domains(value: dict[str, str]) -> dict[str, str]:
    return {k.strip().lower().lstrip(".").rstrip("."): v for k, v in value.items()}


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


Address = Annotated[str, Check(_address)]


@dataclass(frozen=True)
class NotifySettings:
    """Who is told about quarantined, rejected and DLP-caught mail, and how (docs/notifications.md)."""

    __pydantic_config__ = SECTION
    sender: Literal["none", "psender", "all"] = setting(
        "psender", "tell the envelope sender: never, only of policy blocks (Qmail-Scanner's "
        "psender), or of every kind (never of forging viruses, lists, bounces)")
    recipients: bool = setting(True, "tell envelope recipients in local_domains")
    recipient_kinds: frozenset[Kind] = setting(ALL_KINDS, "kinds recipients are told of")
    local_domains: Annotated[tuple[str, ...], Check(domain_names)] = setting(
        (), "recipients told (exact domains; '.example.com' matches subdomains); empty: none")
    admin: Address = setting("", "quarantine admin address; empty: none")
    admin_kinds: frozenset[Kind] = setting(ALL_KINDS, "kinds the admin is told of")
    compliance_officer: Address = setting(
        "", "told of DLP events whose rule asks for it (notify, quarantine, reject; not monitor: "
        "docs/dlp.md); empty: none")
    from_address: Address = setting("", "From: of notifications (default postmaster@HOSTNAME)")
    from_name: str = setting("Mail scanner", "display name in From:", max_length=80)
    envelope_sender: Address = setting("", "MAIL FROM of notifications; empty: the null sender <>")
    release_contact: Address = setting("", "address people ask for a release (default: the admin address)")
    default_language: Language = setting("en")
    languages: Annotated[dict[str, Language], Check(_language_domains)] = setting(
        {}, 'recipient domain -> language, e.g. { "example.de" = "de" } (subdomains inherit)')
    admin_language: Language | None = setting(
        None, "admin and officer (default: default_language)", example="en")
    timezone: Annotated[str, Check(_zone)] = setting("UTC", "zone dates are shown in (IANA name)")
    html: bool = setting(True, "add an HTML alternative to the plain text")
    template_dir: Path | None = setting(
        None, "directory whose KIND/AUDIENCE.txt|.html override the built-in templates",
        example="notify-templates")
    forging_viruses: tuple[str, ...] = setting(
        DEFAULT_FORGING_VIRUSES, "virus-name globs whose senders are never told")
    never_notify: tuple[str, ...] = setting(
        DEFAULT_NEVER_NOTIFY, "sender local-part globs never told (postmaster-style)")
    transport: Literal["smtp", "qmail-inject"] = setting("smtp")
    smtp_host: str = setting("localhost")
    smtp_port: int = setting(25, ge=1, le=65535)
    smtp_timeout: float = setting(30.0, "seconds per SMTP command", gt=0)
    smtp_starttls: bool = setting(False)
    smtp_user: str | None = setting(None, "SMTP AUTH user; unset: no AUTH", example="qscan")
    smtp_password: Secret | None = setting(None, "SMTP AUTH password", example="...", repr=False)
    qmail_inject: Path = setting(Path("/var/qmail/bin/qmail-inject"), "for transport = 'qmail-inject'")
    retry_base: float = setting(60.0, "seconds before the first retry; doubles each time", gt=0)
    retry_max: float = setting(3600.0, "longest wait between retries", gt=0)
    give_up_after: float = setting(172800.0, "seconds after which a failing notice is marked failed", gt=0)
    delivery_interval: float = setting(10.0, "seconds between delivery passes when idle", gt=0)
    max_age: float = setting(
        172800.0, "events older than this (seconds) tell nobody, so a replay of the log after a "
        "config change does not mail people about old mail; 0: no limit", ge=0)
    mark_key: Path | None = setting(
        None, "HMAC key signing X-qscan-Notification (the loop guard), made 0600 on first use; "
        "default DATA_DIR/notify.key; hosts that scan each other's notices share it",
        example="@DATA_DIR@/notify.key")
