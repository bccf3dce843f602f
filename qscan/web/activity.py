"""The console's own activity: sign-ins and refused ones, account changes, raw mail read and
exports downloaded, newest first, from the ``console_activity`` rows the summaries consumer
projects from their events (compliance.activity; ``qscan verify`` compares the two). Filters:
a login, a kind, a start date; "Older" pages by (time, event id). Roles: ``auditor`` and
``postmaster`` (the console is itself audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from compliance import activity
from qscan.web.console import NavItem, Refused, Visit, page

ROLES = frozenset({"auditor", "postmaster"})
KINDS = {"console.signin": "sign-in", "console.account": "account change",
         "message.raw_read": "raw mail read", "export.downloaded": "export download"}


def _day(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise Refused(400, f"Since: {text!r} is not a date (YYYY-MM-DD).") from None


def _before(text: str) -> tuple[datetime, str] | None:
    if not text:
        return None
    when, _, event_id = text.partition("_")
    try:
        return datetime.fromisoformat(when).astimezone(UTC), event_id
    except ValueError:
        raise Refused(400, "That page link is damaged: start from the first page.") from None


@page(ROLES)
async def listing(visit: Visit) -> Response:
    params = visit.request.query_params
    typed = {k: params.get(k, "").strip() for k in ("login", "kind", "since")}
    kind = typed["kind"] if typed["kind"] in KINDS else ""
    rows: list[dict[str, Any]] = await visit.run(
        activity.listing, visit.console.engine, actor=typed["login"] or None, kind=kind or None,
        since=_day(typed["since"]), before=_before(params.get("before", "")))
    query = {k: v for k, v in typed.items() if v}
    older = None
    if len(rows) == activity.PAGE:
        last = rows[-1]
        mark = f"{last['time'].isoformat()}_{last['event_id']}"
        older = "/activity?" + urlencode({**query, "before": mark})
    return visit.render("activity.html", rows=rows, typed=typed, kinds=KINDS, older=older,
                        first="/activity?" + urlencode(query) if params.get("before") else None)


NAV = [NavItem("Activity", "/activity", ROLES)]
ROUTES = [Route("/activity", listing, name="activity")]
