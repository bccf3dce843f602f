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
    "message": MESSAGE_V2,
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


def normalize(value: Any, code: str) -> Any:
    """``value`` coerced to the field's declared type, as it goes into the JSON."""
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
        if any(row.get(name) is not None for name, _ in MESSAGE_V2_FIELDS):
            version = 2
        else:
            spec = MESSAGE
    out: dict[str, Any] = {"v": version, "kind": kind, "host": host, "seq": seq,
                           "row": _row(row, spec)}
    if kind == "message":
        given = children or {}
        out["children"] = {
            table: [[normalize(child[name], code) for name, code in cspec]
                    for child in given.get(table, ())]
            for table, cspec in CHILDREN.items()
        }
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _row(row: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    out = {}
    for name, code in spec:
        try:
            out[name] = normalize(row[name], code)
        except EncodingError as exc:
            raise EncodingError(f"field {name!r}: {exc}") from None
    return out


def link(prev: str, encoded: bytes) -> str:
    """The chain hash of an entry given the previous entry's chain hash."""
    return hashlib.sha256(prev.encode("ascii") + b"\n" + encoded).hexdigest()
