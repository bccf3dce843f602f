"""Discovery search: the full-text query of ``qscan discover search`` with its metadata filters.

It runs ``compliance.discovery`` exactly as the command does (``parse``, ``Searcher.search`` on
the ``DiscoveryIndex``) and records the same ``discovery.searched`` event (who, the query, its
canonical form, the filters, how many matched) before anything is shown. Counts come first
(total, per custodian, per month), then a page of hits with snippets: the snippet is mail text,
escaped; only the index's own [match] brackets become ``<mark>``. Content search reads every
message, so it is for ``legal``, ``postmaster`` and ``dlp-officer`` (no ``user`` scope exists
in the index).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape
from starlette.responses import Response
from starlette.routing import Route

from compliance.when import parse_when
from qscan.web.console import NavItem, Visit, page

ROLES = frozenset({"legal", "postmaster", "dlp-officer"})
FIELDS = ("q", "since", "until", "sender", "recipient")


def marked(snippet: str) -> Markup:
    """A snippet with its [match] brackets as <mark>, everything else escaped."""
    out: list[str] = []
    open_ = False
    for c in snippet:
        if c == "[" and not open_:
            out.append("<mark>")
            open_ = True
        elif c == "]" and open_:
            out.append("</mark>")
            open_ = False
        elif c.isprintable() or c == " ":
            out.append(str(escape(c)))
        else:
            out.append(" ")
    if open_:
        out.append("</mark>")
    return Markup("".join(out))


def _search(visit: Visit, typed: dict[str, str], page_no: int) -> Any:
    from compliance.discovery.index import DiscoveryIndex
    from compliance.discovery.query import parse
    from compliance.discovery.search import Filters, Searcher, searched_event
    from qscan.wiring.compliance import log_appender

    account = visit.account
    assert account is not None
    cfg = visit.cfg
    tree = parse(typed["q"])
    filters = Filters(since=parse_when(typed["since"]) if typed["since"] else None,
                      until=parse_when(typed["until"], end=True) if typed["until"] else None,
                      sender=typed["sender"] or None, recipient=typed["recipient"] or None)
    index = DiscoveryIndex.open(cfg.sql_url, cfg.discovery_path, cfg.discovery.pg_config)
    try:
        result = Searcher(index).search(tree, filters, page=page_no,
                                        page_size=cfg.discovery.page_size)
        empty = not result.counts.total and not index.messages()
    finally:
        index.close()
    with log_appender(cfg) as append:  # recorded before anything is shown
        append(searched_event(typed["q"], tree, filters, result.counts,
                              actor=visit.console.actor(account), host=cfg.hostname))
    return result, empty


@page(ROLES)
async def search(visit: Visit) -> Response:
    from compliance.discovery.query import QueryError

    params = visit.request.query_params
    typed = {f: str(params.get(f, "")).strip()[:2000] for f in FIELDS}
    try:
        page_no = max(1, min(int(params.get("page", "1")), 10_000))
    except ValueError:
        page_no = 1
    result, empty, error = None, False, None
    if typed["q"]:
        try:
            result, empty = await visit.run(_search, visit, typed, page_no)
        except QueryError as exc:
            error = str(exc)
        except ValueError as exc:
            error = f"{exc} (dates: 2026-11-25, 2026-11-25T10:00, 12h, 7d)"
        except Exception as exc:  # the index cannot be opened or read (as the CLI's exit 3)
            error = f"The discovery index cannot be used: {type(exc).__name__}: {exc}"
    query = urlencode([(k, v) for k, v in typed.items() if v])
    next_link = prev_link = None
    if result is not None:
        shown = (page_no - 1) * result.page_size + len(result.hits)
        if shown < result.counts.total:
            next_link = f"/discover?{query}&page={page_no + 1}"
        if page_no > 1:
            prev_link = f"/discover?{query}&page={page_no - 1}"
    return visit.render("discover.html", status=400 if error else 200, typed=typed, result=result,
                        empty=empty, error=error, marked=marked, next_link=next_link,
                        prev_link=prev_link, page_no=page_no)


NAV = [NavItem("Discovery", "/discover", ROLES)]
ROUTES = [Route("/discover", search, name="discover")]
