"""``qscan notify``: preview, plan, inspect and nudge notifications (docs/notifications.md)."""

from __future__ import annotations

import sys
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import TYPE_CHECKING

import click

from qscan.cli.output import Column, emit_rows, output_options, to_json

if TYPE_CHECKING:
    from ingest.event import MessageScanned
    from qscan.config import Config

KINDS = ["virus", "policy", "spam", "dlp", "reject"]
AUDIENCES = ["sender", "recipient", "admin", "officer"]


def _config(ctx: click.Context) -> Config:
    return ctx.obj["config"]()


def _resolve(cfg: Config, ident: str) -> str:
    """A whole event id from the id or its first 8+ characters, as the journal holds it."""
    from ingest.journal import Journal

    ident = ident.strip().lower()
    with Journal(cfg.journal_path, readonly=True) as journal:
        if journal.get(ident, with_raw=False) is not None:
            return ident
        if len(ident) < 8:
            raise click.ClickException(f"no event {ident!r} in {cfg.journal_path} (give the whole "
                                       "event id or its first 8+ characters)")
        found = journal.ids_starting(ident, limit=3)
    if not found:
        raise click.ClickException(f"no event {ident!r}... in {cfg.journal_path} (pruned, or another host's)")
    if len(found) > 1:
        raise click.ClickException(f"{ident!r} is the start of several event ids ({', '.join(found[:2])}, "
                                   "...): give more of it")
    return found[0]


def _event(cfg: Config, event_id: str) -> MessageScanned:
    from ingest.event import MessageScanned
    from ingest.journal import Journal
    from ingest.log import decode_entry

    event_id = _resolve(cfg, event_id)
    with Journal(cfg.journal_path, readonly=True) as journal:
        entry = journal.get(event_id, with_raw=True)
    if entry is None:
        raise click.ClickException(f"no event {event_id} in {cfg.journal_path} (pruned, or another host's)")
    event = decode_entry(entry).event
    if not isinstance(event, MessageScanned):
        raise click.ClickException(f"{event_id} is a {event.type} event, not message.scanned")
    return event


@click.group()
def notify() -> None:
    """Notifications: preview, plan, outbox, flush, retry, catalogs."""


@notify.command("preview")
@click.argument("event_id")
@click.option("--lang", type=click.Choice(["en", "it", "af", "pl", "sv", "cs", "de", "es", "tr", "lt",
                                           "fr", "pt", "nl", "zh"]),
              help="language (default: the one the address would get)")
@click.option("--kind", type=click.Choice(KINDS), help="template kind (default: the event's)")
@click.option("--audience", type=click.Choice(AUDIENCES), default="recipient", show_default=True,
              help="whom the notice is for")
@click.option("--to", "address", help="address to render for (default: from the event or the config)")
@click.option("--format", "fmt", type=click.Choice(["text", "html", "mime"]), default="text",
              show_default=True,
              help="text: headers and plain body; html: the HTML part; mime: the message as sent")
@click.pass_context
def preview(ctx: click.Context, event_id: str, lang: str | None, kind: str | None, audience: str,
            address: str | None, fmt: str) -> None:
    """Render a notification for EVENT_ID (the id or its first 8+ characters) without sending
    anything.

    \b
    Examples:
      qscan notify preview --lang de --kind virus 01a2...
      qscan notify preview --audience admin --format mime 01a2...
    """
    from datetime import UTC, datetime

    from compliance.notify.audience import Audience, Kind, Notice, kind_of, language_for
    from compliance.notify.compose import compose
    from qscan.wiring.notify import identity, notify_policy, renderer

    cfg = _config(ctx)
    event = _event(cfg, event_id)
    chosen = Kind(kind) if kind else kind_of(event)
    if chosen is None:
        raise click.ClickException(f"{event_id} produces no notification ({event.action.value}); "
                                   "choose one with --kind")
    aud = Audience(audience)
    if address is None:
        if aud == Audience.SENDER:
            address = event.envelope.sender or "postmaster@invalid"
        elif aud == Audience.RECIPIENT:
            address = event.envelope.recipients[0] if event.envelope.recipients else "user@invalid"
        else:
            address = (cfg.notify.admin if aud == Audience.ADMIN else cfg.notify.compliance_officer) \
                or f"postmaster@{cfg.hostname}"
    policy = notify_policy(cfg)
    notice = Notice(address, aud, chosen, lang or language_for(address, aud, policy))
    rendered = renderer(cfg).render(event, notice)
    _, data = compose(rendered, notice, event_id=event.event_id, identity=identity(cfg, create_key=False),
                      when=datetime.now(UTC), in_reply_to=event.headers.message_id)
    if fmt == "mime":
        sys.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
        return
    if fmt == "html":
        if rendered.html is None:
            raise click.ClickException("no HTML alternative (notify.html = false)")
        click.echo(rendered.html, nl=False)
        return
    msg = message_from_bytes(data, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Content-Language"):
        click.echo(f"{name}: {msg[name]}")
    click.echo("")
    click.echo(rendered.text, nl=False)


@notify.command("plan")
@click.argument("event_id")
@click.pass_context
def plan_command(ctx: click.Context, event_id: str) -> None:
    """Who would be told of EVENT_ID (the id or its first 8+ characters), in which language, and
    who would not and why."""
    from qscan.wiring.notify import notifier

    cfg = _config(ctx)
    event = _event(cfg, event_id)
    n = notifier(cfg, create_key=False)  # sends nothing: no key file made for it
    try:
        plan = n.plan(event)
    finally:
        n.headers.close()  # type: ignore[union-attr]
    for notice in plan.notices:
        what = f"{notice.kind.value}/{notice.audience.value}"
        click.echo(f"notify  {notice.address}  {what}  {notice.language}")
    for who, why in plan.skipped:
        click.echo(f"silent  {who}  {why}")


OUTBOX_COLUMNS = (  # drop: which go first on a narrow terminal (0: never)
    Column("id", right=True), Column("state"), Column("kind", drop=3), Column("audience", drop=4),
    Column("language", "lang", drop=5), Column("recipient", min_width=10),
    Column("event_id", "event", ident=True, drop=2), Column("attempts", "tries", right=True, drop=6),
    Column("last_error", "error", min_width=10, drop=1),
)


@notify.command("outbox")
@click.option("--state", type=click.Choice(["pending", "sending", "indoubt", "sent", "failed"]),
              help="only notifications in this state")
@click.option("--event", "event_id", help="only this event's notifications (id or first 8+ characters)")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="at most this many rows")
@output_options()
@click.pass_context
def outbox_command(ctx: click.Context, state: str | None, event_id: str | None, limit: int,
                   fmt: str, wide: bool) -> None:
    """List notifications, newest first, with counts per state (JSON: {"counts", "notifications"})."""
    from compliance.db import make_engine
    from compliance.notify.outbox import Outbox

    cfg = _config(ctx)
    if event_id is not None:
        event_id = _resolve(cfg, event_id)
    engine = make_engine(cfg.sql_url)
    try:
        box = Outbox(engine)
        rows = box.rows(state=state, event_id=event_id, limit=limit)
        counts = box.counts()
    finally:
        engine.dispose()
    fields = ("id", "event_id", "recipient", "kind", "audience", "language", "state", "attempts",
              "next_attempt_at", "sent_at", "last_error")
    items = [{f: getattr(r, f) for f in fields} for r in rows]
    if fmt == "json":
        click.echo(to_json({"counts": counts, "notifications": items}), nl=False)
        return
    if fmt == "table":
        click.echo("  ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "outbox empty", err=True)
    emit_rows(items, OUTBOX_COLUMNS, fmt, wide=wide, fields=fields, empty="no notifications")


@notify.command("flush")
@click.option("--all", "ignore_schedule", is_flag=True, help="also what is waiting for its back-off")
@click.pass_context
def flush(ctx: click.Context, ignore_schedule: bool) -> None:
    """Deliver what is due now (the consumer does this by itself every notify.delivery_interval)."""
    from compliance.db import make_engine
    from compliance.notify.outbox import Courier, Outbox
    from qscan.wiring.notify import retry_policy, transport_factory

    cfg = _config(ctx)
    engine = make_engine(cfg.sql_url)
    try:
        result = Courier(Outbox(engine, retry_policy(cfg)), transport_factory(cfg)).deliver(
            limit=10_000, ignore_schedule=ignore_schedule)
    finally:
        engine.dispose()
    click.echo(f"sent {result.sent}, deferred {result.deferred}, failed {result.failed}, "
               f"in doubt {result.in_doubt}")
    for err in result.errors[:20]:
        click.echo(f"  {err}")


@notify.command("retry")
@click.option("--id", "ids", type=int, multiple=True, help="notification id (repeatable)")
@click.option("--event", "event_id", help="every notification of this event (id or first 8+ characters)")
@click.option("--state", "states", type=click.Choice(["indoubt", "failed"]), multiple=True,
              help="which states to requeue (default both)")
@click.pass_context
def retry(ctx: click.Context, ids: tuple[int, ...], event_id: str | None, states: tuple[str, ...]) -> None:
    """Requeue failed or in-doubt notifications (an in-doubt one may then arrive twice)."""
    from compliance.db import make_engine
    from compliance.notify.outbox import Outbox

    if not ids and not event_id:
        raise click.UsageError("give --id or --event")
    cfg = _config(ctx)
    if event_id is not None:
        event_id = _resolve(cfg, event_id)
    engine = make_engine(cfg.sql_url)
    try:
        n = Outbox(engine).requeue(ids=ids, event_id=event_id, states=states or ("indoubt", "failed"))
    finally:
        engine.dispose()
    click.echo(f"requeued {n} notification(s)")


@notify.command("catalogs")
@click.option("--check", is_flag=True, help="only report missing, fuzzy or stale translations")
def catalogs_command(check: bool) -> None:
    """Maintainers: re-extract messages.pot, merge it into every .po, recompile the .mo files."""
    from compliance.notify import catalogs

    if not check:
        for path in catalogs.update_all():
            click.echo(f"compiled {path}")
    problems = catalogs.check()
    for p in problems:
        click.echo(p, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("catalogs complete")
