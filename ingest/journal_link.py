"""The journal's own hash chain: how one event's link is computed, and how it travels.

Every event the journal appends carries ``prev`` (the previous event's link, or
:data:`GENESIS` where the chain starts) and ``chain``::

    chain = SHA-256( "qscan-journal-1" NUL prev NUL seq NUL appended NUL event_id NUL type NUL
                     SHA-256(body) raw-flag [SHA-256(raw)] )

with ``seq`` in decimal, ``appended`` as the 8 bytes of its IEEE 754 double
(big-endian), ``raw-flag`` ``b"R"`` when a raw message is stored and ``b"-"``
when not. Digests of the body and the raw message rather than the bytes
themselves keep the encoding unambiguous without length prefixes, and let a
reader in another language recompute a link from the fields alone.

The chain is per journal, so per host. Relayed to Kafka, each record carries
its link in the ``journal_link`` header (:func:`link_header`) and the journal's
body bytes unchanged in the value (``ingest.kafka_log.serialize``), so a
consumer host can walk every host's chain from the topic alone
(``compliance.journal_chain``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

GENESIS = "0" * 64
_TAG = b"qscan-journal-1\0"
HEADER = "journal_link"


def link(prev: str, seq: int, appended: float, event_id: str, event_type: str, body: bytes,
         raw: bytes | None, raw_sha256: str | None = None) -> str:
    """The chain hash of one event (hex). ``raw_sha256``: the raw message's SHA-256 (hex)
    when the caller has it already (the daemon does), so a big message is not hashed twice."""
    h = hashlib.sha256(_TAG)
    h.update(b"%s\0%d\0" % (prev.encode("ascii"), seq))
    h.update(struct.pack(">d", appended))
    h.update(b"\0%s\0%s\0" % (event_id.encode("utf-8"), event_type.encode("utf-8")))
    h.update(hashlib.sha256(body).digest())
    if raw is None:
        h.update(b"-")
    else:
        h.update(b"R")
        h.update(bytes.fromhex(raw_sha256) if raw_sha256 else hashlib.sha256(raw).digest())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """What a relayed record says about its place in its host's journal chain."""

    seq: int
    appended: float
    prev: str
    chain: str
    raw: bool  # the value carries a raw message spliced onto the body

    def header(self) -> bytes:
        return json.dumps({"seq": self.seq, "appended": self.appended, "prev": self.prev,
                           "chain": self.chain, "raw": self.raw},
                          separators=(",", ":")).encode("ascii")

    @classmethod
    def parse(cls, data: bytes) -> Link:
        """ValueError when the header is not a link."""
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("journal_link is not an object")
        seq, appended, prev, chain, raw = (obj.get(k) for k in
                                           ("seq", "appended", "prev", "chain", "raw"))
        if not (isinstance(seq, int) and isinstance(appended, (int, float))
                and isinstance(prev, str) and isinstance(chain, str) and isinstance(raw, bool)):
            raise ValueError("journal_link lacks seq, appended, prev, chain or raw")
        return cls(seq, float(appended), prev, chain, raw)


RAW_KEY = b',"raw_message":"'


def splice_raw(body: bytes, raw_b64: bytes) -> bytes:
    """The body (a non-empty JSON object) with ``raw_message`` added as its last member,
    the body's own bytes kept."""
    return body.rstrip()[:-1] + RAW_KEY + raw_b64 + b'"}'


def unsplice_raw(value: bytes) -> tuple[bytes, bytes]:
    """(body, raw base64) back from :func:`splice_raw`'s output; ValueError if it is not one."""
    at = value.rfind(RAW_KEY)
    if at < 0 or not value.endswith(b'"}'):
        raise ValueError("no raw_message spliced onto this value")
    return value[:at] + b"}", value[at + len(RAW_KEY):-2]
