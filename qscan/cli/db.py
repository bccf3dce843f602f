"""``qscan db`` (schema) and ``qscan audit`` (search the summary store, show one message).

Both open the SQL store named by ``[sql] url`` (default: DATA_DIR/qscan.db).
A database without the schema gets one line telling the administrator what to
run, not a traceback. The audit filters are shared with ``qscan hold create``
and ``qscan export`` (``filter_options``), so a matter is selected with exactly
the words an auditor already searches with.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from compliance.when import parse_when
from ingest.vocabulary import Action
from qscan.cli.output import Column, emit_rows, output_options
from scanners.direction import DIRECTIONS
from scanners.result import Category

if TYPE_CHECKING:  # imported where used: `qscan --help` starts without SQLAlchemy, alembic, pydantic
    from sqlalchemy import Engine

    from qscan.config import Config

F = TypeVar("F", bound=Callable[..., Any])

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
            self.fail(f"{value!r} is not a date: use 2026-11-25, 2026-11-25T10:00, 12h, 7d or 1y",
                      param, ctx)


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


DB_EXIT = 3  # the SQL store could not be opened or used (docs/compliance.md, "Exit codes")


class SqlStoreError(click.ClickException):
    """The SQL store is unusable (bad URL, missing driver, unreachable, no schema): exit 3.

    Distinct from 1 ("tampering found", "refused") so that a monitoring script never
    mistakes a database outage for evidence of tampering, or the other way round.
    """

    exit_code = DB_EXIT


def _reason(exc: BaseException) -> str:
    from qscan.redact import mask_url

    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return mask_url(line)


@contextmanager
def sql_store(ctx: click.Context, *, check: bool = True) -> Iterator[Engine]:
    """The SQL store's engine, with every database failure turned into one line (exit 3)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.db import SchemaMissing, check_schema, make_engine
    from qscan.redact import mask_url

    url = _config(ctx).sql_url
    try:
        engine = make_engine(url)
    except ImportError as exc:
        from qscan.extras import hint, missing_extra

        extra = missing_extra(exc)
        raise SqlStoreError(f"cannot open the SQL store {mask_url(url)}: its database driver "
                            f"is not installed ({hint(extra) if extra else _reason(exc)})") from exc
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise SqlStoreError(f"cannot open the SQL store {mask_url(url)}: bad [sql] url "
                            f"({_reason(exc)})") from exc
    try:
        if check:
            check_schema(engine)
        yield engine
    except (SchemaMissing, CommandError) as exc:
        raise SqlStoreError(str(exc)) from exc
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise SqlStoreError(f"SQL store {where}: {_reason(exc)}") from exc
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
    with sql_store(ctx, check=False) as engine:
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

    with sql_store(ctx, check=False) as engine:
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


FILTER_NAMES = ("sender", "recipient", "domain", "since", "until", "subject", "action",
                "category", "direction", "attachment", "attachment_type", "client_ip", "finding",
                "dlp_rule", "message_id")


def filter_options(fn: F) -> F:
    """The audit filters, as options (audit search, hold create, export)."""
    options = [
        click.option("--sender", metavar="ADDR",
                     help="envelope sender; case-insensitive, '*' is a wildcard, '<>' finds bounces, "
                     "a bare name is a local part in any domain (alice = alice@*)"),
        click.option("--recipient", metavar="ADDR",
                     help="any envelope recipient (same rules as --sender)"),
        click.option("--domain", metavar="DOMAIN",
                     help="sender's or any recipient's domain ('*' allowed)"),
        click.option("--since", type=When(),
                     help="from this time on (UTC): 2026-11-25, 2026-11-25T10:00, 7d"),
        click.option("--until", type=When(end=True),
                     help="before this time (UTC); a date alone includes that whole day"),
        click.option("--subject", metavar="TEXT", help="case-insensitive part of the subject"),
        click.option("--action", type=click.Choice([a.value for a in Action]),
                     help="what qscan did"),
        click.option("--verdict", "category", type=click.Choice([c.value for c in Category]),
                     help="the category qscan decided (clean, virus, spam, ...)"),
        click.option("--direction", type=click.Choice(DIRECTIONS),
                     help="outbound = RELAYCLIENT set; local = injected on the host"),
        click.option("--attachment", metavar="NAME",
                     help="an attachment's file name, case-insensitive, '*' allowed ('*.exe')"),
        click.option("--attachment-type", metavar="TYPE",
                     help="a part's declared or detected type ('application/pdf', 'image/*')"),
        click.option("--client-ip", metavar="IP",
                     help="client address, '*' pattern or IPv4 network (192.0.2.0/24)"),
        click.option("--finding", metavar="[SCANNER:]NAME",
                     help="a scanner found NAME ('clamav:Eicar*', 'spamd:*')"),
        click.option("--dlp-rule", metavar="RULE", help="a DLP rule fired ('*' allowed)"),
        click.option("--message-id", metavar="ID", help="the Message-ID header, <> optional"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def take_filters(kwargs: dict[str, Any]) -> Any:
    """Pop the filter options out of a command's kwargs into a ``compliance.audit.Filters``."""
    from compliance.audit import FilterError, Filters

    values = {name: kwargs.pop(name, None) for name in FILTER_NAMES}
    try:
        return Filters(**values)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from exc


AUDIT_COLUMNS = (  # drop: which go first on a narrow terminal (0: never)
    Column("time", "time (UTC)"), Column("event_id", "id", ident=True),
    Column("action", drop=3), Column("sender", min_width=8), Column("recipients", min_width=8, drop=2),
    Column("subject", min_width=8), Column("reason", min_width=8, drop=5),
    Column("client_ip", "client", drop=7), Column("size", right=True, drop=6),
    Column("category", drop=8), Column("attachments", min_width=8, drop=9),
    Column("queue_status", "queue", drop=4),
)
_TABLE_RECIPIENTS = 2


def _audit_cell(row: dict[str, Any], col: Column) -> Any:
    value = row.get(col.key)
    if col.key == "time" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if col.key == "recipients" and isinstance(value, list) and len(value) > _TABLE_RECIPIENTS:
        return ", ".join(value[:_TABLE_RECIPIENTS]) + f" (+{len(value) - _TABLE_RECIPIENTS})"
    return value


@audit.command("search")
@filter_options
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="at most this many rows, the page size with --page (0: all)")
@click.option("--offset", type=click.IntRange(min=0), default=None, help="skip this many rows first")
@click.option("--page", type=click.IntRange(min=1), default=None,
              help="page N of --limit rows (1 is the newest)")
@click.option("--count", "count_only", is_flag=True, help="print only the number of matches")
@output_options()
@click.pass_context
def search(ctx: click.Context, fmt: str, wide: bool, limit: int, offset: int | None,
           page: int | None, count_only: bool, **kwargs: Any) -> None:
    """Find messages by sender, recipient, domain, time, subject, verdict, attachment,
    client, finding or DLP rule; newest first.

    Filters combine with AND. Times are UTC; relative times (30m, 12h, 7d, 2w)
    count back from now. The table fits the terminal (ids shortened to a prefix any
    command accepts, long text cut with "…"); --wide shows every column whole, --format
    json every value exactly.

    \b
    Examples:
      qscan audit search --sender alice@example.com --since 2026-11-01 --until 2026-11-30
      qscan audit search --recipient '*@example.org' --subject invoice --format csv
      qscan audit search --domain example.net --action quarantine --since 7d --count
      qscan audit search --sender '<>' --since 12h          # bounces of the last 12 hours
      qscan audit search --attachment '*.exe' --direction inbound --page 2
      qscan audit search --finding 'clamav:Eicar*' --client-ip 192.0.2.0/24
    """
    from compliance import audit as store

    filters = take_filters(kwargs)
    if page is not None and offset is not None:
        raise click.UsageError("--page and --offset cannot be combined")
    if page is not None and not limit:
        raise click.UsageError("--page needs a page size (--limit N, N > 0)")
    offset = (page - 1) * limit if page is not None else (offset or 0)
    with sql_store(ctx) as engine:
        if count_only:
            click.echo(store.count(engine, filters))
            return
        rows = store.search(engine, filters, limit=limit or None, offset=offset)
        total = store.count(engine, filters) if fmt == "table" else None
    if fmt == "csv":
        click.echo(store.render_csv(rows), nl=False)
        return
    pages = f", page {page} of {-(-(total or 0) // limit)}" if page else ""
    emit_rows(rows, AUDIT_COLUMNS, fmt, wide=wide, fields=store.FIELDS, cells=_audit_cell,
              footer=f"{offset + 1}-{offset + len(rows)} of {total} matching messages{pages}",
              empty=f"no matching messages{f' past the first {total}' if total else ''}")


@audit.command("show")
@click.argument("event_id")
@output_options("text")
@click.pass_context
def show(ctx: click.Context, event_id: str, as_json: bool) -> None:
    """Print one message: its summary line, envelope, parts, every finding, and where its
    archived or quarantined copy is (or what became of it).

    EVENT_ID may be the whole id or its first 8+ characters.

    \b
    Examples:
      qscan audit show 0192f1c0-7a3e-7c4b-9d2e-5f1a2b3c4d5e
      qscan audit show 0192f1c0 --json
    """
    from compliance import audit as store
    from compliance import holds
    from qscan.wiring.compliance import copy_locations

    cfg = _config(ctx)
    with sql_store(ctx) as engine:
        try:
            full = store.resolve_id(engine, event_id)
            info = store.details(engine, full)
        except store.NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        info["holds"] = [{"hold_id": h.hold_id, "matter": h.matter}
                         for h in holds.covering(engine, full)]
    info["copies"] = copy_locations(cfg, info)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False, default=_json_default))
        return
    click.echo(render_details(info), nl=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def render_details(info: dict[str, Any]) -> str:
    """The human reading of ``audit show``: mail text printed literally, controls removed."""
    from compliance.audit import printable

    m = info["message"]
    lines = [printable(m["summary"]), ""]

    def kv(key: str, value: object) -> None:
        lines.append(f"  {key + ':':<15} {printable(value)}")

    lines.append("message")
    kv("event id", m["event_id"])
    kv("received", f"{printable(m['received_at'])} UTC on {m['host']}")
    kv("action", f"{m['action']} ({m['category']}, {m['reason']}), {m['direction']}")
    kv("client", f"{m['client_ip'] or 'local'} {m['client_host'] or ''}"
       f"{' relay' if m['relay'] else ''}{' auth=' + m['auth_user'] if m['auth_user'] else ''}")
    kv("envelope from", f"<{m['sender']}>")
    for r in info["recipients"]:
        kv("envelope to", f"<{r['address']}>")
    kv("from", m["header_from"])
    kv("to", m["header_to"])
    if m["header_cc"]:
        kv("cc", m["header_cc"])
    kv("subject", m["subject"])
    kv("message-id", m["message_id"])
    kv("date", m["header_date"])
    kv("size", f"{m['size']} bytes, sha256 {m['sha256']}")
    kv("queue", f"{m['queue_status']}"
       f"{' exit ' + str(m['queue_exit_code']) if m['queue_exit_code'] is not None else ''}")
    kv("chain", f"{m['host']}#{m['chain_seq']} {m['chain_hash']}")
    if info["parts"]:
        lines.append("parts")
        for part in info["parts"]:
            detected = f" (detected {part['detected_type']})" if part["detected_type"] else ""
            name = f" {part['filename']!r}" if part["filename"] else ""
            lines.append(printable(f"  {part['path']:<6} {part['content_type']}{detected}{name} "
                                   f"{part['size']} bytes"))
    lines.append("findings" if info["findings"] else "findings: none")
    for f in info["findings"]:
        lines.append(printable(f"  {f['scanner']}: {f['verdict']} {f['name']} "
                               f"score={f['score']:g} {f['detail']} ({f['duration_ms']:.1f} ms)"))
    for d in info["dlp_findings"]:
        lines.append(printable(f"  dlp {d['rule']}: {d['detector']} x{d['count']} "
                               f"{d['confidence']} {d['location']} {d['evidence']}"))
    lines.append("stored copy")
    for c in info["copies"]:
        lines.append(printable(f"  {c}"))
    if info["quarantine"]:
        q = info["quarantine"]
        kv("quarantine", f"{q['folder']} ({q['state']} since {printable(q['updated_at'])})")
    if info["deletion"]:
        d = info["deletion"]
        kv("deleted", f"{printable(d['time'])} by {d['actor']}: {d['reason']} "
           f"(tombstone {d['event_id']})")
    for qf in info["queue_failures"]:
        kv("queue failed", f"{printable(qf['time'])} exit {qf['exit_code']}")
    for h in info["holds"]:
        kv("legal hold", f"{h['matter']} ({h['hold_id']})")
    for e in info["exports"]:
        kv("exported", f"{e['matter']} as {e['doc_id']} on {printable(e['finished_at'])}")
    return "\n".join(lines) + "\n"
