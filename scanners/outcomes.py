"""The ScanResults every external scanner builds the same way.

A scan that did not happen (timeout, refused connection, protocol error) is never
reported as clean: its result carries ``error`` and, per scanner, either asks for a
temporary failure (the default for antivirus: the sender retries and nothing
unscanned slips through) or lets the mail pass with the error on record (the
default for spam and hash lookups, where an outage must not stop mail).
"""

from __future__ import annotations

from typing import Literal

from scanners.result import Disposition, ScanResult, Verdict

FailurePolicy = Literal["tempfail", "pass"]
VirusAction = Literal["quarantine", "reject", "drop"]

TEMPFAIL_REPLY = "Zvirus scanner unavailable, try again later (#4.3.0)"
SPAM_TEMPFAIL_REPLY = "Zspam scanner unavailable, try again later (#4.3.0)"
VIRUS_REPLY = "Dmessage contains a virus ({name}) (#5.7.1)"
_DISPOSITION = {"quarantine": Disposition.QUARANTINE, "reject": Disposition.REJECT, "drop": Disposition.DROP}


def failed(
    scanner: str, version: str, error: str, policy: FailurePolicy, reply: str = TEMPFAIL_REPLY,
    name: str = "scan-failed",
) -> ScanResult:
    """The scan did not happen; ``policy`` decides whether the message waits for it."""
    tempfail = policy == "tempfail"
    return ScanResult(
        scanner=scanner,
        version=version,
        name=name,
        detail=error,
        error=error,
        disposition=Disposition.TEMPFAIL if tempfail else Disposition.NONE,
        reply=reply if tempfail else None,
    )


def virus(scanner: str, version: str, signature: str, where: str, action: VirusAction) -> ScanResult:
    """A detection; the reply names the signature (it comes from the scanner, never the mail)."""
    clean_name = "".join(ch for ch in signature if ch.isprintable())[:100] or "unknown"
    return ScanResult(
        scanner=scanner,
        version=version,
        verdict=Verdict.VIRUS,
        name=clean_name,
        detail=where,
        disposition=_DISPOSITION[action],
        reply=VIRUS_REPLY.format(name=clean_name) if action == "reject" else None,
    )


def scanned(scanner: str, version: str, detail: str) -> ScanResult:
    """A scan that happened and found nothing: recorded so the event says what ran."""
    return ScanResult(scanner=scanner, version=version, detail=detail)
