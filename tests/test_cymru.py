"""Team Cymru MHR lookups against a dnslib DNS server on loopback: hit, miss, cache, timeout."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from hypothesis import given
from hypothesis import strategies as st

from ingest.mime import walk_parts
from qscan.testing.servers import free_port
from scanners.base import ScanContext
from scanners.cymru import CymruScanner, CymruSettings
from scanners.mime.parse import parse
from scanners.protocols import ProtocolError
from scanners.protocols.cymru import Answer, parse_txt, query_name
from scanners.result import Disposition, Verdict

MALWARE = b"MZ pretend this is a known piece of malware"
RARE = b"MZ a sample few engines detect"
ZONE = "hash.test.example"


class Registry(BaseResolver):  # type: ignore[misc]
    """MHR as Team Cymru runs it: TXT '<epoch> <percent>' for listed hashes, NXDOMAIN otherwise."""

    def __init__(self, listed: dict[str, str], delay: float = 0.0) -> None:
        self.listed, self.delay, self.queries = listed, delay, 0
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        with self.lock:
            self.queries += 1
        time.sleep(self.delay)
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".")
        label = qname.removesuffix("." + ZONE).replace(".", "")  # SHA-256 comes as two labels
        if request.q.qtype == QTYPE.TXT and label in self.listed:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(self.listed[label]), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture(scope="module")
def dns_server() -> Iterator[tuple[Registry, int]]:
    registry = Registry({
        hashlib.sha256(MALWARE).hexdigest(): "1221154281 53",
        hashlib.sha256(RARE).hexdigest(): "1221154281 10",
        hashlib.md5(MALWARE).hexdigest(): "1221154281 80",
    })
    port = free_port()
    server = DNSServer(registry, address="127.0.0.1", port=port, logger=DNSLogger("-request,-reply,-truncated"))
    server.start_thread()
    try:
        yield registry, port
    finally:
        server.stop()


@pytest.fixture
def dns(dns_server: tuple[Registry, int]) -> tuple[Registry, int]:
    dns_server[0].queries = 0
    return dns_server


def context(*attachments: tuple[bytes, str]) -> ScanContext:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.org", "files"
    msg.set_content("see attached\n")
    for data, name in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    raw = msg.as_bytes()
    parsed = parse(raw)
    _, parts, _ = walk_parts(parsed)
    return ScanContext(raw=raw, message=parsed, parts=parts, sender="a@example.com", recipients=["b@example.org"],
                       client_ip="192.0.2.1", relay=False, size=len(raw), max_size=10**8)


def scanner(port: int, **kw: object) -> CymruScanner:
    opts = {"zone": ZONE, "nameservers": ("127.0.0.1",), "port": port, "timeout": 2.0, **kw}
    return CymruScanner(CymruSettings(**opts))  # type: ignore[arg-type]


def test_known_hash_is_a_virus(dns: tuple[Registry, int]) -> None:
    _, port = dns
    [r] = scanner(port).scan(context((b"harmless", "a.txt"), (MALWARE, "invoice.exe")))
    assert (r.verdict, r.name, r.disposition, r.score) == (Verdict.VIRUS, "MHR.53pct", Disposition.QUARANTINE, 53.0)
    assert r.detail.startswith("part 3 ") and r.version == f"MHR@{ZONE}"
    [r] = scanner(port, hash="md5", action="reject").scan(context((MALWARE, "invoice.exe")))
    assert r.name == "MHR.80pct" and r.disposition == Disposition.REJECT


def test_unknown_and_below_threshold_are_clean_but_recorded(dns: tuple[Registry, int]) -> None:
    registry, port = dns
    [r] = scanner(port).scan(context((b"just a file", "notes.bin"), (RARE, "tool.exe")))
    assert r.verdict == Verdict.CLEAN and r.error is None
    assert r.detail == "2 hashes looked up, 1 listed below threshold"
    assert registry.queries == 2  # the text body without a file name is not looked up
    [r] = scanner(port, threshold=5).scan(context((RARE, "tool.exe")))
    assert r.verdict == Verdict.VIRUS


def test_answers_and_nxdomain_are_cached(dns: tuple[Registry, int]) -> None:
    registry, port = dns
    s = scanner(port)
    for _ in range(3):
        assert s.scan(context((b"unknown", "b.bin"), (MALWARE, "a.exe")))[0].verdict == Verdict.VIRUS
    assert registry.queries == 2
    s.scan(context((b"something new", "c.bin")))
    assert registry.queries == 3


def test_slow_dns_times_out_and_passes_with_the_error() -> None:
    registry = Registry({}, delay=1.0)
    port = free_port()
    server = DNSServer(registry, address="127.0.0.1", port=port, logger=DNSLogger("-request,-reply,-truncated"))
    server.start_thread()
    try:
        t0 = time.monotonic()
        [r] = scanner(port, timeout=0.3).scan(context((MALWARE, "a.exe"), (RARE, "b.exe")))
        assert time.monotonic() - t0 < 1.0  # one budget for the whole message, not per lookup
        assert r.error and "Timeout" in r.error and r.disposition == Disposition.NONE and r.verdict == Verdict.CLEAN
        [r] = scanner(port, timeout=0.3, failure_policy="tempfail").scan(context((MALWARE, "a.exe")))
        assert r.disposition == Disposition.TEMPFAIL
    finally:
        server.stop()


def test_query_names() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert query_name(digest.upper()) == f"{digest[:32]}.{digest[32:]}.hash.cymru.com."
    md5 = hashlib.md5(b"x").hexdigest()
    assert query_name(md5, "mhr.example.") == f"{md5}.mhr.example."
    for bad_digest, zone in (("abc", "hash.cymru.com"), (digest, "bad zone"), (digest, "")):
        with pytest.raises(ValueError):
            query_name(bad_digest, zone)


@given(st.integers(0, 10**11), st.integers(0, 100))
def test_txt_answers(epoch: int, pct: int) -> None:
    assert parse_txt([f"{epoch} {pct}".encode()]) == Answer(epoch, pct)
    assert parse_txt([f"{epoch} ".encode(), b"NO_DATA"]) == Answer(epoch, None)


@given(st.lists(st.binary(max_size=30), max_size=3))
def test_any_txt_parses_or_is_a_protocol_error(strings: list[bytes]) -> None:
    try:
        answer = parse_txt(strings)
    except ProtocolError:
        return
    assert answer.detection is None or 0 <= answer.detection <= 100
