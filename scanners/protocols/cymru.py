"""Team Cymru Malware Hash Registry over DNS, sans-I/O: query names and TXT answers.

A lookup is a TXT query for ``<hex digest>.<zone>`` (a SHA-256 digest is 64 characters,
more than a DNS label holds, so it goes as two 32-character labels, as Team Cymru's DNS
API documents); a known hash answers
``"<epoch last seen> <detection percent>"`` (e.g. ``"1221154281 53"``: last seen
then, 53 % of the AV engines Team Cymru runs detect it); an unknown one is NXDOMAIN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanners.protocols import ProtocolError

DEFAULT_ZONE = "hash.cymru.com"
_HEX = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ANSWER = re.compile(r"^\s*(?P<epoch>\d{1,12})\s+(?P<pct>\d{1,3}|NO_DATA)\s*$")


def query_name(digest: str, zone: str = DEFAULT_ZONE) -> str:
    """The absolute name to query (trailing dot: never subject to a search list)."""
    digest = digest.lower()
    if not _HEX.match(digest):
        raise ValueError("an MD5, SHA-1 or SHA-256 hex digest is expected")
    labels = zone.strip(".").split(".")
    if not labels or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not a DNS zone: {zone!r}")
    if len(digest) == 64:
        digest = f"{digest[:32]}.{digest[32:]}"
    return f"{digest}.{'.'.join(labels)}."


@dataclass(frozen=True, slots=True)
class Answer:
    last_seen: int  # epoch seconds
    detection: int | None  # percent of engines detecting it; None when Cymru has no figure


def parse_txt(strings: list[bytes]) -> Answer:
    """One TXT record (its character-strings joined, as RFC 7208 does for SPF)."""
    text = b"".join(strings).decode("ascii", "replace")
    m = _ANSWER.match(text)
    if not m:
        raise ProtocolError(f"unexpected MHR answer: {text[:100]!r}")
    pct = None if m["pct"] == "NO_DATA" else int(m["pct"])
    if pct is not None and pct > 100:
        raise ProtocolError(f"MHR detection rate above 100%: {text[:100]!r}")
    return Answer(int(m["epoch"]), pct)
