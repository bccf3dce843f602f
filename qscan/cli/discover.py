"""``qscan discover``: full-text discovery search of the indexed mail (docs/discovery.md).

Exit codes: 2 for a query that does not parse (the message points at the column), 3 when
the index or the SQL store cannot be used; every search that runs is recorded on the log
as a ``discovery.searched`` event with who ran it.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from qscan.cli.db import DB_EXIT, When
from qscan.cli.output import output_options

if TYPE_CHECKING:
    from compliance.discovery.index import DiscoveryIndex
    from compliance.discovery.search import Filters, Result
    from compliance.discovery.selection import Selection
    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


@click.group()
def discover() -> None:
    """Discovery search: full text of bodies, attachments and headers (`qscan consume index`).

    \b
    Examples:
      qscan discover search '"wire transfer" AND (acme OR globex)' --since 2026-01-01
      qscan discover search 'subject:merger NOT from:newsletter@example.com' --format json
      qscan discover search 'attachment:budget* NEAR/5 forecast' --format csv > hits.csv
    """


@discover.command("search")
@click.argument("query")
@click.option("--since", type=When(), help="received at or after (2026-11-25, 7d, 12h)")
@click.option("--until", type=When(end=True), help="received before")
@click.option("--sender", metavar="ADDR", help="envelope sender (exact address)")
@click.option("--recipient", metavar="ADDR", help="an envelope recipient (exact address)")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help="which page of hits")
@click.option("--limit", "page_size", type=click.IntRange(1, 10_000), default=None,
              help="hits per page (default: [discovery] page_size)")
@output_options("table")
@click.pass_context
def search(ctx: click.Context, query: str, since: datetime | None, until: datetime | None,
           sender: str | None, recipient: str | None, page: int, page_size: int | None,
           fmt: str, wide: bool) -> None:
    """Find the messages QUERY matches: counts first (total, per custodian, per month),
    then a page of hits with the matching words in [brackets]; copies of one message
    (same hash) count once. Words, "exact phrases", AND/OR/NOT, (groups), prefix*,
    a NEAR/5 b, and fields subject: from: to: cc: body: attachment:."""
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.db import SchemaMissing
    from compliance.discovery.index import DiscoveryIndex
    from compliance.discovery.query import QueryError, parse
    from compliance.discovery.search import Filters, Searcher, searched_event
    from qscan.wiring.compliance import actor, log_appender

    try:
        tree = parse(query)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    cfg = _config(ctx)
    filters = Filters(since=since, until=until, sender=sender, recipient=recipient)
    size = page_size or cfg.discovery.page_size
    try:
        index = DiscoveryIndex.open(cfg.sql_url, cfg.discovery_path, cfg.discovery.pg_config)
    except (SchemaMissing, SQLAlchemyError, OSError, ValueError, ImportError) as exc:
        click.echo(f"qscan: cannot open the discovery index: {exc}", err=True)
        ctx.exit(DB_EXIT)
    try:
        result = Searcher(index).search(tree, filters, page=page, page_size=size)
        if not result.counts.total and not index.messages():
            click.echo("qscan: the discovery index is empty: run `qscan consume index` "
                       '(or add "index" to [consumers] enabled)', err=True)
    except SQLAlchemyError as exc:
        click.echo(f"qscan: discovery search failed: {exc}", err=True)
        ctx.exit(DB_EXIT)
    finally:
        index.close()
    with log_appender(cfg) as append:  # recorded before anything is shown
        append(searched_event(query, tree, filters, result.counts, actor=actor(cfg),
                              host=cfg.hostname))
    if fmt in ("csv", "tsv"):  # the hits on stdout, the counts on stderr
        _csv(result, "\t" if fmt == "tsv" else ",")
    else:
        {"table": _table, "json": _json}[fmt](result)


def open_index(ctx: click.Context, cfg: Config) -> DiscoveryIndex:
    """The discovery index ``cfg`` names; exit 3 (one line) when it cannot be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.db import SchemaMissing
    from compliance.discovery.index import DiscoveryIndex

    try:
        return DiscoveryIndex.open(cfg.sql_url, cfg.discovery_path, cfg.discovery.pg_config)
    except (SchemaMissing, SQLAlchemyError, OSError, ValueError, ImportError) as exc:
        click.echo(f"qscan: cannot open the discovery index: {exc}", err=True)
        ctx.exit(DB_EXIT)
        raise  # not reached: ctx.exit raises


def choose(ctx: click.Context, cfg: Config, query: str, filters: Filters, *,
           purpose: str) -> Selection:
    """Every message ``query`` finds, for a hold or an export: the search runs over the
    whole index (all pages, every copy) and is recorded as a ``discovery.searched`` event
    (with ``purpose``) before anything is done with it. Exit 2 for a query that does not
    parse or finds nothing to hold, 3 when the index cannot be used."""
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.discovery.query import QueryError
    from compliance.discovery.search import searched_event
    from compliance.discovery.selection import select_messages
    from qscan.wiring.compliance import actor, log_appender

    index = open_index(ctx, cfg)
    try:
        chosen = select_messages(index, query, filters)
        empty = not chosen.matches and not index.messages()
    except QueryError as exc:
        raise click.UsageError(f"--query: {exc}") from exc
    except SQLAlchemyError as exc:
        click.echo(f"qscan: discovery search failed: {exc}", err=True)
        ctx.exit(DB_EXIT)
        raise  # not reached
    finally:
        index.close()
    with log_appender(cfg) as append:
        append(searched_event(query, chosen.tree, filters, chosen.counts, actor=actor(cfg),
                              host=cfg.hostname, purpose=purpose))
    if empty:
        raise click.UsageError("the discovery index is empty: run `qscan consume index` "
                               '(or add "index" to [consumers] enabled)')
    if not chosen.matches:
        raise click.UsageError(f"--query {query!r} finds no messages (nothing for {purpose})")
    return chosen


def _table(result: Result) -> None:
    c = result.counts
    more = f" ({c.incomplete} not fully indexed)" if c.incomplete else ""
    click.echo(f"{c.total} messages{more}")
    if c.per_custodian:
        click.echo("\nper custodian:")
        for address, n in c.per_custodian:
            click.echo(f"  {n:>8}  {_printable(address) or '<>'}")
    if c.per_month:
        click.echo("\nper month:")
        for month, n in c.per_month:
            click.echo(f"  {n:>8}  {month}")
    first = (result.page - 1) * result.page_size
    if result.hits:
        last = first + len(result.hits)
        click.echo(f"\nhits {first + 1}-{last} of {c.total}:")
    for hit in result.hits:
        flag = "  [not fully indexed]" if hit.incomplete else ""
        click.echo(f"\n{hit.received_at:%Y-%m-%d %H:%M}  {_printable(hit.sender) or '<>'}  "
                   f"{_printable(hit.subject)}{flag}")
        click.echo(f"  {hit.event_id}  sha256 {hit.sha256[:16]}")
        if hit.snippet:
            click.echo(f"  {_printable(hit.snippet)}")


def _hit(hit: Any) -> dict[str, Any]:
    return {"event_id": hit.event_id, "sha256": hit.sha256,
            "received_at": hit.received_at.isoformat(), "sender": hit.sender,
            "subject": hit.subject, "snippet": hit.snippet, "incomplete": hit.incomplete}


def _json(result: Result) -> None:
    c = result.counts
    doc = {"total": c.total, "incomplete": c.incomplete,
           "per_custodian": [{"address": a, "messages": n} for a, n in c.per_custodian],
           "per_month": [{"month": m, "messages": n} for m, n in c.per_month],
           "page": result.page, "page_size": result.page_size,
           "hits": [_hit(h) for h in result.hits]}
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _csv(result: Result, delimiter: str = ",") -> None:
    c = result.counts
    click.echo(f"{c.total} messages, {c.incomplete} not fully indexed", err=True)
    out = csv.writer(sys.stdout, delimiter=delimiter)
    fields = ["event_id", "sha256", "received_at", "sender", "subject", "snippet", "incomplete"]
    out.writerow(fields)
    for hit in result.hits:
        row = _hit(hit)
        out.writerow(["" if row[f] is None else row[f] for f in fields])
