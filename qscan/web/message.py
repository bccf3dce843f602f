"""One message: what SQL knows of it (``compliance.audit.details``, as ``qscan audit show``).

A ``user``-role account opens only messages its scope covers; any other id answers 404, the
same as an id that does not exist (no probing for which ids are real).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from compliance import audit as store
from qscan.web.console import Refused, Visit, page


def _details(visit: Visit, event_id: str) -> dict[str, Any]:
    account = visit.account
    assert account is not None
    engine = visit.console.engine
    if len(event_id) != 36 or not store.visible(engine, event_id, account.scope):
        raise Refused(404, "There is no such message, or it is not yours to see.")
    return store.details(engine, event_id)


@page()
async def show(visit: Visit) -> Response:
    event_id = str(visit.request.path_params["event_id"]).lower()
    info = await visit.run(_details, visit, event_id)
    return visit.render("message.html", info=info, m=info["message"])


ROUTES = [
    Route("/message/{event_id}", show, name="message"),
]
