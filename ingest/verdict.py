"""From a list of scanner results to one category, action, reason and reply.

AV runs first and ``virus`` outranks every other category, so a known virus is
classed as such even where a policy rule also fired (Qmail-Scanner's rule).
The action is the strongest any scanner asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.event import Action, Category
from scanners.result import Disposition, ScanResult, Verdict

CATEGORY_RANK = {
    Verdict.VIRUS: 6,
    Verdict.POLICY: 5,
    Verdict.MALFORMED: 4,
    Verdict.DLP: 3,
    Verdict.SPAM: 2,
    Verdict.CLEAN: 0,
}
ACTION_RANK = {
    Disposition.REJECT: 6,
    Disposition.QUARANTINE: 5,
    Disposition.TEMPFAIL: 4,
    Disposition.DROP: 3,
    Disposition.DELIVER: 1,
    Disposition.NONE: 0,
}
DEFAULT_REPLY = {
    Action.REJECT: "Dmessage refused by content policy (#5.7.1)",
    Action.TEMPFAIL: "Ztemporarily refused by content policy, try again later (#4.7.1)",
}


@dataclass(frozen=True, slots=True)
class Decision:
    category: Category
    action: Action
    reason: str
    reply: str | None


def decide(results: list[ScanResult]) -> Decision:
    category = Verdict.CLEAN
    reason = "clean"
    for r in results:
        if r.hit and CATEGORY_RANK[r.verdict] > CATEGORY_RANK[category]:
            category = r.verdict
            reason = r.name or r.scanner
    strongest: ScanResult | None = None
    for r in results:
        if ACTION_RANK[r.disposition] > (ACTION_RANK[strongest.disposition] if strongest else 0):
            strongest = r
    if strongest is None or strongest.disposition in (Disposition.NONE, Disposition.DELIVER):
        action = Action.DELIVER
    else:
        action = Action(strongest.disposition.value)
        if category == Verdict.CLEAN:  # e.g. a scanner error asking for a retry
            reason = strongest.name or strongest.scanner
    reply = None
    if action in DEFAULT_REPLY:
        reply = strongest.reply if strongest and strongest.reply else DEFAULT_REPLY[action]
    return Decision(Category(category.value), action, reason, reply)
