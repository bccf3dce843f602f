"""SpamAssassin's spamd (``SPAMC/1.5``) as a scanner, with the site's spam thresholds.

Mail from relay clients (``RELAYCLIENT``: the site's own users sending out) is not
spam-scanned by default, and neither is mail above ``max_size`` (spamc's own
default limit is 500 KB: spam is small, and scoring a big message is slow). Both
are recorded as skipped. spamd's version is not part of the protocol; it is read
from the ``X-Spam-Checker-Version`` of a ``HEADERS`` probe now and then.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from scanners import outcomes, spam_policy
from scanners.base import ScanContext
from scanners.netio import Endpoint, exchange
from scanners.outcomes import FailurePolicy
from scanners.protocols import ProtocolError
from scanners.protocols import spamc as proto
from scanners.result import ScanResult
from scanners.settings import Check, setting, socket_path
from scanners.spam_policy import SpamPolicy, SpamScore

log = logging.getLogger(__name__)
PROBE = b"From: qscan@localhost\nTo: qscan@localhost\nSubject: version probe\n\nversion probe\n"


@dataclass(frozen=True, slots=True)
class SpamdSettings(SpamPolicy):
    """The spam thresholds (SpamPolicy), where spamd listens and what it is asked."""

    socket: Annotated[str, Check(socket_path)] = setting("", "spamd's unix socket; empty: TCP host/port")
    host: str = setting("127.0.0.1")
    port: int = setting(783, ge=1, le=65535)
    connect_timeout: float = setting(2.0, gt=0)
    timeout: float = setting(30.0, "seconds from connect to reply", gt=0)
    command: Literal["SYMBOLS", "REPORT"] = setting(
        "SYMBOLS", "REPORT also gives each rule's points (tests=GTUBE=1000)")
    user: str | None = setting(None, "spamd User: header (per-user settings)", example="spamd-user")
    max_size: int = setting(512 * 1024, "bigger mail is not spam-scanned (recorded)", ge=1)
    skip_relay: bool = setting(True, "do not spam-scan mail from relay clients (RELAYCLIENT)")
    failure_policy: FailurePolicy = setting("pass", "spamd unavailable: pass or tempfail")
    version_refresh: float = setting(3600.0, "seconds between version probes", gt=0)


class SpamdScanner:
    name = "spamd"

    def __init__(self, options: SpamdSettings) -> None:
        self.opt = options
        self.endpoint = Endpoint(options.socket or None, options.host, options.port)
        self.version = "unknown"
        self._version_at = -float("inf")

    def _call(self, command: str, message: bytes) -> proto.Response:
        request = proto.build_request(command, message, self.opt.user)
        response = exchange(
            self.endpoint, [request], proto.ResponseReader(),
            connect_timeout=self.opt.connect_timeout, timeout=self.opt.timeout,
        )
        if not response.ok:
            raise ProtocolError(f"spamd: {response.code} {response.message}"[:300])
        return response

    def refresh_version(self, force: bool = False) -> str | None:
        """A ``HEADERS`` probe now and then; the error if spamd did not answer."""
        now = time.monotonic()
        if not force and now - self._version_at < self.opt.version_refresh:
            return None
        try:
            found = proto.checker_version(self._call("HEADERS", PROBE).body)
        except OSError as exc:  # unreachable or hung: the scan itself would fail the same way
            log.warning("spamd %s: version probe failed: %s", self.endpoint, exc)
            return f"version probe: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        except ProtocolError as exc:  # an odd answer to HEADERS need not stop SYMBOLS
            log.warning("spamd %s: version probe: %s", self.endpoint, exc)
            found = None
        self._version_at = now
        if found:
            self.version = found
        return None

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        if self.opt.skip_relay and ctx.relay:
            return [spam_policy.skipped(self.name, self.version, "relay client")]
        if len(ctx.raw) > self.opt.max_size:
            return [spam_policy.skipped(self.name, self.version, f"{len(ctx.raw)} bytes > max_size")]
        down = self.refresh_version()
        if down:  # do not wait a second timeout on a server that just failed to answer
            return [self._failed(down)]
        try:
            response = self._call(self.opt.command, ctx.raw)
            verdict = response.spam
            if verdict is None:
                raise ProtocolError("spamd reply without a Spam header")
        except (OSError, ProtocolError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("spamd %s: %s", self.endpoint, error)
            self._version_at = -float("inf")
            return [self._failed(error)]
        is_spam, score, required = verdict
        if self.opt.command == "REPORT":
            # REPORT knows each rule's points: SpamAssassin's _TESTSSCORES_ style, GTUBE=1000
            rules = tuple(f"{rule}={points:g}" for rule, points in proto.report_rules(response.body))
        else:
            rules = tuple(proto.symbols(response.body))
        return [spam_policy.spam_result(
            self.name, self.version, SpamScore(score, required, is_spam, rules), self.opt
        )]

    def _failed(self, error: str) -> ScanResult:
        return outcomes.failed(self.name, self.version, error, self.opt.failure_policy,
                               reply=outcomes.SPAM_TEMPFAIL_REPLY)
