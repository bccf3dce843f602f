"""Who hears of DLP findings: the compliance officer when a rule says notify, quarantine or reject,
never for monitor-only findings (compliance/notify/audience.py)."""

from __future__ import annotations

from compliance.notify.audience import Audience, NotifyPolicy, officer_wanted, plan
from compliance.notify.marks import MailMarks
from ingest.event import Action, Category
from tests.factories import make_event

POLICY = NotifyPolicy(compliance_officer="dpo@example.net", admin="qadmin@example.net",
                      local_domains=("example.org",))


def finding(action: str, notify: bool) -> dict[str, object]:
    return {"rule": f"r-{action}", "detector": "payment_card", "confidence": "high", "count": 1,
            "action": action, "location": "1", "evidence": "4111 **** **** 1111", "notify": notify}


def who(event) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {n.address: n.audience.value for n in plan(event, MailMarks(), POLICY).notices}


def test_monitor_only_is_recorded_not_told() -> None:
    ev = make_event(dlp_findings=[finding("monitor", False)])
    assert not officer_wanted(ev) and who(ev) == {}
    skipped = dict(plan(ev, MailMarks(), POLICY).skipped)
    assert "monitor-only" in skipped["dpo@example.net"]


def test_notify_finding_tells_only_the_officer() -> None:
    ev = make_event(dlp_findings=[finding("monitor", False), finding("notify", True)])
    assert who(ev) == {"dpo@example.net": Audience.OFFICER.value}


def test_quarantined_and_rejected_dlp_mail() -> None:
    q = make_event(action=Action.QUARANTINE, category=Category.DLP, reason="cards",
                   recipients=["bob@example.org"], dlp_findings=[finding("quarantine", True)])
    assert who(q) == {"qadmin@example.net": "admin", "dpo@example.net": "officer", "bob@example.org": "recipient"}
    r = make_event(action=Action.REJECT, category=Category.DLP, reason="falcon",
                   reply="Dno (#5.7.1)", dlp_findings=[finding("reject", True)])
    assert who(r)["dpo@example.net"] == "officer"
    # a rule that explicitly said notify = false: held mail, officer not told
    quiet = make_event(action=Action.QUARANTINE, category=Category.DLP, dlp_findings=[finding("quarantine", False)])
    assert "dpo@example.net" not in who(quiet)
    # DLP findings from another producer that do not say: the officer is told (as before)
    legacy = make_event(dlp_findings=[{"rule": "cards", "count": 3}])
    assert who(legacy) == {"dpo@example.net": "officer"}
