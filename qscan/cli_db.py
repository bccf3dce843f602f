"""``qscan db`` (schema) and ``qscan audit`` (search the summary store).

Both open the SQL store named by ``[sql] url`` (default: DATA_DIR/qscan.db).
A database without the schema gets one line telling the administrator what to
run, not a traceback.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.event import Action
from qscan.config import Config

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """A point in time (UTC) from '2026-11-25', '2026-11-25T10:00', '7d' or '12h'.

    A date alone is midnight UTC, or with ``end`` the midnight after it, so
    ``--until 2026-11-25`` includes that whole day. Times without an offset
    are UTC, like every time qscan writes.
    """
    m = _RELATIVE.match(text)
    if m:
        delta = timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
        return (now or datetime.now(UTC)) - delta
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class When(click.ParamType):
    name = "DATE"

    def __init__(self, *, end: bool = False) -> None:
        self.end = end

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value), end=self.end)
        except ValueError:
            self.fail(f"{value!r} is not a date: use 2026-11-25, 2026-11-25T10:00, 7d or 12h",
                      param, ctx)


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


@contextmanager
def _store(ctx: click.Context, *, check: bool = True) -> Iterator[Engine]:
    """The SQL store's engine, with every database failure turned into one line."""
    from compliance.db import SchemaMissing, check_schema, make_engine

    url = _config(ctx).sql_url
    try:
        engine = make_engine(url)
    except (SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"cannot open the SQL store: {exc}") from exc
    try:
        if check:
            check_schema(engine)
        yield engine
    except (SchemaMissing, CommandError) as exc:
        raise click.ClickException(str(exc)) from exc
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(f"SQL store {where}: {reason}") from exc
    finally:
        engine.dispose()


# -- db ---------------------------------------------------------------------
@click.group()
def db() -> None:
    """Create and migrate the SQL summary store's schema.

    \b
    Examples:
      qscan db upgrade          # create the tables, or migrate them to this version
      qscan db current          # which schema revision the database is at
      qscan db upgrade --sql    # print the DDL for a DBA instead of running it
    """


@db.command()
@click.option("--revision", default="head", show_default=True, help="target schema revision")
@click.option("--sql", "sql_only", is_flag=True,
              help="print the SQL instead of running it (offline mode, nothing is touched)")
@click.pass_context
def upgrade(ctx: click.Context, revision: str, sql_only: bool) -> None:
    """Create or migrate the schema; safe to run again (it does nothing when current).

    \b
    Example:
      qscan -c /etc/qscan/qscan.toml db upgrade
    """
    import compliance.db as store

    url = _config(ctx).sql_url
    if sql_only:
        store.upgrade(url, revision, sql=True, output=sys.stdout)
        return
    with _store(ctx, check=False) as engine:
        where = engine.url.render_as_string(hide_password=True)
        before = store.current_revision(engine)
        store.upgrade(url, revision)
        after = store.current_revision(engine)
    if before == after:
        click.echo(f"{where}: schema already at {after}")
    else:
        click.echo(f"{where}: schema upgraded {before or '(empty)'} -> {after}")


@db.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Show the schema revision of the database and the one this qscan needs.

    \b
    Example:
      qscan db current          # e.g. "0001 (head)"
    """
    import compliance.db as store

    with _store(ctx, check=False) as engine:
        rev = store.current_revision(engine)
    want = store.head()
    if rev is None:
        click.echo(f"(none): no schema yet, run `qscan db upgrade` (head is {want})")
    elif rev == want:
        click.echo(f"{rev} (head)")
    else:
        click.echo(f"{rev} (this qscan needs {want}: run `qscan db upgrade`)")


# -- audit ------------------------------------------------------------------
@click.group()
def audit() -> None:
    """Search the one-line summaries of every message in the SQL store.

    \b
    Examples:
      qscan audit search --sender alice@example.com --since 7d
      qscan audit search --domain example.org --action quarantine --format csv > q.csv
    """


@audit.command("search")
@click.option("--sender", metavar="ADDR",
              help="envelope sender; case-insensitive, '*' is a wildcard, '<>' finds bounces")
@click.option("--recipient", metavar="ADDR", help="any envelope recipient (same rules as --sender)")
@click.option("--domain", metavar="DOMAIN", help="sender's or any recipient's domain ('*' allowed)")
@click.option("--since", type=When(), help="from this time on (UTC): 2026-11-25, 2026-11-25T10:00, 7d")
@click.option("--until", type=When(end=True),
              help="before this time (UTC); a date alone includes that whole day")
@click.option("--subject", metavar="TEXT", help="case-insensitive part of the subject")
@click.option("--action", type=click.Choice([a.value for a in Action]), help="what qscan did")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="csv for spreadsheets, json for tools")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="at most this many rows (0: all)")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="skip this many rows first")
@click.option("--count", "count_only", is_flag=True, help="print only the number of matches")
@click.pass_context
def search(ctx: click.Context, sender: str | None, recipient: str | None, domain: str | None,
           since: datetime | None, until: datetime | None, subject: str | None,
           action: str | None, fmt: str, limit: int, offset: int, count_only: bool) -> None:
    """Find messages by sender, recipient, domain, time, subject or action; newest first.

    Filters combine with AND. Times are UTC; relative times (30m, 12h, 7d, 2w)
    count back from now.

    \b
    Examples:
      qscan audit search --sender alice@example.com --since 2026-11-01 --until 2026-11-30
      qscan audit search --recipient '*@example.org' --subject invoice --format csv
      qscan audit search --domain example.net --action quarantine --since 7d --count
      qscan audit search --sender '<>' --since 12h          # bounces of the last 12 hours
    """
    from compliance import audit as store

    filters: dict[str, Any] = {"sender": sender, "recipient": recipient, "domain": domain,
                               "since": since, "until": until, "subject": subject, "action": action}
    with _store(ctx) as engine:
        if count_only:
            click.echo(store.count(engine, **filters))
            return
        rows = store.search(engine, **filters, limit=limit or None, offset=offset)
        total = store.count(engine, **filters) if fmt == "table" else None
    if fmt == "csv":
        click.echo(store.render_csv(rows), nl=False)
    elif fmt == "json":
        click.echo(store.render_json(rows), nl=False)
    else:
        if rows:
            width = max(shutil.get_terminal_size((200, 24)).columns, 120)
            click.echo(store.render_table(rows, width=width), nl=False)
            click.echo(f"{offset + 1}-{offset + len(rows)} of {total} matching messages", err=True)
        else:
            click.echo(f"no matching messages{f' past the first {total}' if total else ''}",
                       err=True)
