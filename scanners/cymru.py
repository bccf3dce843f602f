"""Team Cymru Malware Hash Registry: attachment hashes looked up as DNS TXT records.

Each attachment's digest is queried under ``zone``; an answer at or above
``threshold`` percent detection is a virus finding. A lookup must never hold mail
up: the whole message gets ``timeout`` seconds of DNS, answers (including
"unknown") are cached for ``cache_ttl`` seconds per worker, and by default a
failed lookup lets the mail pass with the error recorded.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

import dns.exception
import dns.rdatatype
import dns.resolver

from scanners import outcomes
from scanners.base import ScanContext, ScanPart
from scanners.outcomes import FailurePolicy, VirusAction
from scanners.protocols import ProtocolError
from scanners.protocols import cymru as proto
from scanners.result import ScanResult
from scanners.settings import SECTION, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CymruSettings:
    """Team Cymru's hash registry over DNS, and what a hit or an outage does."""

    __pydantic_config__ = SECTION
    zone: str = setting(proto.DEFAULT_ZONE, "MHR DNS zone", pattern=r"^[A-Za-z0-9.-]+$")
    nameservers: tuple[str, ...] = setting((), "resolver IPs; empty: /etc/resolv.conf")
    port: int = setting(53, ge=1, le=65535)
    timeout: float = setting(2.0, "seconds of DNS for all lookups of one message", gt=0)
    threshold: int = setting(25, "detection percent from which a hash is malware", ge=0, le=100)
    hash: Literal["md5", "sha1", "sha256"] = setting("sha256")
    cache_ttl: float = setting(600.0, "seconds answers (also 'unknown') are cached", ge=0)
    cache_size: int = setting(10000, ge=0)
    max_lookups: int = setting(20, "hashes looked up per message at most", ge=1)
    attachments_only: bool = setting(True, "skip text/* parts without a file name")
    failure_policy: FailurePolicy = setting("pass")
    action: VirusAction = setting("quarantine")


class _Cache:
    """A small TTL + LRU map: digest -> answer (None: not in the registry)."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._data: OrderedDict[str, tuple[float, proto.Answer | None]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, proto.Answer | None]:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._data.pop(key, None)
            return False, None
        self._data.move_to_end(key)
        return True, hit[1]

    def put(self, key: str, value: proto.Answer | None) -> None:
        if self.ttl <= 0 or self.size <= 0:
            return
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class CymruScanner:
    name = "cymru"

    def __init__(self, options: CymruSettings) -> None:
        self.opt = options
        proto.query_name("0" * 32, options.zone)  # a bad zone fails at start-up, not per message
        self.version = f"MHR@{options.zone.strip('.')}"
        self.resolver = dns.resolver.Resolver(configure=not options.nameservers)
        if options.nameservers:
            self.resolver.nameservers = list(options.nameservers)
            self.resolver.port = options.port
        self.resolver.cache = None  # ours keeps NXDOMAIN too, with the configured lifetime
        self.cache = _Cache(options.cache_ttl, options.cache_size)

    def _wanted(self, part: ScanPart) -> bool:
        if not part.payload:
            return False
        if not self.opt.attachments_only:
            return True
        return bool(part.filename) or not part.content_type.startswith("text/")

    def _lookup(self, digest: str, deadline: float) -> proto.Answer | None:
        cached, answer = self.cache.get(digest)
        if cached:
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout(timeout=self.opt.timeout)
        self.resolver.timeout = left
        try:
            reply = self.resolver.resolve(
                proto.query_name(digest, self.opt.zone), dns.rdatatype.TXT,
                lifetime=left, search=False, raise_on_no_answer=False,
            )
        except dns.resolver.NXDOMAIN:
            answer = None
        else:
            records = list(reply.rrset or [])
            answer = proto.parse_txt(list(records[0].strings)) if records else None
        self.cache.put(digest, answer)
        return answer

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        deadline = time.monotonic() + self.opt.timeout
        digests: dict[str, str] = {}
        for part in ctx.parts:
            if self._wanted(part):
                digest = hashlib.new(self.opt.hash, part.payload).hexdigest()
                digests.setdefault(digest, f"part {part.path}")
        listed = 0
        for digest, where in list(digests.items())[: self.opt.max_lookups]:
            try:
                answer = self._lookup(digest, deadline)
            except (dns.exception.DNSException, ProtocolError) as exc:
                error = f"{where}: {type(exc).__name__}: {exc}"
                log.warning("cymru: %s", error)
                return [outcomes.failed(self.name, self.version, error, self.opt.failure_policy)]
            if answer is None:
                continue
            listed += 1
            if answer.detection is not None and answer.detection >= self.opt.threshold:
                result = outcomes.virus(
                    self.name, self.version, f"MHR.{answer.detection}pct", f"{where} {digest}",
                    self.opt.action,
                )
                return [replace(result, score=float(answer.detection))]
        looked = min(len(digests), self.opt.max_lookups)
        detail = f"{looked} hashes looked up, {listed} listed below threshold"
        if len(digests) > looked:
            detail += f", {len(digests) - looked} not looked up"
        return [outcomes.scanned(self.name, self.version, detail)]
