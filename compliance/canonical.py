"""The canonical encoding of chained rows, and the chain's link function.

A hash is only evidence if anyone can recompute it from the stored row, on any
database, years later. So the encoding is defined here once, versioned, and
independent of the driver: every field is coerced to its declared type
(SQLite gives back ``2.0`` for a REAL written as ``2``; PostgreSQL gives back
aware datetimes in the session's zone, SQLite naive ones), then written as
JSON with sorted keys, no whitespace and UTF-8 text.

Version 1 (frozen; a change means a version 2 beside it, never an edit):

    {"v":1,"kind":K,"host":H,"seq":N,"row":{FIELD:VALUE,...},
     "children":{TABLE:[[VALUE,...],...],...}}

* datetimes: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``;
* floats: shortest round-trip decimal (Python's ``repr``), NaN/∞ refused;
* child rows (recipients, parts, findings, DLP findings of a message) as
  lists of field values in insertion order.

Version 2 (message entries only): version 1 with ``"v":2`` and the message
fields of ``MESSAGE_V2_FIELDS`` added to ``row``. A message row is encoded as
version 2 when any of those fields is set, as version 1 when all are NULL —
the rows written before the columns existed, which so keep verifying exactly
as they were hashed, and the rows of replayed events that predate the fields.
Setting or clearing such a field changes the encoding like any other edit.

Version 3 (message entries written since schema 0009, which records the
version in ``messages.chain_version``): version 2's fields, always all of them,
with ``"v":3``, and one canonical zero: ``-0.0`` is written ``0.0`` (SQLite
stores a REAL ``-0.0`` as the integer 0 and gives back ``0.0``; PostgreSQL keeps
the sign, so a hash over the sign verified on one database and not the other).
Rows without a recorded version are encoded by the rules of versions 1 and 2,
as they were sealed.

Text is hashed as the exact code points stored, without Unicode normalisation:
neither database normalises (tests/test_canonical_roundtrip.py round-trips
composed, decomposed and 8-bit-derived text through both), and a change between
composed and decomposed forms is a change of the evidence that must show.

The link is ``chain_hash(n) = SHA-256(chain_hash(n-1) as hex ‖ "\\n" ‖ encoding(n))``,
starting from 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ingest.event import utc

VERSION = 1
# The version new message rows are sealed with (stored in messages.chain_version).
MESSAGE_VERSION = 3
GENESIS = "0" * 64

# Field name -> type code: t text, i integer, f float, b boolean, d datetime.
Spec = tuple[tuple[str, str], ...]

MESSAGE: Spec = (
    ("event_id", "t"), ("received_at", "d"), ("host", "t"), ("action", "t"), ("category", "t"),
    ("reason", "t"), ("direction", "t"), ("client_ip", "t"), ("client_host", "t"),
    ("relay", "b"), ("auth_user", "t"), ("sender", "t"), ("sender_domain", "t"),
    ("subject", "t"), ("message_id", "t"), ("header_from", "t"), ("header_to", "t"),
    ("header_cc", "t"), ("header_date", "t"), ("size", "i"), ("sha256", "t"),
    ("raw_sha256", "t"), ("attachments", "t"), ("parts_count", "i"),
    ("recipients_count", "i"), ("spam_score", "f"), ("processing_ms", "f"), ("summary", "t"),
)
# Added by version 2 (migration 0008): S/MIME and PGP use.
MESSAGE_V2_FIELDS: Spec = (("crypto", "t"),)
MESSAGE_V2: Spec = (*MESSAGE, *MESSAGE_V2_FIELDS)
# Version 3 has version 2's fields; what changed is the float form (one zero).
MESSAGE_V3: Spec = MESSAGE_V2
RECIPIENT: Spec = (("address", "t"), ("domain", "t"))
PART: Spec = (
    ("path", "t"), ("content_type", "t"), ("detected_type", "t"), ("filename", "t"),
    ("extension", "t"), ("size", "i"), ("sha256", "t"),
)
FINDING: Spec = (
    ("scanner", "t"), ("verdict", "t"), ("name", "t"), ("score", "f"), ("detail", "t"),
    ("duration_ms", "f"),
)
DLP_FINDING: Spec = (
    ("rule", "t"), ("detector", "t"), ("confidence", "t"), ("count", "i"), ("action", "t"),
    ("location", "t"), ("evidence", "t"),
)
QUEUE_FAILURE: Spec = (
    ("event_id", "t"), ("ref_event_id", "t"), ("time", "d"), ("host", "t"), ("exit_code", "i"),
)
DELETION: Spec = (
    ("event_id", "t"), ("ref_event_id", "t"), ("time", "d"), ("host", "t"), ("actor", "t"),
    ("reason", "t"), ("rule", "t"), ("location", "t"), ("raw_sha256", "t"),
    ("message_hash", "t"),
)

# Entry kinds in a host's chain and the spec of their own row (every column read; a message
# row without the version 2 fields is encoded by MESSAGE).
KINDS: dict[str, Spec] = {
    "message": (*MESSAGE_V3, ("chain_version", "i")),
    "queue_failed": QUEUE_FAILURE,
    "deletion": DELETION,
}
# A message's child tables, in the order they appear in its encoding.
CHILDREN: dict[str, Spec] = {
    "recipients": RECIPIENT,
    "parts": PART,
    "findings": FINDING,
    "dlp_findings": DLP_FINDING,
}


class EncodingError(ValueError):
    """A value that has no canonical form (NaN, a wrong type)."""


def utc_text(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize(value: Any, code: str, version: int = MESSAGE_VERSION) -> Any:
    """``value`` coerced to the field's declared type, as it goes into the JSON.

    ``version`` only matters for floats: before version 3 ``-0.0`` kept its sign."""
    if value is None:
        return None
    if code == "t" and type(value) is str:  # the common case first
        return value
    if code == "t":
        if not isinstance(value, str):
            raise EncodingError(f"expected text, got {type(value).__name__}")
        return value
    if code == "i":
        if isinstance(value, bool) or not isinstance(value, int):
            raise EncodingError(f"expected an integer, got {value!r}")
        return value
    if code == "f":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EncodingError(f"expected a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise EncodingError(f"{number} has no canonical form")
        if number == 0.0 and version >= 3:
            return 0.0  # -0.0 too: one zero, whatever the database kept of the sign
        return number
    if code == "b":
        if isinstance(value, int) and value in (0, 1):  # SQLite without type info gives 0/1
            return bool(value)
        raise EncodingError(f"expected a boolean, got {value!r}")
    if code == "d":
        if not isinstance(value, datetime):
            raise EncodingError(f"expected a datetime, got {value!r}")
        return utc_text(value)
    raise EncodingError(f"unknown type code {code!r}")


def encode(kind: str, host: str, seq: int, row: Mapping[str, Any],
           children: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> bytes:
    """The canonical bytes of one chain entry (see the module docstring)."""
    spec = KINDS.get(kind)
    if spec is None:
        raise EncodingError(f"unknown chain entry kind {kind!r}")
    version = VERSION
    if kind == "message":
        version, spec = message_version(row)
    out: dict[str, Any] = {"v": version, "kind": kind, "host": host, "seq": seq,
                           "row": _row(row, spec, version)}
    if kind == "message":
        given = children or {}
        out["children"] = {
            table: [[normalize(child[name], code, version) for name, code in cspec]
                    for child in given.get(table, ())]
            for table, cspec in CHILDREN.items()
        }
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def message_version(row: Mapping[str, Any]) -> tuple[int, Spec]:
    """The encoding version of a message row and the fields it covers.

    ``chain_version`` is recorded from version 3 on; a row without it was sealed as
    version 2 when a version 2 field is set, else as version 1."""
    recorded = row.get("chain_version")
    if recorded is not None:
        if recorded != MESSAGE_VERSION:
            raise EncodingError(f"unknown message encoding version {recorded!r}")
        return MESSAGE_VERSION, MESSAGE_V3
    if any(row.get(name) is not None for name, _ in MESSAGE_V2_FIELDS):
        return 2, MESSAGE_V2
    return 1, MESSAGE


def _row(row: Mapping[str, Any], spec: Spec, version: int) -> dict[str, Any]:
    out = {}
    for name, code in spec:
        try:
            out[name] = normalize(row[name], code, version)
        except EncodingError as exc:
            raise EncodingError(f"field {name!r}: {exc}") from None
    return out


def link(prev: str, encoded: bytes) -> str:
    """The chain hash of an entry given the previous entry's chain hash."""
    return hashlib.sha256(prev.encode("ascii") + b"\n" + encoded).hexdigest()
