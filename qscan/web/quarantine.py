"""The quarantine: list per folder, one entry, release, delete, four-eyes approvals.

Every action goes through the functions ``qscan quarantine`` runs (compliance.quarantine:
``release``, ``request_release``, ``approve``, ``deny``, ``delete``; the stored copy and the real
qmail-queue wired as ``qscan.cli.quarantine`` wires them), so a release from the console is the
same ``message.released`` event, SQL row and release header as one from the CLI; its actor is the
signed-in ``login@host`` and its operator (what four-eyes compares) the console login.

Who does what: ``postmaster`` and ``dlp-officer`` release, request, approve, deny and delete;
``auditor`` and ``legal`` read; a ``user`` sees the quarantined mail its scope covers and, when
``web.user_release`` allows it, releases its own spam and policy mail to its own addresses.
Releases from the four-eyes folders (``quarantine.four_eyes``: dlp and viruses by default)
become requests another person approves on the "Approvals" page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compliance import audit as store
from compliance import quarantine as q
from compliance.accounts import Account
from ingest.vocabulary import QUARANTINE_FOLDERS
from qscan.web.audit import Field, read_form
from qscan.web.console import NavItem, Refused, Visit, page
from qscan.web.message import _EVENT_ID

ACTORS = frozenset({"postmaster", "dlp-officer"})
READERS = ACTORS | {"auditor", "legal"}
SELF_RELEASE_FOLDERS = frozenset({"spam", "policy"})
STATES = ("quarantined", "releasing", "released", "deleted", "all")
DONE = {  # ?done= after an action: what the page says happened
    "released": "Released: the message went to qmail-queue.",
    "requested": "Release requested: a second person approves it on the Approvals page.",
    "approved": "Approved and released.",
    "denied": "The release request is closed; the message stays quarantined.",
    "deleted": "Deleted: the quarantined copy is gone, a tombstone records why.",
}
NOT_FOUND = "There is no such quarantined message, or it is not yours to see."


FIELDS = (  # as the audit page's: query-string name, ListFilters field, label, choices, hint
    Field("folder", "folder", "Folder", tuple(QUARANTINE_FOLDERS)),
    Field("state", "state", "State", STATES),
    Field("since", "since", "Since (UTC)", hint="2026-11-25, 7d, 12h"),
    Field("until", "until", "Until (UTC)", hint="a date alone includes that day"),
    Field("sender", "sender", "Sender", hint="alice@example.com, *@example.com, <>"),
    Field("recipient", "recipient", "Recipient", hint="any envelope recipient; * wildcard"),
    Field("reason", "reason", "Reason", hint="bad-attachment, spam*"),
    Field("rule", "rule", "Rule", hint="Eicar*, card-numbers"),
)


def _filters(params: Any, account: Account) -> tuple[q.ListFilters, dict[str, str]]:
    values, typed = read_form(params, FIELDS)
    try:
        filters = q.ListFilters(**values, scope=account.scope)
        filters.where()
    except q.QuarantineError as exc:
        raise store.FilterError(str(exc)) from exc
    return filters, typed


def may_act(account: Account) -> bool:
    return account.role in ACTORS


def own_recipients(account: Account, recipients: list[str]) -> list[str]:
    """The envelope recipients that are the user's own (its addresses, or at its domains)."""
    addrs = {a.lower() for a in account.addresses}
    doms = {d.lower().lstrip("@") for d in account.domains}
    return [r for r in recipients
            if r.lower() in addrs or r.rpartition("@")[2].lower() in doms]


def may_self_release(visit: Visit, entry: q.Entry) -> bool:
    account = visit.account
    return (account is not None and account.role == "user" and visit.cfg.web.user_release
            and entry.folder in SELF_RELEASE_FOLDERS and entry.state == "quarantined"
            and bool(own_recipients(account, entry.recipients)))


@page(READERS | {"user"})
async def listing(visit: Visit) -> Response:
    account = visit.account
    assert account is not None
    params = visit.request.query_params
    size = visit.cfg.web.page_size
    try:
        page_no = max(1, min(int(params.get("page", "1")), 100_000))
    except ValueError:
        page_no = 1
    try:
        filters, typed = _filters(params, account)
    except store.FilterError as exc:
        typed = {f.name: str(params.get(f.name, ""))[:500] for f in FIELDS}
        return visit.render("quarantine.html", status=400, fields=FIELDS, typed=typed,
                            error=str(exc), rows=[], total=None, query="", page_no=1,
                            next_link=None, prev_link=None, folders=QUARANTINE_FOLDERS)
    engine = visit.console.engine
    rows = await visit.run(q.listing, engine, filters, limit=size + 1, offset=(page_no - 1) * size)
    total = await visit.run(q.count, engine, filters)
    query = urlencode([(k, v) for k, v in typed.items() if v])
    more = len(rows) > size
    link = "/quarantine?" + (query + "&" if query else "")
    return visit.render(
        "quarantine.html", fields=FIELDS, typed=typed, error=None, rows=rows[:size], total=total,
        query=query, page_no=page_no, folders=QUARANTINE_FOLDERS,
        next_link=f"{link}page={page_no + 1}" if more else None,
        prev_link=f"{link}page={page_no - 1}" if page_no > 1 else None)


def _event_id(visit: Visit) -> str:
    event_id = str(visit.request.path_params["event_id"]).lower()
    if not _EVENT_ID.match(event_id):
        raise Refused(404, NOT_FOUND)
    return event_id


def _entry(visit: Visit, event_id: str) -> tuple[q.Entry, dict[str, Any]]:
    """The entry and what ``quarantine show`` prints of it; 404 outside the user's scope."""
    account = visit.account
    assert account is not None
    engine = visit.console.engine
    if not store.visible(engine, event_id, account.scope):
        raise Refused(404, NOT_FOUND)
    try:
        entry = q.get(engine, event_id)
    except store.NotFound as exc:
        raise Refused(404, NOT_FOUND) from exc
    info = store.details(engine, event_id)
    info["requests"] = q.requests(engine, event_id)
    info["releases"] = q.releases(engine, event_id)
    return entry, info


async def _show(visit: Visit, event_id: str, *, error: str | None = None,
                status: int = 200) -> Response:
    entry, info = await visit.run(_entry, visit, event_id)
    account = visit.account
    assert account is not None
    four_eyes = entry.folder in visit.cfg.quarantine.four_eyes
    pending = next((r for r in info["requests"] if r["state"] == "pending"), None)
    pending_to = json.loads(pending["recipients"]) if pending and pending["recipients"] else []
    done = DONE.get(visit.request.query_params.get("done", ""))
    return visit.render(
        "quarantine_show.html", status=status, entry=entry, info=info, m=info["message"],
        four_eyes=four_eyes, pending=pending, pending_to=pending_to, error=error, done=done,
        may_act=may_act(account) and entry.state == "quarantined",
        self_release=may_self_release(visit, entry),
        own=own_recipients(account, entry.recipients) if account.role == "user" else [],
        may_decide=may_act(account) and pending is not None,
        own_request=pending is not None and pending["operator"] == account.login)


@page(READERS | {"user"})
async def show(visit: Visit) -> Response:
    return await _show(visit, _event_id(visit))


def _reason(visit: Visit) -> str:
    assert visit.form is not None
    reason = str(visit.form.get("reason", "")).strip()
    if not reason:
        raise q.QuarantineError("Say why: every release, approval, denial and deletion is "
                                "recorded with its reason.")
    return reason[:1000]


def _wiring(visit: Visit) -> tuple[Any, Any, float, q.FourEyes]:
    from qscan.cli.quarantine import _four_eyes, _release_io

    prepare, queue, timeout = _release_io(visit.cfg)
    return prepare, queue, timeout, _four_eyes(visit.cfg)


def _release(visit: Visit, event_id: str, reason: str, to: list[str] | None) -> str:
    """Release (or, in a four-eyes folder, request); what happened, for ``?done=``."""
    from qscan.wiring.compliance import log_appender

    account = visit.account
    assert account is not None
    engine, cfg = visit.console.engine, visit.cfg
    prepare, queue, timeout, four_eyes = _wiring(visit)
    actor = visit.console.actor(account)
    with log_appender(cfg) as append:
        try:
            q.release(engine, append, event_id, actor=actor, reason=reason, host=cfg.hostname,
                      prepare=prepare, queue=queue, to=to,
                      stale_after=timedelta(seconds=timeout + 60), operator=account.login,
                      four_eyes=four_eyes)
        except q.ApprovalNeeded:
            q.request_release(engine, append, event_id, actor=actor, operator=account.login,
                              reason=reason, host=cfg.hostname, four_eyes=four_eyes, to=to)
            return "requested"
    return "released"


async def _act(visit: Visit, event_id: str, action: Any) -> Response:
    """Run ``action`` (blocking, in a worker); on a refusal show the entry with the reason."""
    from compliance.copystore import CopyError

    try:
        done = await visit.run(action)
    except (q.QuarantineError, CopyError, ValueError) as exc:
        return await _show(visit, event_id, error=str(exc), status=409)
    except store.NotFound as exc:
        raise Refused(404, NOT_FOUND) from exc
    return RedirectResponse(f"/quarantine/{event_id}?done={done}", status_code=303)


@page(ACTORS | {"user"})
async def release(visit: Visit) -> Response:
    from archive.quarantine import check_address

    account = visit.account
    assert account is not None and visit.form is not None
    event_id = _event_id(visit)
    entry, _ = await visit.run(_entry, visit, event_id)
    to_text = str(visit.form.get("to", "")).strip()

    def run() -> str:
        reason = _reason(visit)
        if account.role == "user":
            if not may_self_release(visit, entry):
                raise Refused(403, "You may not release this message: ask a postmaster.")
            to: list[str] | None = own_recipients(account, entry.recipients)
        else:
            try:
                to = [check_address(a) for a in to_text.replace(",", " ").split()] or None
            except ValueError as exc:
                raise q.QuarantineError(str(exc)) from exc
        return _release(visit, event_id, reason, to)

    return await _act(visit, event_id, run)


Decision = Callable[[Account, str, str, Callable[[Any], None]], str]


async def _decide(visit: Visit, work: Decision) -> Response:
    """A deletion, approval or denial of the entry in the path: ``work(account, event_id,
    reason, append)`` does it (blocking, in a worker) with the required reason and the log's
    appender, and says what happened, for ``?done=``; a refusal shows the entry (``_act``)."""
    from qscan.wiring.compliance import log_appender

    account = visit.account
    assert account is not None
    event_id = _event_id(visit)
    await visit.run(_entry, visit, event_id)

    def run() -> str:
        reason = _reason(visit)
        with log_appender(visit.cfg) as append:
            return work(account, event_id, reason, append)

    return await _act(visit, event_id, run)


@page(ACTORS)
async def delete(visit: Visit) -> Response:
    from qscan.wiring.compliance import copy_store

    def work(account: Account, event_id: str, reason: str, append: Callable[[Any], None]) -> str:
        q.delete(visit.console.engine, copy_store(visit.cfg), append, event_id,
                 actor=visit.console.actor(account), host=visit.cfg.hostname, reason=reason)
        return "deleted"

    return await _decide(visit, work)


@page(ACTORS)
async def approve(visit: Visit) -> Response:
    def work(account: Account, event_id: str, reason: str, append: Callable[[Any], None]) -> str:
        prepare, queue, timeout, four_eyes = _wiring(visit)
        q.approve(visit.console.engine, append, event_id, actor=visit.console.actor(account),
                  operator=account.login, reason=reason, host=visit.cfg.hostname,
                  prepare=prepare, queue=queue, four_eyes=four_eyes,
                  stale_after=timedelta(seconds=timeout + 60))
        return "approved"

    return await _decide(visit, work)


@page(ACTORS)
async def deny(visit: Visit) -> Response:
    def work(account: Account, event_id: str, reason: str, append: Callable[[Any], None]) -> str:
        q.deny(visit.console.engine, append, event_id, actor=visit.console.actor(account),
               operator=account.login, reason=reason, host=visit.cfg.hostname)
        return "denied"

    return await _decide(visit, work)


@page(READERS)
async def approvals(visit: Visit) -> Response:
    account = visit.account
    assert account is not None
    rows = await visit.run(q.pending, visit.console.engine, limit=500)
    return visit.render("approvals.html", rows=rows, may_decide=may_act(account),
                        me=visit.console.actor(account))


NAV = [NavItem("Quarantine", "/quarantine", READERS | {"user"}),
       NavItem("Approvals", "/approvals", READERS)]
ROUTES = [
    Route("/quarantine", listing, name="quarantine"),
    Route("/approvals", approvals, name="approvals"),
    Route("/quarantine/{event_id}", show, name="quarantine_entry"),
    Route("/quarantine/{event_id}/release", release, methods=["POST"], name="quarantine_release"),
    Route("/quarantine/{event_id}/delete", delete, methods=["POST"], name="quarantine_delete"),
    Route("/quarantine/{event_id}/approve", approve, methods=["POST"], name="quarantine_approve"),
    Route("/quarantine/{event_id}/deny", deny, methods=["POST"], name="quarantine_deny"),
]
