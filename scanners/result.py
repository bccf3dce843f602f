"""The one result type every scanner returns (like rspamd's symbols).

Headers, events, log lines and SQL rows are all built from lists of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


# What a message, or one scanner's finding about it, is. The one vocabulary for both: a
# scanner's verdict here, the event's ``category`` in ``ingest.event`` (which imports it). No
# docstring: pydantic would copy it into the event JSON Schema, whose ``Category`` this is.
class Category(StrEnum):
    CLEAN = "clean"
    VIRUS = "virus"
    POLICY = "policy"
    SPAM = "spam"
    DLP = "dlp"
    MALFORMED = "malformed"


Verdict = Category  # the name scanners use for it


class Disposition(StrEnum):
    """What a scanner asks for; the verdict engine takes the strongest request."""

    NONE = "none"  # informational (e.g. spam score below every threshold)
    DELIVER = "deliver"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one scanner found: a fact, never changed once built (``dataclasses.replace`` makes a
    changed copy). The processor records how long the scanner took and its version beside it."""

    scanner: str
    verdict: Verdict = Verdict.CLEAN
    name: str = ""  # signature / rule / check name
    score: float = 0.0
    detail: str = ""
    duration_ms: float = 0.0  # 0: the processor's measurement of the scanner call is recorded
    version: str = ""  # empty: the scanner object's version is recorded
    disposition: Disposition = Disposition.NONE
    reply: str | None = None  # 'D...' or 'Z...' text for reject/tempfail
    error: str | None = None  # the scan did not happen (timeout, refused, protocol): never "clean"
    add_headers: tuple[tuple[str, str], ...] = ()  # added on top, sanitised
    # A rewrite of the raw message (e.g. renaming repeated MIME headers, a subject prefix).
    # Applied in scanner order before qscan's own headers are added; must be total (never raise).
    transform: Callable[[bytes], bytes] | None = None
    # A spam engine's score and the threshold it was held against (spamd, rspamd): the event's
    # spam_score and the diagnostics header's ``SA:1(15.0/5.0)``. None from every other scanner.
    spam_score: float | None = None
    spam_required: float | None = None
    # DLP findings for the event's dlp_findings list (rule, detector, confidence, count, action,
    # location, evidence...): evidence is masked before it gets here, never a full value.
    dlp: tuple[dict[str, Any], ...] = ()

    @property
    def hit(self) -> bool:
        return self.verdict != Verdict.CLEAN
