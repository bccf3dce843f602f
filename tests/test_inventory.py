"""The one walk over a message's contents (scanners/inventory.py): every item listed once,
with the event's paths and hashes; one budget per message; each container opened once
however many scanners read it."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import zipfile
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from qscan.testing.standin import write_standin
from scanners.base import ScanContext, Scanner
from scanners.dlp.engine import DlpEngine
from scanners.dlp.rules import parse_rules
from scanners.dlp.scanner import DlpScanner
from scanners.internal.policy import InternalSettings
from scanners.internal.scanner import InternalScanner
from scanners.internal.unpack import UnpackLimits
from scanners.inventory import STATS, Plan, build, plan_for
from scanners.mime.parse import parse
from scanners.size import SizeScanner
from tests.internal_corpus import uuencoded

ENV = build_envelope(b"alice@example.com", [b"bob@example.org"])
HEAD = b"From: alice@example.com\nTo: bob@example.org\nSubject: t\nMIME-Version: 1.0\n"
RULES = """
[[rule]]
id = "cards"
detectors = ["payment_card"]
action = "monitor"
"""


# -- a model of a nested message, and what its inventory must list -------------------------------
@dataclass(frozen=True)
class File:
    name: str
    data: bytes


@dataclass(frozen=True)
class Zip:
    name: str
    members: tuple[File | Zip | Eml, ...]


@dataclass(frozen=True)
class Eml:  # mail inside an archive
    name: str
    body: Node


@dataclass(frozen=True)
class Text:  # a body text part, optionally carrying uuencoded files
    text: bytes
    uu: tuple[File, ...] = ()


@dataclass(frozen=True)
class Attached:  # a MIME attachment: a file or an archive
    content: File | Zip


@dataclass(frozen=True)
class Multi:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Rfc822:  # a message/rfc822 part
    inner: Node


Node = Text | Attached | Multi | Rfc822
_names = itertools.count()


def _name(ext: str) -> str:
    return f"f{next(_names)}.{ext}"


# Letters only: nothing in a file may look like a container, an executable or a uu block.
DATA = st.binary(min_size=1, max_size=300).map(lambda b: bytes(97 + x % 26 for x in b))
FILES = st.builds(lambda d: File(_name("dat"), d), DATA)


def _zips(depth: int) -> st.SearchStrategy[Zip]:
    member: st.SearchStrategy[File | Zip | Eml] = FILES
    if depth > 0:
        member = st.one_of(FILES, _zips(depth - 1),
                           st.builds(lambda n: Eml(_name("eml"), n), _nodes(depth - 1)))
    return st.builds(lambda ms: Zip(_name("zip"), tuple(ms)), st.lists(member, min_size=1, max_size=3))


def _nodes(depth: int) -> st.SearchStrategy[Node]:
    text = st.builds(lambda d, uu: Text(d, tuple(uu)), DATA, st.lists(FILES, max_size=2))
    leaf = st.one_of(text, st.builds(Attached, st.one_of(FILES, _zips(min(depth, 2)))))
    if depth <= 0:
        return leaf
    return st.one_of(
        leaf,
        st.builds(lambda cs: Multi(tuple(cs)), st.lists(_nodes(depth - 1), min_size=1, max_size=3)),
        st.builds(Rfc822, _nodes(depth - 1)),
    )


def zip_bytes(z: Zip) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for m in z.members:
            data = m.data if isinstance(m, File) else zip_bytes(m) if isinstance(m, Zip) else mime(m.body)
            zf.writestr(zipfile.ZipInfo(m.name, (2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def entity(node: Node, level: int = 0) -> bytes:
    """Headers and body of one MIME entity (the same bytes every time: a boundary is named
    after its nesting level, which no enclosing multipart shares)."""
    if isinstance(node, Text):
        body = node.text + b"\n" + b"".join(uuencoded(f.name, f.data) for f in node.uu)
        return b"Content-Type: text/plain; charset=us-ascii\n\n" + body
    if isinstance(node, Attached):
        c = node.content
        data = c.data if isinstance(c, File) else zip_bytes(c)
        return (b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
                b'Content-Disposition: attachment; filename="' + c.name.encode() + b'"\n\n'
                + base64.encodebytes(data))
    if isinstance(node, Rfc822):
        return b"Content-Type: message/rfc822\n\n" + HEAD + entity(node.inner, level + 1)
    b = f"b{level}".encode()
    out = b'Content-Type: multipart/mixed; boundary="' + b + b'"\n\n'
    for child in node.children:
        out += b"--" + b + b"\n" + entity(child, level + 1) + b"\n"
    return out + b"--" + b + b"--\n"


def mime(node: Node) -> bytes:
    return HEAD + entity(node)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected(node: Node, path: str = "", prefix: str = "") -> list[tuple[str, str]]:
    """(path, sha256) of every item, as the event numbers parts and names members."""
    if isinstance(node, Multi):
        return [x for i, c in enumerate(node.children, 1)
                for x in expected(c, f"{path}/{i}" if path else str(i), prefix)]
    if isinstance(node, Rfc822):
        return expected(node.inner, f"{path}/1" if path else "1", prefix)
    here = prefix + (path or "1")
    if isinstance(node, Text):
        data = parse(mime(node)).get_payload(decode=True)  # the parser's view of the text
        assert isinstance(data, bytes)
        return [(here, sha(data))] + [(f"{here}!/{f.name}", sha(f.data)) for f in node.uu]
    c = node.content
    if isinstance(c, File):
        return [(here, sha(c.data))]
    return [(here, sha(zip_bytes(c))), *members(c, f"{here}/{c.name}")]


def members(z: Zip, label: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for m in z.members:
        path = f"{label}!/{m.name}"
        if isinstance(m, File):
            out.append((path, sha(m.data)))
        elif isinstance(m, Zip):
            out += [(path, sha(zip_bytes(m))), *members(m, path)]
        else:
            out += [(path, sha(mime(m.body))), *expected(m.body, "", path + "!/")]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nodes(3))
def test_every_item_is_listed_once_with_its_path_and_hash(node: Node) -> None:
    inv = build(parse(mime(node)), Plan(limits=UnpackLimits()))
    assert inv.error is None and inv.hits == () and inv.reached == len(inv.items)
    assert sorted((i.path, i.sha256) for i in inv.items) == sorted(expected(node))
    assert all(i.size == len(i.data) for i in inv.items if i.complete)


def test_items_are_frozen_and_members_say_where_they_came_from() -> None:
    inner = Zip("in.zip", (File("a.dat", b"abc"),))
    node = Multi((Text(b"hello", (File("u.dat", b"xyz"),)), Attached(Zip("out.zip", (inner,)))))
    inv = build(parse(mime(node)), Plan(limits=UnpackLimits()))
    by = {i.path: i for i in inv.items}
    assert [(p, by[p].source, by[p].parent, by[p].depth) for p in by] == [
        ("1", "mime", "", 0),
        ("1!/u.dat", "uuencode", "1", 1),
        ("2", "mime", "", 0),
        ("2/out.zip!/in.zip", "archive", "2/out.zip", 1),
        ("2/out.zip!/in.zip!/a.dat", "archive", "2/out.zip!/in.zip", 2),
    ]
    assert [i.path for i in inv.children("2/out.zip!/in.zip")] == ["2/out.zip!/in.zip!/a.dat"]
    with pytest.raises(FrozenInstanceError):
        by["2"].path = "3"  # type: ignore[misc]
    leaves_only = build(parse(mime(node)))  # no unpacking consumer: the event's parts only
    assert [i.path for i in leaves_only.items] == ["1", "2"]


# -- one walk per message, one budget -------------------------------------------------------------
def _settings(limits: UnpackLimits) -> InternalSettings:
    return InternalSettings(max_depth=limits.max_depth, max_members=limits.max_members,
                            max_total_bytes=limits.max_total_bytes, max_ratio=limits.max_ratio,
                            max_time=limits.max_time)


def _zip_of(n: int, name: str) -> Zip:
    return Zip(name, tuple(File(f"m{i}.txt", b"card 4539 1488 0343 6467 ") for i in range(n)))


@pytest.fixture
def processor(tmp_path: Path):  # type: ignore[no-untyped-def,unused-ignore]
    def make(limits: UnpackLimits) -> tuple[Processor, Journal]:
        journal = Journal(tmp_path / "j.db")
        scanners: list[Scanner] = [SizeScanner(), InternalScanner(_settings(limits)),
                    DlpScanner(DlpEngine(parse_rules(RULES)))]
        opts = ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=write_standin(tmp_path / "qq", tmp_path / "rec")))
        return Processor(opts, journal, scanners), journal
    return make


def _event(journal: Journal) -> MessageScanned:
    [ev] = [e for e in (from_json(x.body, x.raw) for x in journal.read(0, 100)) if isinstance(e, MessageScanned)]
    return ev


def test_a_message_is_walked_and_each_container_opened_once(processor) -> None:  # type: ignore[no-untyped-def,unused-ignore]
    """Internal checks, DLP text and the event's parts from one walk: zip in zip, mail in the
    zip with a zip of its own, uuencode in the body."""
    eml = Eml("fwd.eml", Multi((Text(b"see attached"), Attached(_zip_of(2, "deep.zip")))))
    node = Multi((Text(b"hi", (File("u.dat", b"abc"),)),
                  Attached(Zip("outer.zip", (_zip_of(3, "inner.zip"), eml)))))
    proc, journal = processor(UnpackLimits())
    builds, containers = STATS.builds, STATS.containers
    assert proc.process(make_request(mime(node), ENV)).code == 0
    assert STATS.builds - builds == 1
    assert STATS.containers - containers == 4  # uu block, outer.zip, inner.zip, deep.zip
    ev = _event(journal)
    paths = [p.path for p in ev.parts]
    assert len(paths) == len(set(paths))
    assert "2/outer.zip!/fwd.eml!/2/deep.zip!/m1.txt" in paths and "1!/u.dat" in paths
    assert ev.dlp_findings  # DLP read the members from the same walk
    assert [f.scanner for f in ev.findings if f.name == "cards"] == ["dlp"]


def test_archives_that_together_pass_the_member_limit_are_flagged_once(processor) -> None:  # type: ignore[no-untyped-def,unused-ignore]
    """Two zips of 6 members, a limit of 10: the second zip stops the one walk; the internal
    scanner reports it once, DLP notes it, and nothing is opened again to find out."""
    node = Multi((Text(b"hi"), Attached(_zip_of(6, "a.zip")), Attached(_zip_of(6, "b.zip")),
                  Attached(_zip_of(1, "c.zip"))))
    proc, journal = processor(UnpackLimits(max_members=10))
    containers = STATS.containers
    proc.process(make_request(mime(node), ENV))
    assert STATS.containers - containers == 2  # c.zip is past the stop: not opened by anyone
    ev = _event(journal)
    limit = [f for f in ev.findings if f.name == "unpack-members"]
    assert [(f.scanner, f.detail) for f in limit] == [("internal", "3/b.zip!/m4.txt: more than 10 members")]
    [notes] = [f.detail for f in ev.findings if f.name == "dlp-limits"]
    assert "more than 10 members" in notes
    members = [p.path for p in ev.parts if "!/" in p.path]
    assert len(members) == 10 and "4" in [p.path for p in ev.parts]  # every MIME leaf is listed


def test_scanners_run_alone_build_the_inventory_they_need() -> None:
    raw = mime(Multi((Text(b"hi"), Attached(_zip_of(2, "a.zip")))))

    def context() -> ScanContext:
        return ScanContext(raw=raw, message=parse(raw), parts=[], sender="a@example.com",
                           recipients=["b@example.org"], client_ip=None, relay=False, size=len(raw),
                           max_size=10 << 20)

    internal, dlp = InternalScanner(), DlpScanner(DlpEngine(parse_rules(RULES)))
    ctx = context()
    containers = STATS.containers
    internal.scan(ctx)
    dlp.scan(ctx)  # members it reads were not kept whole for the internal scanner: walked again
    assert STATS.containers - containers == 2
    ctx = context()
    ctx.inventory = build(ctx.message, plan_for([internal, dlp]))  # what the processor does
    containers = STATS.containers
    internal.scan(ctx)
    dlp.scan(ctx)
    assert STATS.containers == containers


def test_the_walk_is_bounded_and_says_so_in_the_defects() -> None:
    many = Multi(tuple(Text(b"x") for _ in range(1001)))
    inv = build(parse(mime(many)), Plan(limits=UnpackLimits()))
    assert [i.path for i in inv.items] == [str(i) for i in range(1, 1001)]
    assert "too-many-parts" in inv.defects
    exactly = Multi(tuple(Text(b"x") for _ in range(1000)))
    assert "too-many-parts" not in build(parse(mime(exactly))).defects
    deep: Node = Text(b"x")
    for _ in range(25):
        deep = Multi((deep,))
    inv = build(parse(mime(deep)))
    assert inv.items == () and "nesting-too-deep" in inv.defects


def test_dlp_alone_unpacks_only_mail_a_rule_applies_to(tmp_path: Path) -> None:
    """Without the internal scanner nobody else needs the members: inbound mail under an
    outbound-only policy is not unpacked at all, outbound mail once."""
    rules = RULES.replace('action = "monitor"', 'direction = "outbound"\naction = "monitor"')
    journal = Journal(tmp_path / "j.db")
    opts = ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=write_standin(tmp_path / "qq", tmp_path / "rec")),
                            local_domains=("example.org",))
    proc = Processor(opts, journal, [SizeScanner(), DlpScanner(DlpEngine(parse_rules(rules)))])
    raw = mime(Multi((Text(b"hi"), Attached(_zip_of(2, "a.zip")))))
    containers = STATS.containers
    proc.process(make_request(raw, ENV))
    assert STATS.containers == containers
    proc.process(make_request(raw, ENV, {"RELAYCLIENT": ""}))
    assert STATS.containers - containers == 1
