"""Configuration: one TOML file, validated, with errors that name file, line and key.

Every path defaults to a place under ``data_dir``; relative paths are taken
relative to the directory of the config file, so a config can be moved with its
data. ``qscan config check`` loads it and prints the effective values.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import textwrap
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

from ingest.event import QUARANTINE_FOLDERS
from scanners.direction import Direction
from scanners.internal.checks import CHECK_ACTIONS, CHECKS, DEFAULT_DANGEROUS_EXTENSIONS, EXECUTABLE_FORMATS

DEFAULT_CONFIG = "/etc/qscan/qscan.toml"
MiB = 1024 * 1024


class ConfigError(Exception):
    """A config file that cannot be used; the message names file, line and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonConfig(_Section):
    socket: Path = Field(Path("/run/qscan/qscan.sock"), description="unix socket qscan-queue connects to")
    socket_mode: int = Field(
        0o666, json_schema_extra={"octal": True},
        description="permissions of the socket (octal in TOML: 0o666); who may submit is "
        "decided per peer uid (allow_users), since qmail-smtpd under a stock run script keeps only "
        "the one group tcpserver -g gives it")
    socket_group: str | None = Field(None, examples=["qmail"], description="group owning the socket")
    allow_users: list[str] = Field(
        [], description="users (names or uids) that may submit mail; empty: every local user "
        "(qmail-inject runs as the sender)")
    smtp_users: list[str] = Field(
        ["qmaild"], description="users whose client attributes (TCPREMOTEIP, RELAYCLIENT, AUTH "
        "user, HELO) are trusted: qmail-smtpd's uid. From anyone else the mail is local")
    max_connections_per_uid: int = Field(
        64, ge=1, description="slow connections (not complete within handoff_after) the master holds "
        "for one uid; more are answered with a temporary failure at once")
    handoff_after: float = Field(
        0.25, gt=0, description="seconds a worker gives a new connection to deliver its whole request "
        "(qscan-queue sends it at once); a slower one goes to the master, freeing the worker")
    local_domains: list[str] | None = Field(
        None, examples=[["example.com", ".example.com"]],
        description="recipient domains that are local ('.example.com': subdomains): local "
        "mail to anyone else counts as outbound; unset: qmail's control/locals, rcpthosts and me")
    max_recipients: int = Field(
        10000, ge=1, description="more envelope recipients are refused permanently")
    workers: int = Field(4, ge=1, le=256, description="pre-forked worker processes")
    max_messages_per_worker: int = Field(
        1000, ge=1, description="a worker is recycled after this many messages"
    )
    recycle_after_bytes: int = Field(
        8 * MiB, ge=0, description="a worker is recycled right after a message at least this big "
        "(bytes), giving back the memory it grew by; 0 disables",
    )
    max_message_size: int = Field(
        50 * MiB, ge=1024, description="bigger messages are rejected permanently (bytes)"
    )
    timeout: float = Field(
        300.0, gt=0, description="seconds allowed to receive one whole request from qscan-queue "
        "(which reads the message from qmail first): slower peers are cut off with a temporary failure")
    qmail_queue: Path = Field(Path("/var/qmail/bin/qmail-queue"), description="the real qmail-queue")
    qmail_queue_timeout: float = Field(600.0, gt=0, description="seconds qmail-queue may take")
    hostname: str = Field("", description="name used in headers and events (default: FQDN)")
    client_timeout: float = Field(
        1200.0, gt=0, description="the longest any qscan-queue waits for its answer once the message is "
        "sent (its QSCAN_TIMEOUT, which it also sends: the daemon uses the shorter); the daemon never "
        "queues a message the client gave up on",
    )
    deadline_margin: float = Field(
        30.0, ge=0, description="seconds before client_timeout after which a scanned message is "
        "temp-failed instead of queued (journal append and qmail-queue must fit in it)",
    )

    @field_validator("deadline_margin")
    @classmethod
    def _margin_fits(cls, value: float, info: ValidationInfo) -> float:
        client = info.data.get("client_timeout")
        if client is not None and value >= client:
            raise ValueError(f"must be smaller than client_timeout ({client:g})")
        return value


class JournalConfig(_Section):
    path: Path | None = Field(None, examples=["@DATA_DIR@/journal.db"],
        description="journal database (default: DATA_DIR/journal.db)")
    retain_days: float = Field(
        7.0, ge=0, description="keep consumed events this long for replays before pruning"
    )
    prune_interval: float = Field(300.0, gt=0, description="seconds between prunes in `qscan run`")
    disk_budget_mb: float = Field(
        10240.0, gt=0,
        description="journal size that makes `qscan journal status` fail loudly (relay and `qscan run` warn)"
    )


class ArchiveConfig(_Section):
    enabled: bool = Field(True, description="write the archive maildir")
    maildir: Path | None = Field(None, examples=["@DATA_DIR@/archive"],
        description="archive maildir (default: DATA_DIR/archive)")
    quarantine_dir: Path | None = Field(
        None, examples=["@DATA_DIR@/quarantine"],
        description="root of viruses/ policy/ spam/ dlp/ maildirs (default: DATA_DIR/quarantine)"
    )
    filter: str | None = Field(
        None, examples=[r"(support|sales)@example\.com"],
        description="regex: archive only mail with an envelope address matching it "
        r"(e.g. '(support|sales)@example\.com'); unset archives everything",
    )

    @field_validator("filter")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value or None


class SqlConfig(_Section):
    url: str | None = Field(
        None, examples=["postgresql+psycopg://qscan@db.example.com/qscan"],
        description="SQLAlchemy URL (default: sqlite:///DATA_DIR/qscan.db)"
    )


class SummaryLogConfig(_Section):
    target: Literal["syslog", "file", "none"] = Field(
        "syslog", description="where the one-line summary of each message goes"
    )
    path: Path | None = Field(None, examples=["@DATA_DIR@/summary.log"],
                              description="file for target='file' (default: DATA_DIR/summary.log)")
    facility: Literal[
        "mail", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"
    ] = "mail"


class HeadersConfig(_Section):
    diagnostics: bool = Field(True, description="add X-Qmail-Scanner-Diagnostics")
    style: Literal["header", "received"] = Field(
        "header", description="'received' writes the diagnostics as a Received: line instead"
    )
    mail_from: bool = Field(False, description="add X-Qmail-Scanner-Mail-From")
    attachments: bool = Field(False, description="add X-Qmail-Scanner-Mime-Attachments")
    recipients: bool = Field(False, description="add X-Qmail-Scanner-Rcpt-To (privacy: off)")


def _scanner_name(value: str) -> str:
    """A name of SCANNER_SETTINGS (below), checked when the config is parsed, so a typo is named
    with its line and the closest known name."""
    if value in SCANNER_NAMES:
        return value
    close = difflib.get_close_matches(value.lower(), SCANNER_NAMES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown scanner {value!r} ({hint}known: {', '.join(SCANNER_NAMES)})")


ScannerName = Annotated[str, AfterValidator(_scanner_name)]


class ScannersConfig(_Section):
    enabled: list[ScannerName] = Field(
        ["size", "internal"], description="scanners to run, in order: antivirus first (clamd, "
        "cmdline, cymru), then internal, then spam (spamd or rspamd), dlp last; e.g. "
        '["size", "clamd", "cymru", "internal", "spamd"]')

    @field_validator("enabled")
    @classmethod
    def _dlp_last(cls, value: list[str]) -> list[str]:
        twice = sorted({s for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(" and ".join(repr(s) for s in twice)
                             + f" {'is' if len(twice) == 1 else 'are'} listed twice")
        # DLP reads the parts the other scanners decoded (ctx.found_parts: archive members...):
        # a list that puts it earlier is refused rather than silently reordered (docs/dlp.md)
        if "dlp" in value and value[-1] != "dlp":
            rest = [s for s in value if s != "dlp"]
            raise ValueError(f"'dlp' must be the last scanner (it runs on what the others decoded): "
                             f"write enabled = {[*rest, 'dlp']}".replace("'", '"'))
        return value


InternalActionName = Literal["quarantine", "reject", "tempfail", "drop", "deliver"]


class InternalConfig(_Section):
    """The internal scanner: format checks, unpacking limits, policy rules (docs/policy.md)."""

    rules: Path | None = Field(None, examples=["policy.toml"],
        description="policy rules file (TOML); unset: built-in check rules only")
    checks: dict[str, Literal[CHECK_ACTIONS]] = Field(  # type: ignore[valid-type]
        {}, description="per-check action: quarantine|reject|tempfail|drop|tag|record|off "
        "(defaults in docs/policy.md), e.g. { password-protected-archive = \"quarantine\" }",
    )
    ignore_eol: bool = Field(False, description="do not flag bare CR in MIME headers (NUL still is)")
    dangerous_extensions: list[str] = Field(
        list(DEFAULT_DANGEROUS_EXTENSIONS),
        description="extensions banned at any depth (check banned-extension), and the final "
        "extensions that make a double-barrelled name (invoice.pdf.exe) dangerous",
    )
    allow_banned: list[str] = Field(
        [], description="banned extensions (exe) and executable formats (pe, elf, mach-o) "
        "delivered after all, e.g. [\"exe\"]",
    )
    allow_banned_by_domain: dict[str, list[str]] = Field(
        {}, description="recipient domain (glob) -> extensions/formats it may receive; applies when "
        "every recipient's domain allows the file, e.g. { \"build.example.com\" = [\"exe\", \"msi\"] }",
    )
    max_depth: int = Field(10, ge=0, le=100, description="archives nested within archives")
    max_members: int = Field(1000, ge=1, description="archive members per message")
    max_total_bytes: int = Field(200 * MiB, ge=1024, description="expanded bytes per message")
    max_ratio: float = Field(100.0, gt=1, description="expanded/compressed size of one archive (zip bombs)")
    max_time: float = Field(10.0, ge=0, description="seconds of inspection and unpacking per message")
    error_action: InternalActionName = Field(
        "quarantine", description="what an internal error in the scanner does (finding: internal-error), "
        "and MIME the parser cannot read at all (finding: unparseable)"
    )

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
        return value

    @field_validator("dangerous_extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        return [v.strip().lstrip(".").lower() for v in value if v.strip().lstrip(".")]

    @field_validator("allow_banned")
    @classmethod
    def _allow(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _allowed(value, info, "allow_banned")

    @field_validator("allow_banned_by_domain")
    @classmethod
    def _allow_by_domain(cls, value: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        bad = [d for d in value if not _DOMAIN_GLOB.fullmatch(d.strip())]
        if bad:
            raise ValueError(f"allow_banned_by_domain: {', '.join(map(repr, bad))} is not a domain "
                             "(letters, digits, '.', '-', and '*' or '?' as wildcards)")
        return {domain.strip().lower(): _allowed(v, info, f"allow_banned_by_domain.{domain}")
                for domain, v in value.items()}


_DOMAIN_GLOB = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9.*?-]{0,252}")


def _allowed(value: list[str], info: ValidationInfo, key: str) -> list[str]:
    """Entries normalised like dangerous_extensions; one that bans nothing is a mistake."""
    entries = [v.strip().lstrip(".").lower() for v in value if v.strip().lstrip(".")]
    banned = {*info.data.get("dangerous_extensions", DEFAULT_DANGEROUS_EXTENSIONS), *EXECUTABLE_FORMATS}
    unknown = [e for e in entries if e not in banned]
    if unknown:
        raise ValueError(f"{key}: {', '.join(unknown)} is not banned (entries are extensions from "
                         f"dangerous_extensions or the formats {', '.join(EXECUTABLE_FORMATS)})")
    return entries


# -- external scanners (scanners/clamd.py, spamd.py, rspamd.py, cmdline.py, cymru.py) ---------
FailurePolicyName = Literal["tempfail", "pass"]
VirusActionName = Literal["quarantine", "reject", "drop"]


def _socket_path(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError("must be an absolute path, or empty to use TCP host/port")
    return value


class ClamdConfig(_Section):
    socket: str = Field("/var/run/clamav/clamd.ctl", description="clamd's unix socket; empty: TCP host/port")
    host: str = Field("127.0.0.1", description="clamd's TCP address when socket is empty")
    port: int = Field(3310, ge=1, le=65535)
    connect_timeout: float = Field(2.0, gt=0, description="seconds to connect")
    timeout: float = Field(60.0, gt=0, description="seconds for one part, connect to reply")
    redundant: bool = Field(False, description="also scan the raw message, not only the decoded parts")
    max_stream_size: int = Field(
        25 * MiB, ge=1, description="parts above this are not sent (keep equal to clamd's StreamMaxLength)"
    )
    failure_policy: FailurePolicyName = Field(
        "tempfail", description="clamd down, timed out or answering nonsense: tempfail, or pass (recorded)"
    )
    size_limit_policy: FailurePolicyName = Field(
        "pass", description="a part too big for clamd: pass (recorded as not scanned) or tempfail"
    )
    action: VirusActionName = Field("quarantine", description="what a detection does (or reject, drop)")
    version_refresh: float = Field(300.0, gt=0, description="seconds between zVERSION queries")

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return _socket_path(value)


class SpamThresholdsConfig(_Section):
    """Shared by spamd and rspamd; every threshold is optional and the highest reached wins."""

    required_score: float | None = Field(None, examples=[5.0],
        description="spam from this score; unset: the engine decides")
    tag_score: float | None = Field(None, examples=[-100.0],
        description="X-Spam-* headers from this score; unset: always")
    subject_prefix: str = Field("", max_length=40, description="e.g. '[SPAM]'; empty: subject untouched")
    subject_score: float | None = Field(None, examples=[5.0],
        description="prefix from this score; unset: what is spam")
    quarantine_score: float | None = Field(None, examples=[8.0],
        description="quarantine into spam/ from this score")
    reject_score: float | None = Field(None, examples=[15.0],
        description="reject permanently from this score")
    drop_score: float | None = Field(None, examples=[25.0],
        description="accept and silently delete from this score")

    @field_validator("subject_prefix")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable text (no control characters)")
        return value


class SpamdConfig(SpamThresholdsConfig):
    socket: str = Field("", description="spamd's unix socket; empty: TCP host/port")
    host: str = "127.0.0.1"
    port: int = Field(783, ge=1, le=65535)
    connect_timeout: float = Field(2.0, gt=0)
    timeout: float = Field(30.0, gt=0, description="seconds from connect to reply")
    command: Literal["SYMBOLS", "REPORT"] = Field(
        "SYMBOLS", description="REPORT also gives each rule's points (tests=GTUBE=1000)"
    )
    user: str | None = Field(None, examples=["spamd-user"],
        description="spamd User: header (per-user settings)")
    max_size: int = Field(512 * 1024, ge=1, description="bigger mail is not spam-scanned (recorded)")
    skip_relay: bool = Field(True, description="do not spam-scan mail from relay clients (RELAYCLIENT)")
    failure_policy: FailurePolicyName = Field("pass", description="spamd unavailable: pass or tempfail")
    version_refresh: float = Field(3600.0, gt=0, description="seconds between version probes")

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return _socket_path(value)


class RspamdConfig(SpamThresholdsConfig):
    host: str = "127.0.0.1"
    port: int = Field(11333, ge=1, le=65535, description="rspamd's normal worker")
    path: str = Field("/checkv2", pattern=r"^/[!-~]*$")
    password: SecretStr | None = Field(None, examples=["..."], description="only if the worker requires one")
    timeout: float = Field(30.0, gt=0, description="seconds per socket operation")
    max_size: int = Field(2 * MiB, ge=1, description="bigger mail is not spam-scanned (recorded as skipped)")
    skip_relay: bool = True
    failure_policy: FailurePolicyName = "pass"
    follow_actions: bool = Field(
        True, description="rspamd's reject/soft reject/discard/quarantine actions apply on top of thresholds"
    )
    reject_action: Literal["reject", "quarantine", "drop"] = Field(
        "reject", description="what rspamd's 'reject' action does here"
    )


class CmdlineConfig(_Section):
    name: str = Field("cmdline", pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="name in findings, headers")
    argv: list[str] = Field(
        [], description="program and arguments, no shell; '{path}' is replaced by the directory or "
        'file, e.g. ["/opt/av/bin/scan", "--recursive", "{path}"]; required when cmdline is enabled'
    )
    target: Literal["directory", "file"] = "directory"
    exit_codes: dict[int, Literal["clean", "virus", "error"]] = Field(
        {0: "clean", 1: "virus"}, description="exit code meanings; unlisted codes are errors"
    )
    virus_regex: str = Field(
        r"(?m)(?P<name>[^\s:]+)[ \t]+FOUND[ \t]*$",
        description="finds the virus name in the output (group 'name', else the first group)",
    )
    timeout: float = Field(60.0, gt=0)
    redundant: bool = Field(False, description="also give the scanner the raw message (message.eml)")
    failure_policy: FailurePolicyName = "tempfail"
    action: VirusActionName = "quarantine"
    version: str = Field("", max_length=60, description="version shown in the diagnostics header")
    version_argv: list[str] = Field([], description="command printing the version (first line is used)")
    tmp_dir: Path | None = Field(None, examples=["/var/tmp/qscan"],
        description="where scan directories are made (default: system temp)")

    @field_validator("virus_regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


class CymruConfig(_Section):
    zone: str = Field("hash.cymru.com", pattern=r"^[A-Za-z0-9.-]+$", description="MHR DNS zone")
    nameservers: list[str] = Field([], description="resolver IPs; empty: /etc/resolv.conf")
    port: int = Field(53, ge=1, le=65535)
    timeout: float = Field(2.0, gt=0, description="seconds of DNS for all lookups of one message")
    threshold: int = Field(25, ge=0, le=100, description="detection percent from which a hash is malware")
    hash: Literal["md5", "sha1", "sha256"] = "sha256"
    cache_ttl: float = Field(600.0, ge=0, description="seconds answers (also 'unknown') are cached")
    cache_size: int = Field(10000, ge=0)
    max_lookups: int = Field(20, ge=1, description="hashes looked up per message at most")
    attachments_only: bool = Field(True, description="skip text/* parts without a file name")
    failure_policy: FailurePolicyName = "pass"
    action: VirusActionName = "quarantine"


# -- notifications (compliance/notify, docs/notifications.md) ------------------------------------
NotifyKindName = Literal["virus", "policy", "spam", "dlp", "reject"]
NotifyLanguage = Literal["en", "it", "af", "pl", "sv", "cs", "de", "es", "tr", "lt", "fr", "pt", "nl", "zh"]
ALL_NOTIFY_KINDS: list[NotifyKindName] = ["virus", "policy", "spam", "dlp", "reject"]
# Viruses known to forge the sender (Qmail-Scanner's list, kept up to date): their
# "senders" are innocent bystanders and are never told. Case-insensitive globs on the name.
DEFAULT_FORGING_VIRUSES = [
    "*klez*", "*bugbear*", "*hybris*", "*yaha*", "*braid*", "*nimda*", "*tanatos*", "*sobig*",
    "*winevar*", "*palyh*", "*fizzer*", "*gibe*", "*cailont*", "*lovelorn*", "*swen*", "*dumaru*",
    "*sober*", "*hawawi*", "*holar*", "*mimail*", "*poffer*", "*bagle*", "*beagle*", "*mydoom*",
    "*novarg*", "*netsky*", "*lovgate*", "*zafi*", "*mytob*", "*warezov*", "*stration*",
    "*nyxem*", "*bagz*", "*@mm*", "*mass-mailer*", "*massmailer*", "*email-worm*", "*email.worm*",
    "*i-worm*", "*worm.mass*", "*phish*",
]
# Sender local parts that are never told (postmaster-style and list robots).
DEFAULT_NEVER_NOTIFY = [
    "postmaster", "mailer-daemon", "mailer_daemon", "mailerdaemon", "double-bounce", "daemon",
    "root", "listserv", "majordomo", "ezmlm", "mailman", "owner-*", "*-owner", "*-request",
    "*-bounces", "*-bounce", "bounce*", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "*-errors",
]


class NotifyConfig(_Section):
    """Who is told about quarantined, rejected and DLP-caught mail, and how (docs/notifications.md)."""

    sender: Literal["none", "psender", "all"] = Field(
        "psender", description="tell the envelope sender: never, only of policy blocks "
        "(Qmail-Scanner's psender), or of every kind (never of forging viruses, lists, bounces)"
    )
    recipients: bool = Field(True, description="tell envelope recipients in local_domains")
    recipient_kinds: list[NotifyKindName] = Field(
        list(ALL_NOTIFY_KINDS), description="kinds recipients are told of"
    )
    local_domains: list[str] = Field(
        [], description="recipients told (exact domains; '.example.com' matches subdomains); empty: none"
    )
    admin: str = Field("", description="quarantine admin address; empty: none")
    admin_kinds: list[NotifyKindName] = Field(
        list(ALL_NOTIFY_KINDS), description="kinds the admin is told of"
    )
    compliance_officer: str = Field(
        "", description="told of DLP events whose rule asks for it (notify, quarantine, reject; "
        "not monitor: docs/dlp.md); empty: none"
    )
    from_address: str = Field("", description="From: of notifications (default postmaster@HOSTNAME)")
    from_name: str = Field("Mail scanner", max_length=80, description="display name in From:")
    envelope_sender: str = Field("", description="MAIL FROM of notifications; empty: the null sender <>")
    release_contact: str = Field(
        "", description="address people ask for a release (default: the admin address)"
    )
    default_language: NotifyLanguage = "en"
    languages: dict[str, NotifyLanguage] = Field(
        {}, description="recipient domain -> language, e.g. { \"example.de\" = \"de\" } (subdomains inherit)"
    )
    admin_language: NotifyLanguage | None = Field(
        None, examples=["en"], description="admin and officer (default: default_language)"
    )
    timezone: str = Field("UTC", description="zone dates are shown in (IANA name)")
    html: bool = Field(True, description="add an HTML alternative to the plain text")
    template_dir: Path | None = Field(
        None, examples=["notify-templates"],
        description="directory whose KIND/AUDIENCE.txt|.html override the built-in templates"
    )
    forging_viruses: list[str] = Field(
        list(DEFAULT_FORGING_VIRUSES), description="virus-name globs whose senders are never told"
    )
    never_notify: list[str] = Field(
        list(DEFAULT_NEVER_NOTIFY), description="sender local-part globs never told (postmaster-style)"
    )
    transport: Literal["smtp", "qmail-inject"] = "smtp"
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_timeout: float = Field(30.0, gt=0, description="seconds per SMTP command")
    smtp_starttls: bool = False
    smtp_user: str | None = Field(None, examples=["qscan"], description="SMTP AUTH user; unset: no AUTH")
    smtp_password: SecretStr | None = Field(None, examples=["..."], description="SMTP AUTH password")
    qmail_inject: Path = Field(
        Path("/var/qmail/bin/qmail-inject"), description="for transport = 'qmail-inject'"
    )
    retry_base: float = Field(60.0, gt=0, description="seconds before the first retry; doubles each time")
    retry_max: float = Field(3600.0, gt=0, description="longest wait between retries")
    give_up_after: float = Field(
        172800.0, gt=0, description="seconds after which a failing notice is marked failed"
    )
    delivery_interval: float = Field(10.0, gt=0, description="seconds between delivery passes when idle")
    max_age: float = Field(
        172800.0, ge=0, description="events older than this (seconds) tell nobody, so a replay of the "
        "log after a config change does not mail people about old mail; 0: no limit"
    )
    mark_key: Path | None = Field(
        None, examples=["@DATA_DIR@/notify.key"],
        description="HMAC key signing X-qscan-Notification (the loop guard), made 0600 on first "
        "use; default DATA_DIR/notify.key; hosts that scan each other's notices share it"
    )

    @field_validator("local_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [v.strip().lower().rstrip(".") for v in value if v.strip()]

    @field_validator("languages")
    @classmethod
    def _language_domains(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower().lstrip(".").rstrip("."): v for k, v in value.items()}

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("admin", "compliance_officer", "from_address", "envelope_sender", "release_contact")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        plain = re.fullmatch(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+", value)
        if value and (not plain or value.startswith("-")):
            raise ValueError(f"not a plain address (local@domain): {value!r}")
        return value


class DlpConfig(_Section):
    """Data loss prevention (docs/dlp.md). Runs only when "dlp" is in scanners.enabled, which
    needs a rules file: the DLP rules say what matters, there is no useful default."""

    rules: Path | None = Field(None, examples=["dlp.toml"],
        description="DLP rules file (TOML); required when 'dlp' is enabled")
    headers: list[str] = Field(["Subject"], description="headers whose text is inspected besides bodies")
    max_part_size: int = Field(25 * MiB, ge=1024, description="attachments bigger than this are not read")
    max_text: int = Field(4_000_000, ge=1000, description="characters of text inspected per message")
    max_time: float = Field(5.0, gt=0, description="seconds of text extraction per message")
    max_pdf_pages: int = Field(200, ge=1, description="pages of one PDF read")
    max_depth: int = Field(5, ge=0, le=100, description="archives within archives unpacked")
    max_members: int = Field(500, ge=1, description="archive members per message")
    max_total_bytes: int = Field(100 * MiB, ge=1024, description="bytes unpacked from archives per message")
    error_action: Literal["quarantine", "reject", "tempfail", "deliver"] = Field(
        "quarantine", description="an internal DLP error: the message is not let out unexamined by default"
    )


# The scanners qscan can run: name -> the model of its Config section (the section has the
# scanner's name), None for one without settings; the order is the one `known:` lists. The one
# list of names: config validation takes it from here, qscan/wiring/pipeline.py's SCANNERS gives
# each name its factory (tests/test_config_preflight.py keeps the two key sets equal).
SCANNER_SETTINGS: dict[str, type[_Section] | None] = {
    "size": None, "clamd": ClamdConfig, "cmdline": CmdlineConfig, "cymru": CymruConfig,
    "internal": InternalConfig, "spamd": SpamdConfig, "rspamd": RspamdConfig, "dlp": DlpConfig,
}
SCANNER_NAMES = tuple(SCANNER_SETTINGS)

# The consumers `qscan run` can start; qscan/wiring/pipeline.py's SINKS builds each (a test keeps
# the two equal).
ConsumerName = Literal["archive", "summaries", "notify"]
CONSUMER_NAMES: tuple[ConsumerName, ...] = typing.get_args(ConsumerName)


class ConsumersConfig(_Section):
    enabled: list[ConsumerName] = Field(
        ["archive", "summaries"], description="consumers `qscan run` starts (and pruning waits for)"
    )
    batch: int = Field(500, ge=1, le=10000, description="events per consumer transaction "
                       "(at most 64 MiB of messages read at once)")
    poll_interval: float = Field(0.2, gt=0, description="seconds between polls when idle")
    source: Literal["journal", "kafka"] = Field(
        "journal", description="where consumers read events: the local journal or the Kafka topic"
    )


Days = int | Literal["forever"]


class RetentionRuleConfig(_Section):
    """One retention rule (compliance/retention.py): all conditions given must hold."""

    name: str = Field(..., min_length=1, examples=["spam"], description="shown in tombstones and reports")
    days: Days = Field(..., examples=[30], description="keep stored copies this many days, or 'forever'")
    domain: str | None = Field(None, examples=["example.com"],
        description="sender's or any recipient's domain ('*' allowed)")
    address: str | None = Field(None, examples=["sales@example.com"],
        description="sender or any recipient ('*' allowed)")
    direction: Direction | None = Field(None, examples=["outbound"], description="direction of the mail")
    verdict: Literal["clean", "virus", "policy", "spam", "dlp", "malformed"] | None = Field(
        None, examples=["spam"], description="verdict of the mail")

    @field_validator("days")
    @classmethod
    def _positive(cls, value: Days) -> Days:
        if isinstance(value, int) and value < 1:
            raise ValueError("days must be at least 1, or 'forever'")
        return value


class RetentionConfig(_Section):
    default_days: Days = Field(
        "forever", description="days to keep copies no rule matches ('forever': never delete)"
    )
    rules: list[RetentionRuleConfig] = Field([], description="tried in order; the first match decides")


class QuarantineConfig(_Section):
    """`qscan quarantine` (docs/quarantine.md): expiry ages and the qmail-queue releases use."""

    expire_days: int = Field(
        14, ge=1, description="`qscan quarantine expire` deletes entries older than this many days"
    )
    folder_days: dict[str, int] = Field(
        {}, description="per-folder ages overriding expire_days, e.g. { spam = 7, viruses = 30 }"
    )
    qmail_queue: Path | None = Field(
        None, examples=["/var/qmail/bin/qmail-queue"],
        description="the qmail-queue releases go through (default: daemon.qmail_queue)"
    )
    four_eyes: list[str] = Field(
        ["dlp", "viruses"], description="folders whose releases a second, different operator "
        "must approve (`qscan quarantine approve`); [] turns four-eyes off"
    )
    release_officers: list[str] = Field(
        [], examples=[["secofficer"]], description="logins that may release from a four_eyes "
        "folder in one step with --force (recorded as forced)"
    )

    @field_validator("four_eyes")
    @classmethod
    def _four_eyes(cls, value: list[str]) -> list[str]:
        for folder in value:
            if folder not in QUARANTINE_FOLDERS:
                raise ValueError(f"unknown folder {folder!r} ({', '.join(QUARANTINE_FOLDERS)})")
        return value

    @field_validator("folder_days")
    @classmethod
    def _days(cls, value: dict[str, int]) -> dict[str, int]:
        for folder, days in value.items():
            if folder not in QUARANTINE_FOLDERS:
                raise ValueError(f"unknown folder {folder!r} ({', '.join(QUARANTINE_FOLDERS)})")
            if days < 1:
                raise ValueError(f"{folder}: days must be at least 1")
        return value


class AnchorConfig(_Section):
    """Chain heads written outside the database (docs/compliance.md, "Anchors")."""

    interval_minutes: float = Field(
        15.0, ge=0, description="`qscan run` writes the chain heads this often and at shutdown "
        "(0: at shutdown only); `qscan anchor write` writes them once"
    )
    witness_file: Path | None = Field(
        None, examples=["/mnt/worm/qscan-anchors.jsonl"], description="append-only file "
        "(JSON lines) every anchor also goes to; put it beyond the database admins' reach"
    )
    signing_key: Path | None = Field(
        None, examples=["/etc/qscan/anchor.key"], description="Ed25519 private key anchors are "
        "signed with (`qscan anchor keygen`); only the anchoring host holds it"
    )
    public_key: Path | None = Field(
        None, examples=["/etc/qscan/anchor.pub"],
        description="Ed25519 public key `qscan verify` checks anchor signatures with"
    )


class KafkaConfig(_Section):
    """The scale-out log: journals relayed to a Kafka topic that the consumers read."""

    bootstrap_servers: list[str] = Field(examples=[["kafka1:9092", "kafka2:9092"]],
        description="broker addresses")
    topic: str = Field("qscan.events", description="the event topic")
    partitions: int = Field(6, ge=1, le=1000, description="partitions `qscan kafka init` creates")
    replication_factor: int = Field(1, ge=1, le=10)
    retention_days: float = Field(7.0, gt=0, description="topic retention")
    compression: Literal["zstd", "lz4", "gzip", "none"] = "zstd"
    group_prefix: str = Field("qscan", description="consumer groups are PREFIX-NAME")
    relay_batch: int = Field(500, ge=1, le=100000, description="events per relay round trip")
    request_timeout_ms: int = Field(30000, ge=1000)


class MetricsConfig(_Section):
    """Prometheus endpoints (qscan/ops/metrics.py, docs/operations.md): one per process, loopback."""

    enabled: bool = Field(False, description="serve /metrics from the daemon, relay and consumers")
    address: str = Field("127.0.0.1", description="listen address (keep it on loopback)")
    port: int = Field(
        9467, ge=1, le=65530,
        description="daemon port; relay +1, consume archive +2, summaries +3, notify +4",
    )


class LogConfig(_Section):
    kafka: KafkaConfig | None = Field(None, description="set [log.kafka] to relay to Kafka")


class Config(_Section):
    data_dir: Path = Field(Path("/var/lib/qscan"), description="where data lives by default")
    daemon: DaemonConfig = DaemonConfig()
    journal: JournalConfig = JournalConfig()
    log: LogConfig = LogConfig()
    archive: ArchiveConfig = ArchiveConfig()
    sql: SqlConfig = SqlConfig()
    summary_log: SummaryLogConfig = SummaryLogConfig()
    headers: HeadersConfig = HeadersConfig()
    scanners: ScannersConfig = ScannersConfig()
    internal: InternalConfig = InternalConfig()
    clamd: ClamdConfig = ClamdConfig()
    spamd: SpamdConfig = SpamdConfig()
    rspamd: RspamdConfig = RspamdConfig()
    cmdline: CmdlineConfig = CmdlineConfig()
    cymru: CymruConfig = CymruConfig()
    consumers: ConsumersConfig = ConsumersConfig()
    notify: NotifyConfig = NotifyConfig()
    retention: RetentionConfig = RetentionConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    anchor: AnchorConfig = AnchorConfig()
    dlp: DlpConfig = DlpConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: Path | None = Field(None, exclude=True, description="file this was loaded from")

    # Effective values (defaults resolved against data_dir).
    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.data_dir / "journal.db"

    @property
    def archive_maildir(self) -> Path:
        return self.archive.maildir or self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.archive.quarantine_dir or self.data_dir / "quarantine"

    @property
    def sql_url(self) -> str:
        return self.sql.url or f"sqlite:///{self.data_dir / 'qscan.db'}"

    @property
    def summary_log_path(self) -> Path:
        return self.summary_log.path or self.data_dir / "summary.log"

    @property
    def hostname(self) -> str:
        return self.daemon.hostname or socket.getfqdn()

    def effective(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["journal"]["path"] = str(self.journal_path)
        out["archive"]["maildir"] = str(self.archive_maildir)
        out["archive"]["quarantine_dir"] = str(self.quarantine_dir)
        out["sql"]["url"] = self.sql_url
        out["summary_log"]["path"] = str(self.summary_log_path)
        out["daemon"]["hostname"] = self.hostname
        out["daemon"]["socket_mode"] = oct(self.daemon.socket_mode)
        from qscan.redact import mask_values  # printed by `config check`: no passwords

        masked: dict[str, Any] = mask_values(out)
        return masked


_PATH_KEYS = [
    ("data_dir",),
    ("daemon", "socket"),
    ("daemon", "qmail_queue"),
    ("journal", "path"),
    ("archive", "maildir"),
    ("archive", "quarantine_dir"),
    ("summary_log", "path"),
    ("internal", "rules"),
    ("dlp", "rules"),
    ("notify", "template_dir"),
    ("notify", "qmail_inject"),
    ("notify", "mark_key"),
    ("quarantine", "qmail_queue"),
]


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for key in _PATH_KEYS:
        node: Any = data
        for k in key[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(key[-1]), str):
            p = Path(node[key[-1]]).expanduser()
            node[key[-1]] = str(p if p.is_absolute() else (base / p))
    sql = data.get("sql")
    if isinstance(sql, dict) and isinstance(sql.get("url"), str):
        url = sql["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and not rel.startswith(":memory:"):
                sql["url"] = f"sqlite:///{base / rel}"


def key_name(loc: tuple[Any, ...]) -> str:
    """A dotted key as errors show it: ``scanners.enabled[1]`` (list items by index from 0)."""
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else f"{'.' if out else ''}{k}"
    return out


def locate(path: Path, *keys: tuple[str, ...]) -> int | None:
    """The line of the first of ``keys`` (dotted key tuples) found in the config file ``path``.

    Used by the start-up checks (qscan/ops/preflight.py) to point at the key a problem comes from;
    None when the file cannot be read or none of the keys (nor their table) is in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for key in keys:
        lineno = _locate(text, key)
        if lineno:
            return lineno
    return None


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (tomllib gives none)."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_.\-\"]+)\s*=")
    fallback = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            current = [p.strip().strip('"') for p in m.group(1).split(".")]
            if current == keys:  # the key is itself a table
                return lineno
            continue
        m = assign.match(line)
        if m:
            dotted = current + [p.strip('"') for p in m.group(1).split(".")]
            if dotted == [*table, key]:
                return lineno
            if dotted[: len(keys)] == keys or (current == table and dotted[-1] == key):
                fallback = fallback or lineno
    if fallback is None and table:
        # an unknown key may sit under a table we can point at
        for lineno, line in enumerate(text.splitlines(), 1):
            m = header.match(line)
            if m and [p.strip() for p in m.group(1).split(".")] == table:
                return lineno
    return fallback


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; ``None`` means $QSCAN_CONFIG or the default path."""
    if path is None:
        path = os.environ.get("QSCAN_CONFIG") or DEFAULT_CONFIG
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: config file not found (use -c FILE or $QSCAN_CONFIG)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from exc
    return parse_config(text, p)


def parse_config(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    _resolve_paths(data, path.resolve().parent)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = key_name(loc)
            lineno = _locate(text, loc)
            where = f"{path}:{lineno}" if lineno else str(path)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{where}: key '{key}': {msg}")
        raise ConfigError("\n".join(lines)) from exc
    cfg.source = path
    return cfg


# -- `qscan config example`: written from the models above, so every key is in it --------------
_WIDTH = 100
_INLINE_AT = 39  # column of a description that fits beside its key


def example_config(data_dir: str = "/var/lib/qscan") -> str:
    """A complete, commented config with every default spelled out.

    Walks ``Config``: each section, each key with its default and its description (wrapped
    at 100 columns); keys whose default is unset are commented out with an example value."""
    out = ["# qscan configuration. Every key is optional; shown values are the defaults.",
           "# Keys commented out are unset by default; the value shown is an example.",
           "# Relative paths are relative to this file's directory."]
    _example_model(Config, [], out, commented=False, data_dir=data_dir)
    return ("\n".join(out).rstrip("\n") + "\n").replace("@DATA_DIR@", data_dir)


def _example_model(model: type[BaseModel], table: list[str], out: list[str], *, commented: bool,
                   data_dir: str, array: bool = False) -> None:
    fields = [(k, f) for k, f in model.model_fields.items() if not f.exclude]
    scalars = [(k, f) for k, f in fields if _submodel(f) is None]
    sections = [(k, f) for k, f in fields if _submodel(f) is not None]
    for key, field in scalars:
        value = _example_value(key, field, data_dir)
        unset = value is None
        if unset:
            value = _placeholder(field)
        _example_line(key, _toml(value, field), _describe(field), out, commented=commented or unset)
    for key, field in sections:
        sub = _submodel(field)
        assert sub is not None
        is_array = _origin(field.annotation) is list
        unset = field.default is None or is_array
        brackets = ("[[", "]]") if is_array else ("[", "]")
        about = field.description or (sub.__doc__ or "").strip()
        out.append("")
        prefix = "# " if commented or unset else ""
        if about:
            out.extend("# " + line for line in _wrap(about))
        out.append(f"{prefix}{brackets[0]}{'.'.join([*table, key])}{brackets[1]}")
        _example_model(sub, [*table, key], out, commented=commented or unset, data_dir=data_dir,
                       array=is_array)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), _WIDTH - 2, break_on_hyphens=False)


def _origin(annotation: Any) -> Any:
    return typing.get_origin(annotation)


def _unwrap(annotation: Any) -> Any:
    """X from X | None (the type of a key that may be unset)."""
    if _origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _submodel(field: FieldInfo) -> type[BaseModel] | None:
    """The section model of a field that is a table ([x]) or an array of tables ([[x]])."""
    ann = _unwrap(field.annotation)
    if _origin(ann) is list:
        ann = typing.get_args(ann)[0]
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _example_value(key: str, field: FieldInfo, data_dir: str) -> Any:
    if key == "data_dir":
        return data_dir
    if field.is_required():
        return None
    return field.get_default(call_default_factory=True)


def _placeholder(field: FieldInfo) -> Any:
    """The example shown for a key that is unset by default (its Field's first example)."""
    if not field.examples:
        raise TypeError(f"a key with no default needs Field(examples=[...]): {field}")
    return field.examples[0]


def _choices(annotation: Any) -> list[str]:
    ann = _unwrap(annotation)
    if _origin(ann) is list:
        ann = typing.get_args(ann)[0]
    if _origin(ann) is Literal:
        return [str(a) for a in typing.get_args(ann)]
    return []


def _describe(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    choices = _choices(field.annotation)
    if choices and not all(c in text for c in choices):
        text = f"{text} ({' | '.join(choices)})" if text else " | ".join(choices)
    return text


def _example_line(key: str, value: str, about: str, out: list[str], *, commented: bool) -> None:
    prefix = "# " if commented else ""
    lines = f"{_toml_key(key)} = {value}".split("\n")
    inline = f"{prefix}{lines[0]}".ljust(_INLINE_AT - 2) + f"  # {about}"
    if about and len(lines) == 1 and len(inline) <= _WIDTH:
        out.append(inline)
        return
    if about:
        out.extend("# " + line for line in _wrap(about))
    out.extend(prefix + line for line in lines)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: object) -> str:
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _toml(value: Any, field: FieldInfo | None = None) -> str:
    """``value`` written as TOML; long arrays wrap over several lines."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        extra = field.json_schema_extra if field is not None else None
        return oct(value) if isinstance(extra, dict) and extra.get("octal") else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, Path)):
        text = str(value)
        if "\\" in text and "'" not in text and "\n" not in text:
            return f"'{text}'"  # a literal string: regexes stay readable
        return json.dumps(text)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        items = [_toml(v) for v in value]
        one = "[" + ", ".join(items) + "]"
        if len(one) <= _WIDTH - 40:
            return one
        rows, row = [], ""
        for item in items:
            if row and len(row) + len(item) + 2 > _WIDTH - 6:
                rows.append(row)
                row = ""
            row += f"{item}, "
        rows.append(row)
        return "[\n" + "\n".join("    " + r.rstrip() for r in rows) + "\n]"
    raise TypeError(f"no TOML form for {value!r}")
