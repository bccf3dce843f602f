"""The audit search page: every filter of ``qscan audit search``, keyset paging, downloads.

The query string is the search: a link to the page is a saved search (bookmark it, send it).
Filters are read into ``compliance.audit.Filters`` exactly as the CLI's options are (the same
names: ``verdict`` is the category, times go through ``compliance.when.parse_when``), and a
``user``-role account's scope is added by ``compliance.audit`` itself. Pages go by keyset
(``after=TIME_ID`` of the last row shown) on the time index, so page 1000 costs what page 1 does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from compliance import audit as store
from compliance.when import parse_when
from ingest.vocabulary import Action
from qscan.web.console import NavItem, Refused, Visit, page
from scanners.direction import DIRECTIONS
from scanners.result import Category

COUNT_CAP = 10_000  # a page counts matches up to here ("more than 10,000")


@dataclass(frozen=True)
class Field:
    """One filter of the form: its query-string name, the Filters field, label, choices, hint."""

    name: str
    attr: str
    label: str
    choices: tuple[str, ...] = ()
    hint: str = ""


FIELDS = (  # the first PRIMARY are always shown, the rest under "More filters"
    Field("since", "since", "Since (UTC)", hint="2026-11-25, 2026-11-25T10:00, 7d, 12h"),
    Field("until", "until", "Until (UTC)", hint="a date alone includes that day"),
    Field("sender", "sender", "Sender", hint="alice@example.com, *@example.com, <> (bounces)"),
    Field("recipient", "recipient", "Recipient", hint="any envelope recipient; * wildcard"),
    Field("subject", "subject", "Subject contains"),
    Field("action", "action", "Action", tuple(a.value for a in Action)),
    Field("verdict", "category", "Verdict", tuple(c.value for c in Category)),
    Field("domain", "domain", "Domain", hint="sender's or any recipient's"),
    Field("direction", "direction", "Direction", tuple(DIRECTIONS)),
    Field("attachment", "attachment", "Attachment name", hint="*.exe, invoice*.pdf"),
    Field("attachment_type", "attachment_type", "Attachment type", hint="application/pdf, image/*"),
    Field("client_ip", "client_ip", "Client IP", hint="192.0.2.1, 192.0.2.0/24, 2001:db8:*"),
    Field("finding", "finding", "Scanner finding", hint="clamav:Eicar*, spamd:*"),
    Field("dlp_rule", "dlp_rule", "DLP rule", hint="* allowed"),
    Field("message_id", "message_id", "Message-ID"),
)
PRIMARY = 7
FIELD_NAMES = tuple(f.name for f in FIELDS)


def read_form(params: Any, fields: tuple[Field, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """A filter form's values by attribute (dates parsed, choices checked; FilterError names
    the field), and the values as typed (to refill the form). The audit and quarantine pages'."""
    typed = {f.name: str(params.get(f.name, "")).strip()[:500] for f in fields}
    values: dict[str, Any] = {}
    for f in fields:
        text = typed[f.name]
        if not text:
            continue
        if f.choices and text not in f.choices:
            raise store.FilterError(f"unknown {f.label.lower()} {text!r}")
        if f.attr in ("since", "until"):
            try:
                values[f.attr] = parse_when(text, end=f.attr == "until")
            except ValueError as exc:
                raise store.FilterError(
                    f"{f.label}: {text!r} is not a date: use 2026-11-25, 2026-11-25T10:00, 12h, 7d or 1y"
                ) from exc
        else:
            values[f.attr] = text
    return values, typed


def read_filters(params: Any) -> tuple[store.Filters, dict[str, str]]:
    """The Filters a query string asks for, and the values as typed (to refill the form)."""
    values, typed = read_form(params, FIELDS)
    return store.Filters(**values), typed


def _more_open(typed: dict[str, str]) -> bool:
    """The "More filters" section starts open when one of its filters is set."""
    return any(typed.get(f.name) for f in FIELDS[PRIMARY:])


def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    when, _, event_id = text.rpartition("_")
    try:
        return datetime.fromisoformat(when), event_id[:36]
    except ValueError:
        return None


def _query(typed: dict[str, str], **extra: Any) -> str:
    pairs = [(k, v) for k, v in typed.items() if v] + [(k, v) for k, v in extra.items() if v]
    return urlencode(pairs)


@page()
async def search(visit: Visit) -> Response:
    account = visit.account
    assert account is not None
    params = visit.request.query_params
    size = visit.cfg.web.page_size
    try:
        filters, typed = read_filters(params)
    except store.FilterError as exc:
        typed = {f.name: str(params.get(f.name, ""))[:500] for f in FIELDS}
        return visit.render("audit.html", status=400, main=FIELDS[:PRIMARY], more=FIELDS[PRIMARY:],
                            typed=typed, more_open=_more_open(typed), error=str(exc),
                            rows=[], total=None, next_link=None, first_link=None, query="", page_no=1)
    after = _cursor(params.get("after"))
    try:
        page_no = max(1, min(int(params.get("page", "1")), 1_000_000))
    except ValueError:
        page_no = 1
    engine, scope = visit.console.engine, account.scope
    rows = await visit.run(store.search, engine, filters, limit=size + 1, scope=scope, after=after)
    if after is None and len(rows) <= size:
        total = len(rows)  # the whole result is on this first page: nothing left to count
    else:
        total = await visit.run(store.count, engine, filters, scope=scope, cap=COUNT_CAP + 1)
    more = len(rows) > size
    rows = rows[:size]
    query = _query(typed)
    next_link = None
    if more:
        last = rows[-1]
        next_link = "/audit?" + _query(typed, after=f"{last['time'].isoformat()}_{last['event_id']}",
                                       page=str(page_no + 1))
    first_link = ("/audit?" + query) if after else None
    return visit.render("audit.html", main=FIELDS[:PRIMARY], more=FIELDS[PRIMARY:], typed=typed,
                        more_open=_more_open(typed), error=None, rows=rows, total=total,
                        cap=COUNT_CAP, next_link=next_link, first_link=first_link, query=query,
                        page_no=page_no, size=size)


def _download(kind: str) -> Any:
    @page()
    async def download(visit: Visit) -> Response:
        account = visit.account
        assert account is not None
        try:
            filters, _ = read_filters(visit.request.query_params)
        except store.FilterError as exc:
            raise Refused(400, str(exc)) from exc
        batches = store.iter_search(visit.console.engine, filters, scope=account.scope)
        body = _csv(batches) if kind == "csv" else _json(batches)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        media = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
        return StreamingResponse(_async(body), media_type=media, headers={
            "content-disposition": f'attachment; filename="qscan-audit-{stamp}.{kind}"'})

    download.__name__ = f"download_{kind}"
    return download


def _csv(batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    first = True
    for rows in batches:
        text = store.render_csv(rows)
        yield text if first else text.split("\n", 1)[1]
        first = False
    if first:
        yield store.render_csv([])


def _json(batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    yield "["
    sep = "\n"
    for rows in batches:
        body = store.render_json(rows).strip()[1:-1].strip()  # the objects of one batch
        if body:
            yield sep + body
            sep = ",\n"
    yield "\n]\n"


async def _async(chunks: Iterator[str]) -> AsyncIterator[str]:
    async for chunk in iterate_in_threadpool(chunks):
        yield chunk


NAV = [NavItem("Audit search", "/audit")]
ROUTES = [
    Route("/audit", search, name="audit"),
    Route("/audit.csv", _download("csv"), name="audit_csv"),
    Route("/audit.json", _download("json"), name="audit_json"),
]
