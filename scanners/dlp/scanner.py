"""The inline DLP scanner: the rule engine in the daemon, turned into ScanResults.

One result per fired rule, carrying the rule's masked findings for the event's
``dlp_findings``:

* ``quarantine`` / ``reject`` - verdict ``dlp`` and that disposition (the message
  goes to the ``dlp/`` quarantine, or is refused with the rule's reply text);
* ``monitor`` / ``notify`` - recorded only. The result stays informational
  (verdict clean, no disposition), so the message, its category and the
  diagnostics header are exactly what they would have been: a recipient cannot
  tell that outgoing mail was flagged. ``notify`` marks the finding for the
  compliance officer (``"notify": true``), which the notification consumer reads;
* encrypted mail a rule lets through (``allow_encrypted``) - recorded as ``allow``.

Limits reached while extracting text are recorded as one informational
``dlp-limits`` result. The scanner never raises: an internal error becomes a
``dlp-error`` result with the configured action (default quarantine: data is
not let out unexamined).
"""

from __future__ import annotations

import logging
import typing

from scanners.base import ScanContext
from scanners.dlp.engine import DlpEngine, Evaluation, MessageFacts
from scanners.dlp.extract import keep_whole
from scanners.dlp.rules import DlpErrorAction, DlpSettings
from scanners.result import Disposition, ScanResult, Verdict

log = logging.getLogger(__name__)

_DISPOSITION = {"quarantine": Disposition.QUARANTINE, "reject": Disposition.REJECT}
ERROR_ACTIONS = typing.get_args(DlpErrorAction)
_DEFAULTS = DlpSettings()  # [dlp]


def results_for(ev: Evaluation, name: str = "dlp", version: str = "1") -> list[ScanResult]:
    """The ScanResults of one evaluation (also what `qscan dlp test` prints)."""
    out: list[ScanResult] = []
    for hit in ev.hits:
        enforce = hit.action in _DISPOSITION
        out.append(ScanResult(
            scanner=name, version=version, verdict=Verdict.DLP if enforce else Verdict.CLEAN,
            name=hit.rule.id, detail=hit.describe(), score=float(hit.count),
            disposition=_DISPOSITION.get(hit.action, Disposition.NONE),
            reply=hit.rule.reply_text() if hit.action == "reject" else None,
            dlp=tuple(hit.records()),
        ))
    entry = ev.encrypted_record_entry()
    if ev.encrypted_action is not None:
        action = ev.encrypted_action
        enforce = action in _DISPOSITION
        out.append(ScanResult(
            scanner=name, version=version, verdict=Verdict.DLP if enforce else Verdict.CLEAN,
            name="encrypted-mail", detail=f"encrypted content ({', '.join(ev.encrypted[:5])}): {action}",
            disposition=_DISPOSITION.get(action, Disposition.NONE),
            reply="Dencrypted mail cannot be inspected and is not accepted (#5.7.1)"
            if action == "reject" else None,
            dlp=(entry,) if entry is not None else (),
        ))
    limits = [n for n in ev.notes if n.startswith("limit:")]
    if limits:
        out.append(ScanResult(scanner=name, version=version, name="dlp-limits",
                              detail="; ".join(limits)[:900]))
    return out


class DlpScanner:
    name = "dlp"
    version = "1"
    # What DLP reads of archive members, kept whole by the message's one walk (inventory.plan_for).
    # It declares no unpack limits of its own: with the internal scanner the walk is that
    # scanner's, and DLP charges its own limits as it reads; alone, the message is unpacked
    # only when one of its rules applies.
    keep_whole = staticmethod(keep_whole)

    def __init__(self, engine: DlpEngine, error_action: str = _DEFAULTS.error_action) -> None:
        if error_action not in ERROR_ACTIONS:
            raise ValueError(f"error_action must be one of {', '.join(ERROR_ACTIONS)}")
        self.engine = engine
        self.error_action = error_action

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        try:
            facts = MessageFacts(ctx.sender, ctx.recipients, ctx.leaves_site)
            ev = self.engine.evaluate(ctx.message, facts, ctx.parts, ctx.contents)
            return results_for(ev, self.name, self.version)
        except Exception as exc:  # never out of the daemon; never a full value in the log
            log.error("dlp scanner failed: %s", type(exc).__name__)
            return [self._error(type(exc).__name__)]

    def _error(self, why: str) -> ScanResult:
        action = self.error_action
        disposition = {"quarantine": Disposition.QUARANTINE, "reject": Disposition.REJECT,
                       "tempfail": Disposition.TEMPFAIL, "deliver": Disposition.NONE}[action]
        reply = {"reject": "Dmessage could not be inspected (#5.7.1)",
                 "tempfail": "Zmessage could not be inspected, try again later (#4.3.0)"}.get(action)
        return ScanResult(
            scanner=self.name, version=self.version,
            verdict=Verdict.DLP if action in ("quarantine", "reject") else Verdict.CLEAN,
            name="dlp-error", detail=f"internal error: {why}", disposition=disposition, reply=reply,
            error=f"internal error: {why}",
        )
