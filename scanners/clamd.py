"""clamd over a unix socket or TCP: every decoded MIME part, and optionally the raw message.

Parts are streamed with ``zINSTREAM``, one short connection each, so clamd sees
exactly what a mail client would save (base64 and quoted-printable already
undone); clamd unpacks archives inside them itself. ``redundant`` also streams
the raw message, which catches what a MIME parser may not hand over as a part
(uuencoded blocks in a text body, malformed structure clamd reads differently).
The first detection ends the scan: the verdict is decided.

A part larger than ``max_stream_size`` (keep it equal to clamd's StreamMaxLength)
is not sent; it, and clamd's own ``INSTREAM size limit exceeded``, follow
``size_limit_policy`` with the error recorded, never a silent "clean".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from scanners import outcomes
from scanners.base import ScanContext
from scanners.netio import Endpoint, exchange
from scanners.outcomes import FailurePolicy, VirusAction
from scanners.protocols import ProtocolError
from scanners.protocols import clamd as proto
from scanners.result import ScanResult
from scanners.settings import SECTION, Check, MiB, setting, socket_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClamdSettings:
    """Where clamd listens and what a detection or an outage does."""

    __pydantic_config__ = SECTION
    socket: Annotated[str, Check(socket_path)] = setting(
        "/var/run/clamav/clamd.ctl", "clamd's unix socket; empty: TCP host/port")
    host: str = setting("127.0.0.1", "clamd's TCP address when socket is empty")
    port: int = setting(3310, ge=1, le=65535)
    connect_timeout: float = setting(2.0, "seconds to connect", gt=0)
    timeout: float = setting(60.0, "seconds for one part, connect to reply", gt=0)
    redundant: bool = setting(False, "also scan the raw message, not only the decoded parts")
    max_stream_size: int = setting(
        25 * MiB, "parts above this are not sent (keep equal to clamd's StreamMaxLength)", ge=1)
    failure_policy: FailurePolicy = setting(
        "tempfail", "clamd down, timed out or answering nonsense: tempfail, or pass (recorded)")
    size_limit_policy: FailurePolicy = setting(
        "pass", "a part too big for clamd: pass (recorded as not scanned) or tempfail")
    action: VirusAction = setting("quarantine", "what a detection does (or reject, drop)")
    version_refresh: float = setting(300.0, "seconds between zVERSION queries", gt=0)


class ClamdScanner:
    name = "clamd"

    def __init__(self, options: ClamdSettings) -> None:
        self.opt = options
        self.endpoint = Endpoint(options.socket or None, options.host, options.port)
        self.version = "unknown"
        self._version_at = -float("inf")

    def _call(self, frames: Iterable[bytes]) -> bytes:
        return exchange(
            self.endpoint, frames, proto.ReplyReader(),
            connect_timeout=self.opt.connect_timeout, timeout=self.opt.timeout,
        )

    def refresh_version(self, force: bool = False) -> str | None:
        """``zVERSION`` now and then; the error if clamd did not answer (the version stays)."""
        now = time.monotonic()
        if not force and now - self._version_at < self.opt.version_refresh:
            return None
        try:
            self.version = proto.parse_version(self._call([proto.command("VERSION")])).short
        except OSError as exc:  # unreachable or hung: the scan itself would fail the same way
            log.warning("clamd %s: VERSION failed: %s", self.endpoint, exc)
            return f"VERSION: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        except ProtocolError as exc:
            log.warning("clamd %s: VERSION: %s", self.endpoint, exc)
        self._version_at = now
        return None

    def _targets(self, ctx: ScanContext) -> list[tuple[str, bytes]]:
        targets = [(f"part {p.path}", p.payload) for p in ctx.parts if p.payload]
        if self.opt.redundant or ctx.message is None or not ctx.parts:
            targets.append(("message", ctx.raw))  # unparsed mail is scanned whole, never skipped
        return targets

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        down = self.refresh_version()
        if down:  # do not wait a second timeout on a server that just failed to answer
            return [outcomes.failed(self.name, self.version, down, self.opt.failure_policy)]
        results: list[ScanResult] = []
        count = 0
        for where, data in self._targets(ctx):
            if len(data) > self.opt.max_stream_size:
                results.append(self._size_limit(where, f"{len(data)} bytes > max_stream_size"))
                continue
            try:
                reply = proto.parse_reply(self._call(proto.instream(data)))
            except (OSError, ProtocolError) as exc:
                error = f"{where}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
                log.warning("clamd %s: %s", self.endpoint, error)
                self._version_at = -float("inf")  # it may come back with another database
                return [*results, outcomes.failed(self.name, self.version, error, self.opt.failure_policy)]
            if isinstance(reply, proto.Found):
                return [*results, outcomes.virus(self.name, self.version, reply.name, where, self.opt.action)]
            if isinstance(reply, proto.Failed):
                if reply.size_limit:
                    results.append(self._size_limit(where, reply.message))
                    continue
                return [*results, outcomes.failed(
                    self.name, self.version, f"{where}: {reply.message}", self.opt.failure_policy
                )]
            count += 1
        if count or not results:
            results.append(outcomes.scanned(self.name, self.version, f"{count} objects scanned"))
        return results

    def _size_limit(self, where: str, why: str) -> ScanResult:
        return outcomes.failed(
            self.name, self.version, f"{where} not scanned: {why}", self.opt.size_limit_policy,
            name="size-limit",
        )
