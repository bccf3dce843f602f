"""rspamd's ``/checkv2`` as a spam scanner: an alternative to spamd, same thresholds.

rspamd decides an action itself; with ``follow_actions`` its ``reject`` becomes
``reject_action``, ``soft reject`` a temporary failure, ``discard`` a silent drop
and ``quarantine`` the spam/ quarantine, on top of the site's score thresholds
(the stronger wins). Its version comes free with every reply (``Server: rspamd/3.4``).
The HTTP exchange uses the standard library; ``timeout`` bounds each socket
operation.
"""

from __future__ import annotations

import http.client
import logging
from dataclasses import dataclass
from typing import Literal

from scanners import outcomes, spam_policy
from scanners.base import ScanContext
from scanners.outcomes import FailurePolicy
from scanners.protocols import ProtocolError
from scanners.protocols import rspamd as proto
from scanners.result import Disposition, ScanResult
from scanners.settings import MiB, Secret, setting
from scanners.spam_policy import SpamPolicy, SpamScore

log = logging.getLogger(__name__)
AUTH_VARS = ("SMTPAUTHUSER", "SMTP_AUTH_USER", "AUTH_USER")  # as qmail-smtpd AUTH patches set them
_REJECT_ACTION = {
    "reject": Disposition.REJECT, "quarantine": Disposition.QUARANTINE, "drop": Disposition.DROP,
}


@dataclass(frozen=True, slots=True)
class RspamdSettings(SpamPolicy):
    """The spam thresholds (SpamPolicy), rspamd's normal worker, and how far its own
    actions are followed."""

    host: str = setting("127.0.0.1")
    port: int = setting(11333, "rspamd's normal worker", ge=1, le=65535)
    path: str = setting(proto.PATH, pattern=r"^/[!-~]*$")
    password: Secret | None = setting(None, "only if the worker requires one", example="...", repr=False)
    timeout: float = setting(30.0, "seconds per socket operation", gt=0)
    max_size: int = setting(2 * MiB, "bigger mail is not spam-scanned (recorded as skipped)", ge=1)
    skip_relay: bool = setting(True)
    failure_policy: FailurePolicy = setting("pass")
    follow_actions: bool = setting(
        True, "rspamd's reject/soft reject/discard/quarantine actions apply on top of thresholds")
    reject_action: Literal["reject", "quarantine", "drop"] = setting(
        "reject", "what rspamd's 'reject' action does here")


class RspamdScanner:
    name = "rspamd"

    def __init__(self, options: RspamdSettings) -> None:
        self.opt = options
        self.version = "unknown"

    def _forced(self, action: str) -> Disposition:
        if not self.opt.follow_actions:
            return Disposition.NONE
        return {
            "reject": _REJECT_ACTION[self.opt.reject_action],
            "soft reject": Disposition.TEMPFAIL,
            "discard": Disposition.DROP,
            "quarantine": Disposition.QUARANTINE,
        }.get(action, Disposition.NONE)

    def _post(self, ctx: ScanContext) -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPConnection(self.opt.host, self.opt.port, timeout=self.opt.timeout)
        try:
            conn.putrequest("POST", self.opt.path, skip_accept_encoding=True)
            headers = proto.request_headers(
                ip=ctx.client_ip,
                helo=ctx.env.get("SMTPHELO") or ctx.env.get("HELO"),
                sender=ctx.sender,
                recipients=ctx.recipients,
                queue_id=ctx.queue_id or None,
                user=next((ctx.env[v] for v in AUTH_VARS if ctx.env.get(v)), None),
                password=self.opt.password,
            )
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(ctx.raw)))
            conn.endheaders(ctx.raw)
            response = conn.getresponse()
            return response.status, response.getheader("Server"), response.read()
        finally:
            conn.close()

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        if self.opt.skip_relay and ctx.relay:
            return [spam_policy.skipped(self.name, self.version, "relay client")]
        if len(ctx.raw) > self.opt.max_size:
            return [spam_policy.skipped(self.name, self.version, f"{len(ctx.raw)} bytes > max_size")]
        try:
            status, server, body = self._post(ctx)
            reply = proto.parse_reply(status, body)
        except (OSError, http.client.HTTPException, ProtocolError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("rspamd %s:%s: %s", self.opt.host, self.opt.port, error)
            return [outcomes.failed(self.name, self.version, error, self.opt.failure_policy,
                                    reply=outcomes.SPAM_TEMPFAIL_REPLY)]
        self.version = proto.server_version(server) or self.version
        rules = tuple(sorted(reply.symbols, key=lambda s: (-abs(reply.symbols[s]), s)))
        score = SpamScore(reply.score, reply.required_score, reply.spam, rules, self._forced(reply.action))
        return [spam_policy.spam_result(self.name, self.version, score, self.opt,
                                        detail_prefix=f"action={reply.action} ")]
