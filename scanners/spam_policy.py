"""From a spam score to what happens to the mail: tag, subject prefix, quarantine, reject, drop.

spamd and rspamd report a score and their own opinion (spamd's required score,
rspamd's action); the site's thresholds turn that into one ScanResult. Each
threshold is optional; when several are reached the highest one wins, so
``quarantine_score = 8`` with ``drop_score = 20`` keeps borderline spam for review
and silently discards the obvious. The X-Spam-* headers follow SpamAssassin's
format; any the sender put in are removed so downstream filters cannot be fooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from scanners.result import Disposition, ScanResult, Verdict
from scanners.rewrite import rewrite_headers
from scanners.settings import SECTION, Check, setting

SPAM_HEADERS = frozenset({"X-Spam-Status", "X-Spam-Level", "X-Spam-Score", "X-Spam-Flag"})
MAX_TESTS_CHARS = 600
REJECT_REPLY = "Dmessage refused as spam (#5.7.1)"
_RANK = {  # the verdict engine's order (ingest/verdict.py): reject > quarantine > tempfail > drop
    Disposition.REJECT: 6, Disposition.QUARANTINE: 5, Disposition.TEMPFAIL: 4,
    Disposition.DROP: 3, Disposition.DELIVER: 1, Disposition.NONE: 0,
}


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text (no control characters)")
    return value


@dataclass(frozen=True, slots=True)
class SpamPolicy:
    """The site's spam thresholds, shared by [spamd] and [rspamd] (their settings extend this);
    every threshold is optional and the highest reached wins."""

    __pydantic_config__ = SECTION
    required_score: float | None = setting(
        None, "spam from this score; unset: the engine decides", example=5.0)
    tag_score: float | None = setting(None, "X-Spam-* headers from this score; unset: always", example=-100.0)
    subject_prefix: Annotated[str, Check(_printable)] = setting(
        "", "e.g. '[SPAM]'; empty: subject untouched", max_length=40)
    subject_score: float | None = setting(None, "prefix from this score; unset: what is spam", example=5.0)
    quarantine_score: float | None = setting(None, "quarantine into spam/ from this score", example=8.0)
    reject_score: float | None = setting(None, "reject permanently from this score", example=15.0)
    drop_score: float | None = setting(None, "accept and silently delete from this score", example=25.0)


@dataclass(frozen=True, slots=True)
class SpamScore:
    """What the engine said, engine-neutral."""

    score: float
    required: float  # the engine's threshold, shown as "required=" when no site one is set
    spam: bool  # the engine's own opinion
    rules: tuple[str, ...] = ()
    forced: Disposition = Disposition.NONE  # an engine action the site follows (rspamd)


def _threshold_disposition(score: float, policy: SpamPolicy) -> Disposition:
    reached = [
        (threshold, disposition)
        for threshold, disposition in (
            (policy.quarantine_score, Disposition.QUARANTINE),
            (policy.reject_score, Disposition.REJECT),
            (policy.drop_score, Disposition.DROP),
        )
        if threshold is not None and score >= threshold
    ]
    return max(reached, key=lambda t: t[0])[1] if reached else Disposition.NONE


def _tests(rules: tuple[str, ...]) -> str:
    out: list[str] = []
    used = 0
    for rule in rules:
        if used + len(rule) + 1 > MAX_TESTS_CHARS:
            out.append("...")
            break
        out.append(rule)
        used += len(rule) + 1
    return ",".join(out) or "none"


def spam_result(scanner: str, version: str, result: SpamScore, policy: SpamPolicy,
                detail_prefix: str = "") -> ScanResult:
    """``detail_prefix``: what the engine adds in front of the score in ``detail`` (rspamd's
    action)."""
    required = policy.required_score if policy.required_score is not None else result.required
    is_spam = result.score >= required if policy.required_score is not None else result.spam
    disposition = _threshold_disposition(result.score, policy)
    if _RANK[result.forced] > _RANK[disposition]:
        disposition = result.forced
    if disposition in (Disposition.QUARANTINE, Disposition.REJECT, Disposition.DROP):
        is_spam = True  # whatever removes it from the inbox classes it as spam (spam/ maildir)
    score_text, required_text = f"{result.score:.1f}", f"{required:.1f}"
    tests = _tests(result.rules)
    headers: tuple[tuple[str, str], ...] = ()
    if policy.tag_score is None or result.score >= policy.tag_score:
        headers = (
            ("X-Spam-Status", f"{'Yes' if is_spam else 'No'}, score={score_text} "
                              f"required={required_text} tests={tests}"),
            ("X-Spam-Level", "*" * max(0, min(int(result.score), 50))),
            ("X-Spam-Score", score_text),
        )
        if is_spam:
            headers += (("X-Spam-Flag", "YES"),)
    prefix = ""
    if policy.subject_prefix:
        wants = result.score >= policy.subject_score if policy.subject_score is not None else is_spam
        prefix = policy.subject_prefix if wants else ""
    transform = None
    if headers or prefix:
        drop = SPAM_HEADERS if headers else frozenset()

        def transform(raw: bytes, drop: frozenset[str] = drop, prefix: str = prefix) -> bytes:
            return rewrite_headers(raw, drop, prefix)

    reply = None
    if disposition == Disposition.REJECT:
        reply = REJECT_REPLY
    elif disposition == Disposition.TEMPFAIL:
        reply = "Zmessage deferred by the spam filter, try again later (#4.7.1)"
    return ScanResult(
        scanner=scanner,
        version=version,
        verdict=Verdict.SPAM if is_spam else Verdict.CLEAN,
        name="spam" if is_spam else "",
        score=result.score,
        detail=f"{detail_prefix}score={score_text} required={required_text} tests={tests}",
        disposition=disposition,
        reply=reply,
        add_headers=headers,
        transform=transform,
        spam_score=result.score,
        spam_required=required,
    )


def skipped(scanner: str, version: str, why: str) -> ScanResult:
    """Spam scanning deliberately not done (relay client, size): recorded, not an error."""
    return ScanResult(scanner=scanner, version=version, name="skipped", detail=why)
