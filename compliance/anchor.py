"""Chain heads written outside the database (anchors), and checking the chains against them.

An anchor records, at one moment, the head of every hash chain qscan keeps:
the SQL summary chain of each journal host (``compliance.chain``: the
``chain_heads`` table) and the local journal's own chain
(``ingest.journal_link``). It is written where someone who can rewrite the
database cannot reach (``qscan.ops.anchors`` decides when and where: the
summary log/syslog, the journal and so the Kafka topic, a witness file), and
optionally signed with an Ed25519 key that lives on the anchoring host only.

A chain recomputed after an anchor no longer passes through the anchored
``(seq, hash)``. To name the *first* entry that differs, not only the anchor
position, each anchor written to the witness file and the journal also carries
a **trail**: the first 12 hex digits of the hash of every entry since the
previous anchor. The trail is not signed (it only localises; the signed heads
prove), and the one-line syslog form leaves it out.

Format: one JSON object, ``{"v": 1, "time", "writer", "sql": {HOST: {"seq",
"hash"}}, "journal": {HOST: {"seq", "hash", "start"}}}``; a signature adds
``sig`` (base64 Ed25519 over the object's canonical JSON: sorted keys, no
spaces, without ``sig``, ``key`` and ``trail``) and ``key`` (the first 16 hex
digits of the public key's SHA-256). ``qscan verify --save-anchor``'s older
``{"heads": {HOST: {"seq", "hash"}}}`` is read as an anchor of SQL heads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from compliance.models import ChainHead, Deletion, Message, QueueFailure
from ingest.journal import Journal

VERSION = 1
TRAIL_DIGITS = 12
TRAIL_MAX = 20000  # entries per chain per anchor; beyond, that chain's trail is left out
LINE_PREFIX = "anchor "  # the summary log line: "anchor {...}"
_SIGNED_OUT = ("sig", "key", "trail")
_TABLES: dict[str, Any] = {"messages": Message, "queue_failures": QueueFailure,
                           "deletions": Deletion}


class AnchorError(ValueError):
    """An anchor (or key) that cannot be read."""


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if k not in _SIGNED_OUT}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- keys ---------------------------------------------------------------------------
def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_keys(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (PEM; the private file 0600); returns the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key()
    for path, data, mode in ((private_path, pem, 0o600), (public_path, pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return key_id(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class Signer:
    def __init__(self, private_path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AnchorError(f"anchor signing key {private_path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AnchorError(f"anchor signing key {private_path}: not an Ed25519 key")
        self._key = key
        self.key_id = key_id(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw))

    def sign(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {**doc, "sig": base64.b64encode(self._key.sign(canonical(doc))).decode("ascii"),
                "key": self.key_id}


class VerifyKey:
    def __init__(self, public_path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(public_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise AnchorError(f"anchor public key {public_path}: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise AnchorError(f"anchor public key {public_path}: not an Ed25519 key")
        self._key = key
        self.key_id = key_id(key.public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw))

    def valid(self, doc: Mapping[str, Any]) -> bool:
        from cryptography.exceptions import InvalidSignature

        sig = doc.get("sig")
        if not isinstance(sig, str):
            return False
        try:
            self._key.verify(base64.b64decode(sig, validate=True), canonical(doc))
        except (InvalidSignature, ValueError):
            return False
        return True


# -- taking an anchor ---------------------------------------------------------------
def _sql_stream(conn: Connection, host: str, after: int,
                limit: int) -> list[tuple[int, str, str, str | None]]:
    """(seq, table, event id, chain hash) of a host's chain entries after ``after``."""
    out: list[tuple[int, str, str, str | None]] = []
    for table, m in _TABLES.items():
        stmt = (select(m.chain_seq, m.event_id, m.chain_hash)
                .where(m.host == host, m.chain_seq > after)
                .order_by(m.chain_seq).limit(limit))
        out.extend((int(s), table, e, h) for s, e, h in conn.execute(stmt))
    out.sort()
    return out[:limit]


def sql_heads(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {h: {"seq": int(s), "hash": str(d)}
                for h, s, d in conn.execute(select(ChainHead.host, ChainHead.seq, ChainHead.hash))}


def journal_head(journal: Journal) -> dict[str, Any] | None:
    """The journal's head link ``{"seq", "hash", "start"}``, or None before its chain exists."""
    start = journal.meta("chain_start")
    if start is None:
        return None
    seq = journal.head()
    got = journal.read(seq - 1, 1, with_raw=False) if seq else []
    if got and got[0].chain is not None:
        digest = got[0].chain
    else:  # nothing chained yet, or pruned empty
        pruned = journal.meta("chain_pruned")
        digest = pruned.split()[1] if pruned and int(pruned.split()[0]) == seq else "0" * 64
    return {"seq": seq, "hash": digest, "start": int(start)}


def take(*, writer: str, engine: Engine | None, journal: Journal | None,
         journal_host: str, now: datetime | None = None) -> dict[str, Any]:
    """The current heads, unsigned, without a trail."""
    doc: dict[str, Any] = {"v": VERSION, "time": (now or datetime.now(UTC)).isoformat(
        timespec="seconds").replace("+00:00", "Z"), "writer": writer, "sql": {}, "journal": {}}
    if engine is not None:
        doc["sql"] = sql_heads(engine)
    if journal is not None:
        head = journal_head(journal)
        if head is not None:
            doc["journal"] = {journal_host: head}
    return doc


def trail(doc: Mapping[str, Any], previous: Mapping[str, Any] | None, *,
          engine: Engine | None, journal: Journal | None) -> dict[str, Any]:
    """Short hashes of every entry after ``previous``'s heads up to ``doc``'s (per chain).

    ``{"sql": {HOST: {"from": SEQ, "h": [...]}}, "journal": {...}}``; a chain without a
    previous head starts at its first entry, one with more than TRAIL_MAX new entries is
    left out (its head is still anchored)."""
    out: dict[str, Any] = {"sql": {}, "journal": {}}
    prev_sql = (previous or {}).get("sql", {})
    if engine is not None:
        with engine.connect() as conn:
            for host, head in doc["sql"].items():
                after = int(prev_sql.get(host, {}).get("seq", 0))
                if head["seq"] - after > TRAIL_MAX or head["seq"] <= after:
                    continue
                rows = _sql_stream(conn, host, after, head["seq"] - after)
                out["sql"][host] = {"from": after + 1,
                                    "h": [(h or "")[:TRAIL_DIGITS] for _, _, _, h in rows]}
    prev_j = (previous or {}).get("journal", {})
    if journal is not None:
        for host, head in doc["journal"].items():
            after = max(int(prev_j.get(host, {}).get("seq", 0)), head["start"] - 1,
                        journal.oldest() - 1)
            if head["seq"] - after > TRAIL_MAX or head["seq"] <= after:
                continue
            hashes: list[str] = []
            seq = after
            while seq < head["seq"]:
                got = journal.read(seq, min(1000, head["seq"] - seq), with_raw=False)
                if not got:
                    break
                hashes.extend((e.chain or "")[:TRAIL_DIGITS] for e in got)
                seq = got[-1].seq
            out["journal"][host] = {"from": after + 1, "h": hashes}
    return out


def witness_append(path: Path, record: Mapping[str, Any]) -> None:
    """One JSON line, appended and fsynced (``chattr +a`` the file to make it append-only)."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def summary_line(record: Mapping[str, Any]) -> str:
    """The anchor as one summary-log line (heads and signature, no trail)."""
    return LINE_PREFIX + json.dumps({k: v for k, v in record.items() if k != "trail"},
                                    sort_keys=True, separators=(",", ":"))


# -- reading anchors ----------------------------------------------------------------
@dataclass
class Anchor:
    source: str  # where it was read: "witness FILE:LINE", "journal #SEQ", "--anchor FILE"
    doc: dict[str, Any]

    @property
    def time(self) -> str:
        return str(self.doc.get("time", "?"))


def parse_record(obj: Any, source: str) -> Anchor:
    if not isinstance(obj, dict):
        raise AnchorError(f"{source}: not an anchor")
    if "heads" in obj and "v" not in obj:  # `qscan verify --save-anchor`
        obj = {"v": VERSION, "time": obj.get("time", "?"), "writer": "?",
               "sql": obj["heads"], "journal": {}}
    for part in ("sql", "journal"):
        heads = obj.get(part, {})
        if not isinstance(heads, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("seq"), int)
                and isinstance(v.get("hash"), str) for v in heads.values()):
            raise AnchorError(f"{source}: not an anchor (expected {{{part!r}: {{HOST: "
                              "{\"seq\", \"hash\"}}}})")
    return Anchor(source, obj)


def read_file(path: Path) -> list[Anchor]:
    """A witness file (JSON lines), a summary log's anchor lines, or one JSON document."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as exc:
        raise AnchorError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return [parse_record(json.loads(text), str(path))]
    except json.JSONDecodeError:
        pass
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        at = line.find(LINE_PREFIX + "{")
        body = line[at + len(LINE_PREFIX):] if at >= 0 else line
        if not body.strip().startswith("{"):
            continue
        try:
            out.append(parse_record(json.loads(body), f"{path}:{n}"))
        except (json.JSONDecodeError, AnchorError) as exc:
            raise AnchorError(f"{path}:{n}: not an anchor line ({exc})") from exc
    return out


def from_events(records: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Anchor]:
    """Anchors kept as ``chain.anchored`` events: (journal seq, the event's record)."""
    return [parse_record(dict(rec), f"journal #{seq}") for seq, rec in records]


# -- checking -----------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorFinding:
    """In ``compliance.verify.Problem``'s fields."""

    kind: str
    where: str
    event_id: str | None
    detail: str


@dataclass
class AnchorCheck:
    findings: list[AnchorFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0


def _trails(anchors: Sequence[Anchor], part: str, host: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for a in anchors:
        t = (a.doc.get("trail") or {}).get(part, {}).get(host)
        if isinstance(t, dict) and isinstance(t.get("from"), int) and isinstance(t.get("h"), list):
            for i, h in enumerate(t["h"]):
                if isinstance(h, str) and h:
                    out.setdefault(t["from"] + i, h)
    return out


@dataclass(frozen=True)
class JournalState:
    """One host's journal chain as walked now, for comparing with its anchors."""

    links: Mapping[int, str]  # seq -> chain of every kept chained event
    floor: int = 0  # the prune point: events up to it are gone lawfully
    events: Mapping[int, str] = field(default_factory=dict)  # seq -> event id


def check(anchors: Sequence[Anchor], *, engine: Engine | None,
          journals: Mapping[str, JournalState] | None = None,
          key: VerifyKey | None = None) -> AnchorCheck:
    """Every chain must still pass through every anchored head.

    With ``key`` every anchor must carry its valid signature (else it is reported and not
    used)."""
    result = AnchorCheck()
    usable: list[Anchor] = []
    for a in anchors:
        if key is not None and not key.valid(a.doc):
            result.findings.append(AnchorFinding(
                "anchor", a.source, None, "the anchor is not signed by the configured key "
                "(forged or altered anchor): not used"))
            continue
        usable.append(a)
    if key is None and usable:
        result.notes.append(f"{len(usable)} anchors used without checking signatures (no "
                            "anchor public key given)")
    result.checked = len(usable)
    if engine is not None:
        with engine.connect() as conn:
            for host in sorted({h for a in usable for h in a.doc.get("sql", {})}):
                _check_sql_host(conn, host, usable, result)
    for host, state in (journals or {}).items():
        _check_journal_host(host, state.links, state.floor, state.events, usable, result)
    return result


def _points(anchors: Sequence[Anchor], part: str, host: str) -> list[tuple[int, str, Anchor]]:
    pts = [(int(a.doc[part][host]["seq"]), str(a.doc[part][host]["hash"]), a)
           for a in anchors if host in a.doc.get(part, {})]
    return sorted((p for p in pts if p[0] > 0), key=lambda p: p[0])


def _check_sql_host(conn: Connection, host: str, anchors: Sequence[Anchor],
                    result: AnchorCheck) -> None:
    points = _points(anchors, "sql", host)
    if not points:
        return
    current: dict[int, tuple[str, str, str | None]] = {}
    bad: list[tuple[int, str, Anchor]] = []
    for seq, digest, a in points:
        if seq not in current:
            for s, table, event_id, h in _sql_stream(conn, host, seq - 1, 1):
                current[s] = (table, event_id, h)
        have = current.get(seq)
        if have is None or have[2] != digest:
            bad.append((seq, digest, a))
    if not bad:
        return
    first_bad = bad[0][0]
    good = [p[0] for p in points if p[0] < first_bad and p not in bad]
    low = max(good) + 1 if good else 1
    trail = _trails(anchors, "sql", host)
    named = None
    after = low - 1
    while named is None and after < first_bad:
        rows = _sql_stream(conn, host, after, 1000)
        if not rows:
            break
        for s, table, event_id, h in rows:
            if s > first_bad:
                break
            want = trail.get(s)
            if want is not None and (h or "")[:len(want)] != want:
                named = (s, table, event_id)
                break
        after = rows[-1][0]
    seq, _, a = bad[0]
    if named is not None:
        s, table, event_id = named
        result.findings.append(AnchorFinding(
            "altered-row", f"{table} {host}#{s}", event_id,
            f"differs from the anchored state (anchor of {a.time}, {a.source}): the chain "
            "was recomputed from this entry on"))
    elif seq not in current:
        result.findings.append(AnchorFinding(
            "deleted-row", f"{host}#{seq}", None,
            f"the entry anchored at #{seq} ({a.time}, {a.source}) is gone"))
    else:
        table, event_id, _ = current[seq]
        result.findings.append(AnchorFinding(
            "altered-row", f"{table} {host}#{low}-#{seq}", None,
            f"the chain no longer passes through the hash anchored at #{seq} ({a.time}, "
            f"{a.source}): an entry from #{low} to #{seq} was altered and the chain "
            "recomputed (no trail to name which)"))


def _check_journal_host(host: str, links: Mapping[int, str], floor: int,
                        events: Mapping[int, str], anchors: Sequence[Anchor],
                        result: AnchorCheck) -> None:
    points = _points(anchors, "journal", host)
    gone = [p for p in points if p[0] <= floor]
    if gone:
        result.notes.append(f"journal {host}: {len(gone)} anchored heads lie at or before the "
                            f"prune point #{floor}: compared with what is kept only")
    bad = [p for p in points if p[0] > floor and links.get(p[0]) != p[1]]
    if not bad:
        return
    seq, _, a = bad[0]
    trail = _trails(anchors, "journal", host)
    for s in sorted(trail):
        if s > seq:
            break
        if s in links and links[s][:len(trail[s])] != trail[s]:
            result.findings.append(AnchorFinding(
                "altered-event", f"journal {host}#{s}", events.get(s),
                f"differs from the anchored state (anchor of {a.time}, {a.source}): the "
                "journal chain was recomputed from this event on"))
            return
    if seq not in links:
        result.findings.append(AnchorFinding(
            "deleted-event", f"journal {host}#{seq}", None,
            f"the event anchored at #{seq} ({a.time}, {a.source}) is gone"))
    else:
        result.findings.append(AnchorFinding(
            "altered-event", f"journal {host}#{seq}", events.get(seq),
            f"the journal chain no longer passes through the hash anchored here ({a.time}, "
            f"{a.source}): it was recomputed (no trail to name the first changed event)"))


def last_record(path: Path) -> dict[str, Any] | None:
    """The newest anchor in a witness file (its last line), or None."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * 1024 * 1024))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "v" in obj:
            return obj
    return None


def iter_sources(witness: Path | None, extra: Iterable[Path]) -> Iterator[Anchor]:
    if witness is not None and witness.exists():
        yield from read_file(witness)
    for path in extra:
        yield from read_file(path)


def seqs_of_interest(anchors: Sequence[Anchor], part: str, host: str) -> set[int]:
    """The seqs an anchor check compares for one chain: anchored heads and trail entries."""
    out = {int(a.doc[part][host]["seq"]) for a in anchors if host in a.doc.get(part, {})}
    out.update(_trails(anchors, part, host))
    return out
