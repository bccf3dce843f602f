"""One message through the scan stage: parse, scan, decide, add headers, journal, queue.

Ordering is the durability contract: the event (with the raw message) is
appended to the journal, fsynced, *before* qmail-queue runs. If qmail-queue
then fails, a compensating ``message.queue_failed`` event follows and the
client gets the failure, so the sender retries. A message is never accepted
without its event being durable; when anything is in doubt we temp-fail.

In the daemon qmail-queue is run by qscan-queue, not here: ``Request.queue`` hands it the
final message and returns what qmail-queue answered (docs/protocol.md, "The hand-off").
Without one (in-process callers: tests, benchmarks) the processor runs qmail-queue itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from ingest import exitcodes as ec
from ingest.envelope import AddressTooLong, Envelope, EnvelopeError, EnvelopeTruncated, parse_envelope
from ingest.event import (
    Action,
    Category,
    ClientInfo,
    EnvelopeInfo,
    Finding,
    HeaderSummary,
    MessageScanned,
    Part,
    QueueFailed,
    Timings,
    to_json,
)
from ingest.found_parts import merge_found_parts
from ingest.headers import diagnostics_value, fold, line_ending
from ingest.ids import uuid7
from ingest.journal import Journal, JournalError
from ingest.mime import header_summary, part_records
from ingest.qmail_queue import run_qmail_queue
from ingest.summary_line import format_summary
from ingest.summary_log import NullLog, SummaryLog
from ingest.verdict import decide
from scanners.base import ScanContext, Scanner, ScanPart
from scanners.direction import in_domains
from scanners.inventory import Inventory, build, plan_for
from scanners.mime.crypto import crypto_use
from scanners.mime.parse import parse
from scanners.result import Disposition, ScanResult, Verdict
from scanners.settings import SECTION, Check, MiB, domain_names, setting
from scanners.size import SizeScanner
from scanners.text import one_line

log = logging.getLogger(__name__)

PRODUCT = "qscan-0.1.0"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
JOURNAL_FAIL = "Zqscan: cannot record the message, try again later (#4.3.0)"
DEADLINE_TEXT = "Zqscan: scanning took too long, try again later (#4.3.0)"
CLIENT_GONE_TEXT = "Zqscan: qscan-queue went away before qmail-queue ran (#4.3.0)"
ENVELOPE_FORMAT_TEXT = "Dqscan: envelope format error (#5.5.4)"
TOO_MANY_RCPT_TEXT = "Dqscan: too many recipients (#5.5.3)"
HANDOFF_FAIL_TEXT = "Zqscan: internal error handing the message to qmail-queue (#4.3.0)"
# exit_code of a message.queue_failed event when qmail-queue never ran (or its run broke down)
NOT_RUN = -1
# exit_code of a message.queue_failed event when qscan-queue took the message and closed the
# connection without reporting qmail-queue's exit: it died (a signal), so qmail-smtpd told
# the sender to retry ("qq crashed"); whether qmail-queue had queued it first is not known.
NOT_REPORTED = -2
NOT_REPORTED_TEXT = ("Zqscan: qscan-queue left without reporting qmail-queue's exit; the sender was told "
                     "to retry (#4.3.0)")
_ACCEPTING = (Action.DELIVER, Action.QUARANTINE, Action.DROP)  # answered 0: the client must be there
QUEUE_SLACK = 1.0  # seconds left for sending the answer when qmail-queue is cut to the deadline
AUTH_VARS = ("SMTPAUTHUSER", "SMTP_AUTH_USER", "AUTH_USER")
# What only the SMTP front end may say about a message: its client, relay right and AUTH user.
# From any other peer (a local user talking to the socket) they are ignored: anyone on the
# box could otherwise turn a rejected inbound message into an accepted "relay" one.
CLIENT_VARS = ("TCPREMOTEIP", "TCPREMOTEHOST", "TCPREMOTEINFO", "TCPREMOTEPORT", "TCPLOCALIP",
               "TCPLOCALHOST", "TCPLOCALPORT", "RELAYCLIENT", "SMTPAUTHMETHOD", "TLS_PROTOCOL",
               "HELO", "SMTPHELO", *AUTH_VARS)


@dataclass(frozen=True, slots=True)
class HeadersSettings:
    """What the processor adds to each message it passes on."""

    __pydantic_config__ = SECTION
    diagnostics: bool = setting(True, "add X-Qmail-Scanner-Diagnostics")
    style: Literal["header", "received"] = setting(
        "header", "'received' writes the diagnostics as a Received: line instead")
    mail_from: bool = setting(False, "add X-Qmail-Scanner-Mail-From")
    attachments: bool = setting(False, "add X-Qmail-Scanner-Mime-Attachments")
    recipients: bool = setting(False, "add X-Qmail-Scanner-Rcpt-To (privacy: off)")


def _margin_fits(value: float, *, client_timeout: float) -> float:
    if value >= client_timeout:
        raise ValueError(f"must be smaller than client_timeout ({client_timeout:g})")
    return value


def _domains(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return None if value is None else domain_names(value)


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    """The [daemon] keys the processor reads (ingest/daemon.py's DaemonSettings adds the rest)."""

    __pydantic_config__ = SECTION
    smtp_users: tuple[str, ...] = setting(
        ("qmaild",), "users whose client attributes (TCPREMOTEIP, RELAYCLIENT, AUTH user, HELO) are "
        "trusted: qmail-smtpd's uid. From anyone else the mail is local")
    local_domains: Annotated[tuple[str, ...] | None, Check(_domains)] = setting(
        None, "recipient domains that are local ('.example.com': subdomains): local mail to anyone "
        "else counts as outbound; unset: qmail's control/locals, rcpthosts and me",
        example=("example.com", ".example.com"))
    max_recipients: int = setting(10000, "more envelope recipients are refused permanently", ge=1)
    max_message_size: int = setting(50 * MiB, "bigger messages are rejected permanently (bytes)", ge=1024)
    qmail_queue: Path = setting(
        Path("/var/qmail/bin/qmail-queue"), "the real qmail-queue: where qmail's control/ is, and "
        "what releases run (qscan-queue runs its own, QSCAN_QMAIL_QUEUE in its environment)")
    qmail_queue_timeout: float = setting(
        600.0, "seconds qmail-queue may take (cut to the client's remaining time); qscan-queue "
        "kills it past them", gt=0)
    hostname: str = setting("", "name used in headers and events (default: FQDN)")
    client_timeout: float = setting(
        1200.0, "the longest any qscan-queue waits for its answer once the message is sent (its "
        "QSCAN_TIMEOUT, which it also sends: the daemon uses the shorter); the daemon never queues "
        "a message the client gave up on", gt=0)
    deadline_margin: Annotated[float, Check(_margin_fits, "client_timeout")] = setting(
        30.0, "seconds before client_timeout after which a scanned message is temp-failed instead "
        "of queued (journal append and qmail-queue must fit in it)", ge=0)


@dataclass(frozen=True)
class ProcessorOptions:
    """What a processor runs with: its settings as configured, and what the wiring resolves
    from them once, in the master, before the workers fork."""

    hostname: str  # daemon.hostname, or the FQDN when that is empty
    settings: ProcessorSettings = field(default_factory=ProcessorSettings)
    headers: HeadersSettings = field(default_factory=HeadersSettings)
    queue_env: dict[str, str] = field(default_factory=lambda: {"PATH": "/usr/bin:/bin"})
    # The MIME parser giving up entirely (no usable structure): internal.error_action.
    unparseable_action: Disposition = Disposition.QUARANTINE
    # Peers (uids) whose client attributes are trusted: daemon.smtp_users. None: every peer
    # (in-process callers; a daemon always passes a set).
    smtp_uids: frozenset[int] | None = None
    # daemon.local_domains, or qmail's own when unset; addresses without a domain are local.
    local_domains: tuple[str, ...] = ()


@dataclass
class Request:
    message: bytes
    envelope: bytes
    attrs: dict[str, str]
    size: int  # bytes received (may exceed len(message) when oversized)
    sha256: str
    received: float  # epoch seconds
    receive_ms: float = 0.0
    # time.monotonic() at which qscan-queue stops waiting for the answer (None: no deadline)
    client_deadline: float | None = None
    # True while the client is still connected; called once, right before qmail-queue runs
    client_alive: Callable[[], bool] | None = None
    # Who connected, from the kernel (SO_PEERCRED); None when the request was built in-process
    # (tests, benchmarks, re-injection), which is trusted like an SMTP peer.
    peer_uid: int | None = None
    peer_gid: int | None = None
    peer_pid: int | None = None
    # Seconds the client waits once its request is in (its QSCAN_TIMEOUT): a short one shrinks
    # the margin, which must never be all of it.
    client_wait: float | None = None
    # The hand-off to the client (the daemon): give it the final message of this event with
    # the seconds qmail-queue may take; False when it could not be given (the client is gone).
    # Its report of qmail-queue's exit is then the daemon's to await and journal, not this
    # processor's. Unset: the processor runs qmail-queue itself.
    queue: Callable[[str, bytes, float], bool] | None = None
    # Called with the event id right before a delivery's event is appended to the journal (the
    # daemon notes it until the client has the message: a worker dying in between leaves the
    # master to record message.queue_failed).
    on_commit: Callable[[str], None] | None = None


@dataclass
class Outcome:
    code: int
    text: str | None
    event: MessageScanned | None = None
    # The client was handed the message (Request.queue): it runs qmail-queue and answers qmail
    # itself; nothing more is sent to it, and its report goes to the daemon's master.
    handed_off: bool = False


def _addr(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _spam_status(findings: list[ScanResult]) -> tuple[str | None, float | None]:
    """Qmail-Scanner's ``SA:1(15.0/5.0)`` part and the event's spam score, from the first spam
    scanner that ran (its result carries ``spam_score``/``spam_required``). Both show the score
    to one decimal, as the X-Spam-* headers do."""
    for r in findings:
        if r.error is None and r.spam_score is not None:
            flag = 1 if r.verdict == Verdict.SPAM else 0
            required = "?" if r.spam_required is None else f"{r.spam_required:.1f}"
            return f"{flag}({r.spam_score:.1f}/{required})", round(r.spam_score, 1)
    return None, None


class Processor:
    """Holds the warm state of one worker: journal connection, scanners, log."""

    def __init__(
        self,
        options: ProcessorOptions,
        journal: Journal,
        scanners: list[Scanner],
        summary_log: SummaryLog | None = None,
    ) -> None:
        self.opt = options
        self.journal = journal
        self.scanners = scanners
        self.contents_plan = plan_for(scanners)  # how each message's contents are unpacked
        self.summary_log = summary_log or NullLog()
        self.uid = os.getuid()

    # -- the pipeline -------------------------------------------------------
    def process(self, req: Request) -> Outcome:
        try:
            env = parse_envelope(req.envelope)
        except AddressTooLong:
            return Outcome(ec.ADDRESS_TOO_LONG, None)
        except EnvelopeTruncated:  # the writer aborted: what qmail-queue answers
            return Outcome(ec.ENVELOPE_FORMAT, None)
        except EnvelopeError:  # permanent: the same bytes fail every retry
            return Outcome(ec.CUSTOM_ERROR, ENVELOPE_FORMAT_TEXT)
        if len(env.recipients) > self.opt.settings.max_recipients:
            return Outcome(ec.CUSTOM_ERROR, TOO_MANY_RCPT_TEXT)
        try:
            event, new_raw = self._scan(req, env)
            body = to_json(event, with_raw=False)
        except Exception as exc:  # a bug must never lose mail, nor temp-fail it on every retry
            log.exception("scan failed; recording the message as internal-error")
            try:
                event, new_raw = self._internal_error(req, env, exc)
                body = to_json(event, with_raw=False)
            except Exception:  # nothing to record it with: the one case left to the sender's retry
                log.exception("cannot record the message; temp-failing")
                return Outcome(ec.CUSTOM_ERROR, "Zqscan: internal error while scanning (#4.3.0)")
        return self._commit(event, body, new_raw, env, req)

    def _error_result(self, scanner: str, exc: BaseException) -> ScanResult:
        """A scanner (or the stage itself) raised on this message: it would raise again on every
        retry, so the message gets a lasting outcome (internal.error_action: quarantined by
        default, delivered when set to deliver) instead of a temporary failure."""
        detail = one_line(f"{type(exc).__name__}: {exc}", 200)
        action = (Disposition.DELIVER if self.opt.unparseable_action == Disposition.DELIVER
                  else Disposition.QUARANTINE)
        return ScanResult(scanner=scanner, name="internal-error", detail=detail,
                          disposition=action, error=detail)

    def _internal_error(self, req: Request, env: Envelope, exc: BaseException
                        ) -> tuple[MessageScanned, bytes]:
        """The event for a message whose scan broke down: built only from values that cannot fail
        (the envelope, the client, sizes and hashes), the message kept as received."""
        r = self._error_result("qscan", exc)
        decision = decide([r])
        raw = req.message
        oversized = req.size > self.opt.settings.max_message_size
        event = MessageScanned(
            event_id=str(uuid7()),
            time=datetime.fromtimestamp(req.received, UTC),
            host=self.opt.hostname,
            envelope=EnvelopeInfo(sender=_addr(env.sender), recipients=[_addr(x) for x in env.recipients],
                                  raw=env.raw),
            client=self._client(req, env)[0],
            headers=HeaderSummary(),
            size=req.size,
            sha256=req.sha256,
            raw_sha256=None if oversized else req.sha256,
            findings=[Finding(scanner=r.scanner, verdict=Category.CLEAN, name=r.name, detail=r.detail,
                              error=r.error)],
            category=decision.category,
            action=decision.action,
            reason=decision.reason,
            reply=decision.reply,
            raw_message=b"" if oversized else raw,
        )
        return event, raw

    def _trusted(self, req: Request) -> tuple[dict[str, str], list[str]]:
        """The request's attributes a peer may set, and the names of those it may not."""
        trusted = self.opt.smtp_uids
        if req.peer_uid is None or trusted is None or req.peer_uid in trusted:
            return req.attrs, []
        kept = {k: v for k, v in req.attrs.items() if k not in CLIENT_VARS}
        return kept, sorted(k for k in req.attrs if k in CLIENT_VARS)

    def _is_local(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""
        return not domain or in_domains(domain, self.opt.local_domains)

    def _client(self, req: Request, env: Envelope | None = None) -> tuple[ClientInfo, dict[str, str]]:
        """Who sent the message, and the attributes the scanners may see (the trusted ones)."""
        attrs, untrusted = self._trusted(req)
        ip = attrs.get("TCPREMOTEIP") or None
        auth = next((attrs[v] for v in AUTH_VARS if attrs.get(v)), None)
        relay = "RELAYCLIENT" in attrs
        local = ip is None
        outbound = relay
        if local and env is not None and not relay:
            outbound = any(not self._is_local(_addr(r)) for r in env.recipients)
        return ClientInfo(
            ip=ip,
            host=attrs.get("TCPREMOTEHOST") or None,
            info=attrs.get("TCPREMOTEINFO") or None,
            helo=attrs.get("SMTPHELO") or attrs.get("HELO") or None,
            relay=relay,
            auth_user=auth,
            local=local,
            peer_uid=req.peer_uid,
            outbound=outbound,
            untrusted=untrusted,
        ), attrs

    def _scan(self, req: Request, env: Envelope) -> tuple[MessageScanned, bytes]:
        t0 = time.perf_counter()
        client, attrs = self._client(req, env)
        raw = req.message
        findings: list[ScanResult] = []
        # Beside each finding, what the processor measured: how long its scanner's call took and
        # the scanner's version (a result's own values, when it has them, come first).
        stamps: list[tuple[float, str]] = []
        oversized = req.size > self.opt.settings.max_message_size
        message = None
        parts_meta: list[Part] = []
        scan_parts: list[ScanPart] = []
        headers = HeaderSummary()
        defects: list[str] = []
        contents: Inventory | None = None
        if not oversized:
            try:
                message = parse(raw)
                headers = header_summary(message)
                # the one walk over the contents, unpacked as the scanners need, shared by all
                contents = build(message, self.contents_plan)
                parts_meta, scan_parts, defects = part_records(contents)
            except Exception as exc:  # the parser itself gave up: internal.error_action decides
                unparseable = self._unparseable(exc)
                findings.append(unparseable)
                stamps.append((unparseable.duration_ms, unparseable.version))
        t_parse = time.perf_counter()
        event_id = str(uuid7())  # before scanning: scanners pass it on as a queue id (rspamd)
        ctx = ScanContext(
            raw=raw,
            message=message,
            parts=scan_parts,
            sender=_addr(env.sender),
            recipients=[_addr(r) for r in env.recipients],
            client_ip=client.ip,
            relay=client.relay,
            size=req.size,
            max_size=self.opt.settings.max_message_size,
            env=attrs,
            outbound=bool(client.outbound),
            queue_id=event_id,
            inventory=contents,
        )
        if oversized:  # enforced whatever the scanner list says: the bytes were not kept
            sized = SizeScanner().scan(ctx)
            findings.extend(sized)
            stamps.extend((r.duration_ms, r.version) for r in sized)
        for scanner in [] if oversized else self.scanners:
            s0 = time.perf_counter()
            try:
                results = scanner.scan(ctx)
            except Exception as exc:
                log.exception("scanner %s failed", scanner.name)
                results = [self._error_result(scanner.name, exc)]
            took = (time.perf_counter() - s0) * 1000
            version = getattr(scanner, "version", "")
            findings.extend(results)
            stamps.extend((r.duration_ms or took, r.version or version) for r in results)
        t_scan = time.perf_counter()
        parts_meta = merge_found_parts(parts_meta, ctx.found_parts)  # archive members etc.
        decision = decide(findings)
        body = raw
        for r in findings:
            if r.transform is not None:
                try:
                    body = r.transform(body)
                except Exception:  # a broken rewrite must not lose the message
                    log.exception("transform from %s failed; message left as received", r.scanner)
        added = self._headers(raw, client, env, decision.category, findings, scan_parts,
                              time.perf_counter() - t0 + req.receive_ms / 1000, req.received)
        new_raw = b"".join(added) + body if added else body
        total_ms = (time.perf_counter() - t0) * 1000 + req.receive_ms
        event = MessageScanned(
            event_id=event_id,
            time=datetime.fromtimestamp(req.received, UTC),
            host=self.opt.hostname,
            envelope=EnvelopeInfo(
                sender=_addr(env.sender),
                recipients=[_addr(r) for r in env.recipients],
                raw=env.raw,
            ),
            client=client,
            headers=headers,
            size=req.size,
            sha256=req.sha256,
            # Hashed here, where the bytes are in hand: what every stored copy must hash to.
            raw_sha256=None if oversized else (
                req.sha256 if new_raw is raw else hashlib.sha256(new_raw).hexdigest()),
            parts=parts_meta,
            findings=[
                Finding(
                    scanner=r.scanner, version=version, verdict=Category(r.verdict.value),
                    name=r.name, score=r.score, detail=r.detail, duration_ms=round(took, 3),
                    error=r.error,
                )
                for r, (took, version) in zip(findings, stamps, strict=True)
            ],
            category=decision.category,
            action=decision.action,
            reason=decision.reason,
            reply=decision.reply,
            spam_score=_spam_status(findings)[1],
            dlp_findings=[d for r in findings for d in r.dlp],
            added_headers=[h.decode("utf-8", "replace").rstrip("\r\n") for h in added],
            timings=Timings(
                receive_ms=round(req.receive_ms, 3),
                parse_ms=round((t_parse - t0) * 1000, 3),
                scan_ms=round((t_scan - t_parse) * 1000, 3),
                total_ms=round(total_ms, 3),
            ),
            defects=defects,
            crypto=crypto_use(message, scan_parts),
            raw_message=new_raw if not oversized else b"",
        )
        return event, new_raw

    def _headers(
        self, raw: bytes, client: ClientInfo, env: Envelope, category: Category,
        findings: list[ScanResult], parts: list[ScanPart], elapsed: float, when: float,
    ) -> list[bytes]:
        eol = line_ending(raw)
        out: list[bytes] = []
        if self.opt.headers.diagnostics:
            failed = {r.scanner for r in findings if r.error}  # said in the header: never "Clear" silently
            versions = [(s.name, f"{s.version} FAILED" if s.name in failed else s.version)
                        for s in self.scanners]
            verdict = "Clear" if category == Category.CLEAN else category.value.capitalize()
            value = diagnostics_value(
                client_ip=client.ip, client_host=client.host, helo=client.helo,
                hostname=self.opt.hostname, sender=_addr(env.sender),
                uid=self.uid if client.peer_uid is None else client.peer_uid,
                product=PRODUCT, versions=versions, verdict=verdict, relay=client.relay,
                spam=_spam_status(findings)[0], elapsed=elapsed, when=when,
            )
            name = "Received" if self.opt.headers.style == "received" else "X-Qmail-Scanner-Diagnostics"
            out.append(fold(name, value, eol))
        for r in findings:
            for name, value in r.add_headers:
                if _HEADER_NAME.fullmatch(name):
                    out.append(fold(name, one_line(value, 900), eol))
        if self.opt.headers.mail_from:
            out.append(fold("X-Qmail-Scanner-Mail-From", one_line(_addr(env.sender), 500) or "<>", eol))
        if self.opt.headers.recipients:
            out.append(fold("X-Qmail-Scanner-Rcpt-To",
                            ", ".join(one_line(_addr(r), 200) for r in env.recipients[:100]), eol))
        if self.opt.headers.attachments:
            names = [f"{one_line(p.filename, 100)}:{len(p.payload)}" for p in parts if p.filename]
            if names:
                out.append(fold("X-Qmail-Scanner-Mime-Attachments", " ".join(names[:50]), eol))
        return out

    def _unparseable(self, exc: Exception) -> ScanResult:
        action = self.opt.unparseable_action
        reply = None
        if action == Disposition.REJECT:
            reply = "Dmessage could not be parsed (#5.6.0)"
        elif action == Disposition.TEMPFAIL:
            reply = "Zmessage could not be parsed, try again later (#4.6.0)"
        return ScanResult(
            scanner="mime", verdict=Verdict.MALFORMED, name="unparseable",
            detail=one_line(f"{type(exc).__name__}: {exc}", 200), disposition=action, reply=reply,
        )

    def _margin(self, req: Request) -> float:
        margin = self.opt.settings.deadline_margin
        return margin if req.client_wait is None else min(margin, req.client_wait / 4)

    def _commit(self, event: MessageScanned, body: bytes, new_raw: bytes, env: Envelope, req: Request
                ) -> Outcome:
        if (req.client_deadline is not None and event.action in _ACCEPTING
                and time.monotonic() > req.client_deadline - self._margin(req)):
            # The client is about to give up (or has): accepting now would keep the message twice,
            # once here and once on the sender's retry. Record a temp-failure, queue nothing.
            log.warning("deadline passed for %s; temp-failing without queueing", event.event_id)
            event = event.model_copy(
                update={"action": Action.TEMPFAIL, "reason": "deadline", "reply": DEADLINE_TEXT})
            body = to_json(event, with_raw=False)
        if event.action == Action.DELIVER and req.on_commit is not None:
            req.on_commit(event.event_id)
        try:
            self.journal.append(
                event.event_id, event.type, body,
                new_raw if event.raw_message else None,
                raw_sha256=event.raw_sha256 if event.raw_message else None,  # hashed once
            )
        except JournalError:
            log.exception("journal append failed; temp-failing")
            return Outcome(ec.CUSTOM_ERROR, JOURNAL_FAIL, event)
        try:
            self.summary_log.write(format_summary(event))
        except Exception:  # the summary line is a convenience; the journal has the truth
            log.exception("summary log write failed")
        if event.action == Action.DELIVER:
            # From here the journal says "deliver": every way out that does not queue the
            # message must write the compensating event, or consumers would count it delivered.
            try:
                return self._hand_off(event, new_raw, env, req)
            except Exception as exc:
                log.exception("handing %s to qmail-queue failed", event.event_id)
                self._queue_failed(event, NOT_RUN, f"Zqscan: cannot run qmail-queue: {type(exc).__name__}: "
                                   f"{one_line(str(exc), 200)} (#4.3.0)")
                return Outcome(ec.CUSTOM_ERROR, HANDOFF_FAIL_TEXT, event)
        if event.action in (Action.QUARANTINE, Action.DROP):
            return Outcome(ec.QUEUED, None, event)  # durable in the journal: accepted
        return Outcome(ec.CUSTOM_ERROR, event.reply, event)

    def _hand_off(self, event: MessageScanned, new_raw: bytes, env: Envelope, req: Request) -> Outcome:
        if req.client_alive is not None and not req.client_alive():
            log.warning("client gone before qmail-queue for %s; not queued", event.event_id)
            self._queue_failed(event, NOT_RUN, CLIENT_GONE_TEXT)
            return Outcome(ec.CUSTOM_ERROR, CLIENT_GONE_TEXT, event)
        timeout = self.opt.settings.qmail_queue_timeout
        if req.client_deadline is not None:  # a qmail-queue outliving the client would deliver twice
            timeout = max(0.0, min(timeout, req.client_deadline - time.monotonic() - QUEUE_SLACK))
        if req.queue is not None:
            if not req.queue(event.event_id, new_raw, timeout):  # it never ran qmail-queue
                log.warning("client gone before the hand-off of %s; not queued", event.event_id)
                self._queue_failed(event, NOT_RUN, CLIENT_GONE_TEXT)
                return Outcome(ec.CUSTOM_ERROR, CLIENT_GONE_TEXT, event)
            return Outcome(ec.QUEUED, None, event, handed_off=True)
        res = run_qmail_queue(self.opt.settings.qmail_queue, new_raw, env.raw, timeout=timeout,
                              env=self.opt.queue_env)
        if res.code != ec.QUEUED:
            log.warning("qmail-queue exited %s for %s", res.code, event.event_id)
            self._queue_failed(event, res.code, res.text)
            return Outcome(res.code, res.text, event)
        return Outcome(ec.QUEUED, None, event)

    def _queue_failed(self, event: MessageScanned, code: int, reply: str | None) -> None:
        self.queue_failed(event.event_id, code, reply)

    def queue_failed(self, event_id: str, code: int, reply: str | None) -> None:
        """Append message.queue_failed for ``event_id`` (a failure is logged, never raised)."""
        failed = QueueFailed(
            event_id=str(uuid7()), time=datetime.now(UTC), host=self.opt.hostname,
            ref_event_id=event_id, exit_code=code, reply=reply,
        )
        try:
            self.journal.append(failed.event_id, failed.type, to_json(failed))
        except JournalError:
            log.exception("could not record queue failure of %s", event_id)


WORKER_DIED_TEXT = ("Zqscan: the worker died after recording the message and before handing it to "
                    "qscan-queue; the sender was told to retry (#4.3.0)")


def record_queue_failure(journal_path: Path, hostname: str, event_id: str, code: int,
                         reply: str | None) -> None:
    """message.queue_failed for ``event_id``, appended by a process without a Processor: the
    daemon's master, which awaits qscan-queue's report of qmail-queue's exit and sees workers
    die. ``code``: qmail-queue's exit, NOT_REPORTED or NOT_RUN."""
    failed = QueueFailed(event_id=str(uuid7()), time=datetime.now(UTC), host=hostname,
                         ref_event_id=event_id, exit_code=code, reply=reply)
    with Journal(journal_path) as journal:
        journal.append(failed.event_id, failed.type, to_json(failed))


def make_request(message: bytes, envelope: bytes, attrs: dict[str, str] | None = None) -> Request:
    """Build a request directly (tests, benchmarks, re-injection)."""
    return Request(
        message=message, envelope=envelope, attrs=attrs or {}, size=len(message),
        sha256=hashlib.sha256(message).hexdigest(), received=time.time(),
    )
