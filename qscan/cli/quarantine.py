"""``qscan quarantine``: list, show, release, delete and expire quarantined mail.

The composition root of the quarantine lifecycle (compliance.quarantine): the
SQL store, the quarantine maildirs (archive.copies, archive.quarantine), the
real qmail-queue (ingest.qmail_queue) and the journal are put together here.
Exit codes: 0 done, 1 refused or failed (the message says why), 2 bad usage, 3 the SQL
store could not be used (qscan.cli.db.SqlStoreError).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ingest.vocabulary import QUARANTINE_FOLDERS
from qscan.cli.db import When, sql_store
from qscan.cli.output import Column, emit_rows, output_options

if TYPE_CHECKING:
    from qscan.config import Config

STATE_CHOICES = ["quarantined", "releasing", "released", "deleted", "all"]


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


class Age(click.ParamType):
    name = "AGE"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        from compliance.quarantine import parse_age

        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
def quarantine() -> None:
    """Search, inspect, release, delete and expire quarantined mail.

    Quarantined messages live in the viruses/, policy/, spam/ and dlp/ maildirs under
    archive.quarantine_dir and are indexed in SQL by `qscan consume summaries`.
    Every release and deletion is an event on the log and a row in SQL.

    \b
    Examples:
      qscan quarantine list --folder spam --since 7d
      qscan quarantine show 0192f1c0
      qscan quarantine release 0192f1c0 --reason "false positive, ticket 4711"
      qscan quarantine release 0192f1c0 --to helpdesk@example.com --reason "for inspection"
      qscan quarantine list --pending          # four-eyes: releases waiting for approval
      qscan quarantine approve 0192f1c0 --reason "checked with the DLP officer"
      qscan quarantine deny 0192f1c0 --reason "real card numbers"   # or the requester withdraws
      qscan quarantine delete 0192f1c0 --reason "phishing, confirmed"
      qscan quarantine expire --dry-run        # nightly: qscan quarantine expire
    """


# -- list ---------------------------------------------------------------------------
@quarantine.command("list")
@click.option("--folder", type=click.Choice(QUARANTINE_FOLDERS),
              help="one quarantine folder")
@click.option("--state", type=click.Choice(STATE_CHOICES), default=None,
              help="entries in this state (default: all but deleted)")
@click.option("--sender", metavar="ADDR",
              help="envelope sender; case-insensitive, '*' is a wildcard, '<>' finds bounces, "
                   "a bare name is a local part in any domain (alice = alice@*)")
@click.option("--recipient", metavar="ADDR", help="any envelope recipient (same rules)")
@click.option("--since", type=When(), help="received from (UTC): 2026-11-25, 2026-11-25T10:00, 7d")
@click.option("--until", type=When(end=True), help="received before; a date alone includes that day")
@click.option("--reason", metavar="TEXT", help="the verdict's reason ('bad-attachment', 'spam*')")
@click.option("--rule", metavar="NAME",
              help="a policy rule, signature or DLP rule that fired ('Eicar*', 'card-numbers')")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="at most this many rows (0: all)")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="skip this many rows first")
@click.option("--pending", is_flag=True,
              help="release requests waiting for a second operator's approval (four-eyes)")
@output_options()
@click.pass_context
def list_(ctx: click.Context, folder: str | None, state: str | None, sender: str | None,
          recipient: str | None, since: datetime | None, until: datetime | None,
          reason: str | None, rule: str | None, fmt: str, wide: bool, limit: int, offset: int,
          pending: bool) -> None:
    """List quarantined messages, newest first, from the SQL index (no directory walk).

    \b
    Examples:
      qscan quarantine list --folder viruses
      qscan quarantine list --recipient bob@example.org --since 2026-11-01 --format csv
      qscan quarantine list --rule 'Eicar*' --state all --format json
      qscan quarantine list --pending
    """
    from compliance import quarantine as q
    from compliance.audit import FilterError

    if pending:
        with sql_store(ctx) as engine:
            rows = q.pending(engine, limit=limit or None, offset=offset)
        emit_rows(rows, PENDING_COLUMNS, fmt, wide=wide, fields=q.PENDING_FIELDS,
                  footer=f"{len(rows)} release requests waiting for approval",
                  empty="no release requests waiting for approval")
        return

    try:
        filters = q.ListFilters(folder=folder, state=state, sender=sender, recipient=recipient,
                                since=since, until=until, reason=reason, rule=rule)
        filters.where()
    except (q.QuarantineError, FilterError) as exc:
        raise click.UsageError(str(exc)) from exc
    with sql_store(ctx) as engine:
        rows = q.listing(engine, filters, limit=limit or None, offset=offset)
        total = q.count(engine, filters) if fmt == "table" else None
    emit_rows(rows, LIST_COLUMNS, fmt, wide=wide, fields=q.LIST_FIELDS, cells=_list_cell,
              footer=f"{offset + 1}-{offset + len(rows)} of {total} quarantined messages",
              empty="no matching quarantined messages")


LIST_COLUMNS = (  # drop: which go first on a narrow terminal (0: never)
    Column("received", "received (UTC)"), Column("event_id", "id", ident=True),
    Column("folder", drop=4), Column("state", drop=6), Column("reason", min_width=8, drop=7),
    Column("rules", min_width=8, drop=3), Column("sender", min_width=8),
    Column("recipients", min_width=8, drop=2), Column("subject", min_width=8),
    Column("size", right=True, drop=8),
)
PENDING_COLUMNS = (
    Column("requested", "requested (UTC)"), Column("request_id", "request", ident=True, drop=5),
    Column("event_id", "id", ident=True), Column("folder", drop=4),
    Column("requested_by", "by", min_width=8, drop=3), Column("reason", min_width=8, drop=2),
    Column("sender", min_width=8), Column("subject", min_width=8),
)


def _list_cell(row: dict[str, Any], col: Column) -> Any:
    value = row.get(col.key)
    if col.key == "received" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if col.key == "recipients" and isinstance(value, list) and len(value) > 2:
        return ", ".join(value[:2]) + f" (+{len(value) - 2})"
    return value


# -- show ---------------------------------------------------------------------------
def _copy(cfg: Config, entry: Any) -> Any:
    """The stored copy of an entry (first found), or None."""
    from qscan.wiring.compliance import copy_store

    found = copy_store(cfg).locate(entry.facts())
    return found[0] if found else None


@quarantine.command("show")
@click.argument("event_id")
@click.option("--raw", is_flag=True,
              help="write the whole message (as queued, without the envelope block) to stdout")
@click.option("--tty", "to_tty", is_flag=True,
              help="with --raw: write to a terminal anyway (hostile mail may carry escape sequences)")
@output_options("text")
@click.pass_context
def show(ctx: click.Context, event_id: str, raw: bool, to_tty: bool, as_json: bool) -> None:
    """Print one quarantined message: summary, envelope, every finding, its headers, where
    the file is and what happened to it (releases, holds, deletion).

    EVENT_ID may be the whole id or its first 8+ characters. --raw writes the message
    bytes to stdout only - pipe them to a file or a viewer of your choosing (it refuses a
    terminal unless --tty: mail can carry escape sequences); attachments are never
    unpacked or written under the names the mail gives them. Header lines shown without
    --raw have control characters escaped.

    \b
    Examples:
      qscan quarantine show 0192f1c0
      qscan quarantine show 0192f1c0 --raw > /tmp/suspect.eml
    """
    from archive.quarantine import header_lines, read_copy
    from compliance import audit, holds
    from compliance import quarantine as q
    from compliance.copystore import CopyError
    from qscan.cli.db import _json_default, render_details
    from qscan.wiring.compliance import copy_store

    if raw and not to_tty and sys.stdout.isatty():
        raise click.ClickException("refusing to write a raw message to a terminal (mail can carry "
                                   "escape sequences): redirect it, e.g. `> suspect.eml`, or add --tty")
    cfg = _config(ctx)
    with sql_store(ctx) as engine:
        try:
            full = q.resolve(engine, event_id)
            entry = q.get(engine, full)
            info = audit.details(engine, full)
        except audit.NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        info["holds"] = [{"hold_id": h.hold_id, "matter": h.matter}
                         for h in holds.covering(engine, full)]
        info["releases"] = q.releases(engine, full)
        info["requests"] = q.requests(engine, full)
    copy = _copy(cfg, entry)
    if raw:
        if copy is None:
            raise click.ClickException(f"message {full} has no quarantined copy (state {entry.state}); "
                                       "if it was quarantined just now, the archive consumer may not "
                                       "have written it yet: see `qscan status`")
        try:
            data = copy_store(cfg).read_message(copy, entry.facts())
        except CopyError as exc:
            raise click.ClickException(f"{exc}; run `qscan verify`") from exc
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    info["file"] = str(copy.path) if copy else None
    info["headers"] = []
    if copy is not None:
        try:
            info["headers"] = header_lines(read_copy(copy.path))
        except OSError as exc:
            info["file"] = f"{copy.path} (unreadable: {exc.strerror or exc})"
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False, default=_json_default))
        return
    info["copies"] = [f"{copy.location}: {copy.path}" if copy else
                      f"none ({entry.state})"]
    click.echo(render_details(info), nl=False)
    for r in info["requests"]:
        click.echo(audit.printable(
            f"  {'requested:':<15} {r['time']:%Y-%m-%d %H:%M:%S} UTC by {r['actor']}: "
            f"{r['reason']} (request {r['event_id']}, {r['state']})"))
        if r["denial_event_id"]:
            click.echo(audit.printable(
                f"  {r['state'] + ':':<15} {r['denied_at']:%Y-%m-%d %H:%M:%S} UTC by "
                f"{r['denied_by']}: {r['denial_reason']} (denial {r['denial_event_id']})"))
    for r in info["releases"]:
        click.echo(audit.printable(
            f"  {'released:':<15} {r['time']:%Y-%m-%d %H:%M:%S} UTC by {r['actor']} to "
            f"{', '.join(json.loads(r['recipients']))}: {r['reason']} (release {r['event_id']})"))
    click.echo("headers")
    for line in info["headers"]:
        click.echo("  " + audit.printable(line.replace("\t", " ")))


# -- release ------------------------------------------------------------------------
def operator() -> str:
    """The login running this command, as four-eyes compares it (compliance.identity)."""
    from compliance.identity import login

    return login()


def _actor(cfg: Config, by: str | None) -> str:
    who = f"{operator()}@{cfg.hostname}"
    return f"{by.strip()} (run by {who})" if by and by.strip() else who


def _four_eyes(cfg: Config) -> Any:
    from compliance.quarantine import FourEyes

    return FourEyes(frozenset(cfg.quarantine.four_eyes),
                    frozenset(cfg.quarantine.release_officers))


def _release_io(cfg: Config) -> tuple[Any, Any, float]:
    """prepare and queue for compliance.quarantine.release, and qmail-queue's timeout."""
    from archive.quarantine import prepare_release, read_copy
    from compliance import quarantine as q
    from compliance.copystore import CopyError, MessageFacts
    from ingest.envelope import build_envelope
    from ingest.qmail_queue import run_qmail_queue
    from qscan.wiring.compliance import copy_store

    program = cfg.quarantine.qmail_queue or cfg.daemon.qmail_queue
    timeout = cfg.daemon.qmail_queue_timeout

    def prepare(facts: MessageFacts, stamp: q.Stamp, rcpts: Sequence[str] | None) -> q.Prepared:
        copies = copy_store(cfg).locate(facts)
        if not copies:
            raise CopyError(f"the quarantined copy of {facts.event_id} is missing from "
                            f"{cfg.quarantine_dir} (run `qscan verify`)")
        try:
            data = read_copy(copies[0].path)
        except OSError as exc:
            raise CopyError(f"{copies[0].path}: {exc.strerror or exc}") from exc
        return prepare_release(data, facts, stamp, rcpts)

    def queue(message: bytes, sender: str, rcpts: Sequence[str]) -> tuple[int, str | None]:
        envelope = build_envelope(sender.encode(), [r.encode() for r in rcpts])
        res = run_qmail_queue(program, message, envelope, timeout=timeout,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        return res.code, res.text

    return prepare, queue, timeout


@quarantine.command("release")
@click.argument("event_id")
@click.option("--reason", required=True, help="why it is released (header, log and SQL)")
@click.option("--to", "to", multiple=True, metavar="ADDR",
              help="deliver only to this address instead of the original recipients; repeat")
@click.option("--by", metavar="NAME", help="who asked for it, when not the unix user running this")
@click.option("--force", is_flag=True,
              help="release from viruses/ (a proven false positive); in a four-eyes folder: "
              "one step, release officers only")
@click.option("--retry-interrupted", is_flag=True,
              help="take over a release that was interrupted (after checking qmail's log)")
@click.pass_context
def release(ctx: click.Context, event_id: str, reason: str, to: tuple[str, ...],
            by: str | None, force: bool, retry_interrupted: bool) -> None:
    """Re-inject a quarantined message through the real qmail-queue.

    The message goes out exactly as it was first queued (its hash is checked), with
    the original envelope from the copy's envelope block - or only to the --to
    addresses - and an X-Qmail-Scanner-Diagnostics header on top saying who released
    it and why. The release is a message.released event on the log and a row in SQL;
    releasing the same message twice is refused, also when two administrators try at
    the same moment.

    Four-eyes: in the folders quarantine.four_eyes names (dlp and viruses by default)
    this only records a release request; a different login approves it with
    `qscan quarantine approve`. --force releases such mail in one step, for the logins
    in quarantine.release_officers only (recorded as forced). A virus outside four-eyes
    needs --force.

    \b
    Examples:
      qscan quarantine release 0192f1c0 --reason "invoice from a known supplier"
      qscan quarantine release 0192f1c0 --to it-security@example.com --reason analysis
      qscan quarantine release 0192f1c0 --by "Helpdesk: J. Smith" --reason "ticket 4711"
    """
    from archive.quarantine import check_address
    from compliance import quarantine as q
    from compliance.audit import NotFound
    from compliance.copystore import CopyError
    from qscan.wiring.compliance import log_appender

    cfg = _config(ctx)
    try:
        recipients = [check_address(a) for a in to] if to else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from exc
    prepare, queue, timeout = _release_io(cfg)
    four_eyes = _four_eyes(cfg)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            full = q.resolve(engine, event_id)
            try:
                ev = q.release(engine, append, full, actor=_actor(cfg, by), reason=reason,
                               host=cfg.hostname, prepare=prepare, queue=queue, to=recipients,
                               force=force, retry_interrupted=retry_interrupted,
                               stale_after=timedelta(seconds=timeout + 60),
                               operator=operator(), four_eyes=four_eyes)
            except q.ApprovalNeeded as needed:
                req = q.request_release(engine, append, full, actor=_actor(cfg, by),
                                        operator=operator(), reason=reason, host=cfg.hostname,
                                        four_eyes=four_eyes, to=recipients)
                click.echo(f"release of {full} requested (request {req.event_id}): "
                           f"quarantine/{needed.folder} needs a second operator; another login "
                           f"approves it with `qscan quarantine approve {full} --reason ...`")
                return
        except (NotFound, q.QuarantineError, CopyError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"released {full} from quarantine/{ev.folder} to {', '.join(ev.recipients)} "
               f"(release {ev.event_id})")


@quarantine.command("approve")
@click.argument("event_id")
@click.option("--reason", required=True, help="why the release is approved (log and SQL)")
@click.option("--by", metavar="NAME", help="who approves, when not the unix user running this")
@click.option("--retry-interrupted", is_flag=True,
              help="take over an approved release that was interrupted (after checking qmail's log)")
@click.pass_context
def approve(ctx: click.Context, event_id: str, reason: str, by: str | None,
            retry_interrupted: bool) -> None:
    """Approve a pending release request (four-eyes) and release the message.

    The approving login must differ from the requesting one. The release goes out as
    requested (original recipients, or the request's --to) and is recorded as a
    message.released event naming the request and both logins.

    \b
    Examples:
      qscan quarantine list --pending
      qscan quarantine approve 0192f1c0 --reason "card numbers are test data, ticket 4711"
    """
    from compliance import quarantine as q
    from compliance.audit import NotFound
    from compliance.copystore import CopyError
    from qscan.wiring.compliance import log_appender

    cfg = _config(ctx)
    prepare, queue, timeout = _release_io(cfg)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            full = q.resolve(engine, event_id)
            ev = q.approve(engine, append, full, actor=_actor(cfg, by), operator=operator(),
                           reason=reason, host=cfg.hostname, prepare=prepare, queue=queue,
                           four_eyes=_four_eyes(cfg), retry_interrupted=retry_interrupted,
                           stale_after=timedelta(seconds=timeout + 60))
        except (NotFound, q.QuarantineError, CopyError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"approved and released {full} from quarantine/{ev.folder} to "
               f"{', '.join(ev.recipients)} (release {ev.event_id}, requested by "
               f"{ev.requested_by})")


@quarantine.command("deny")
@click.argument("event_id")
@click.option("--reason", required=True, help="why it is denied or withdrawn (log and SQL)")
@click.option("--by", metavar="NAME", help="who denies, when not the unix user running this")
@click.pass_context
def deny(ctx: click.Context, event_id: str, reason: str, by: str | None) -> None:
    """Deny a pending release request (four-eyes), or withdraw your own.

    Nothing is released: the message stays quarantined, and the request is closed for
    good (a message has one request; a release officer may still --force it). Recorded
    as a release.denied event with the login that ran this: "withdrawn" when it is the
    requester's, "denied" otherwise.

    \b
    Examples:
      qscan quarantine list --pending
      qscan quarantine deny 0192f1c0 --reason "real card numbers, not test data"
    """
    from compliance import quarantine as q
    from compliance.audit import NotFound
    from qscan.wiring.compliance import log_appender

    cfg = _config(ctx)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            full = q.resolve(engine, event_id)
            ev = q.deny(engine, append, full, actor=_actor(cfg, by), operator=operator(),
                        reason=reason, host=cfg.hostname)
        except (NotFound, q.QuarantineError) as exc:
            raise click.ClickException(str(exc)) from exc
    what = "withdrew your" if ev.withdrawn else "denied the"
    click.echo(f"{what} release request {ev.request_id} for {full}: it stays quarantined "
               f"(denial {ev.event_id})")


# -- delete -------------------------------------------------------------------------
@quarantine.command("delete")
@click.argument("event_id")
@click.option("--reason", required=True, help="why (kept in the tombstone and on the log)")
@click.option("--by", metavar="NAME", help="who asked for it, when not the unix user running this")
@click.pass_context
def delete(ctx: click.Context, event_id: str, reason: str, by: str | None) -> None:
    """Delete a quarantined message's copy now, lawfully: a message.deleted event on the
    log and a chained tombstone in SQL. Refused while a legal hold covers the message.

    \b
    Example:
      qscan quarantine delete 0192f1c0 --reason "phishing, reported to abuse desk"
    """
    from compliance import quarantine as q
    from compliance.audit import NotFound
    from qscan.wiring.compliance import copy_store, log_appender

    cfg = _config(ctx)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            full = q.resolve(engine, event_id)
            facts = q.delete(engine, copy_store(cfg), append, full, actor=_actor(cfg, by),
                             host=cfg.hostname, reason=reason)
        except (NotFound, q.QuarantineError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"deleted {full} from {facts.location}")


# -- expire -------------------------------------------------------------------------
@quarantine.command("expire")
@click.option("--older-than", "older_than", type=Age(), default=None,
              help="age for every folder, e.g. 14d, 36h, 2w (default: quarantine.expire_days "
                   "with quarantine.folder_days overrides)")
@click.option("--folder", type=click.Choice(QUARANTINE_FOLDERS),
              help="expire this folder only")
@click.option("--dry-run", is_flag=True, help="only say what would be deleted")
@click.option("--now", "now", type=When(), hidden=True, help="pretend it is this time (tests)")
@output_options("text")
@click.pass_context
def expire(ctx: click.Context, older_than: timedelta | None, folder: str | None, dry_run: bool,
           now: datetime | None, as_json: bool) -> None:
    """Delete quarantined copies older than their folder's age (Qmail-Scanner's -z).

    Age is measured from the time the message was received (SQL), not the file's mtime.
    Each deletion is a message.deleted event and a chained tombstone; messages under a
    legal hold are kept. An --older-than on the command line applies to every folder;
    without it the config decides (quarantine.expire_days, 14 by default, and the
    per-folder quarantine.folder_days).

    \b
    Examples:
      qscan quarantine expire --dry-run
      qscan quarantine expire --older-than 30d --folder viruses
    """
    from compliance import quarantine as q
    from qscan.cli.compliance import _progress
    from qscan.wiring.compliance import copy_store, log_appender

    cfg = _config(ctx)
    if older_than is not None:
        ages = q.folder_ages(older_than, only=folder)
    else:
        ages = q.folder_ages(timedelta(days=cfg.quarantine.expire_days),
                             {f: timedelta(days=d) for f, d in cfg.quarantine.folder_days.items()},
                             only=folder)
    with sql_store(ctx) as engine, log_appender(cfg) as append, _progress() as bar:
        task = bar.add_task("expiring quarantine", total=None)
        report = q.expire(engine, copy_store(cfg), append, ages, actor=_actor(cfg, None),
                          host=cfg.hostname, dry_run=dry_run, now=now,
                          progress=lambda n: bar.advance(task, n))
    outcome = report.outcome
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "ages": report.ages,
                               "deleted": outcome.deleted, "held": outcome.held,
                               "finished": outcome.finished, "problems": outcome.problems,
                               "examples": outcome.examples}, indent=2))
    else:
        verb = "would delete" if dry_run else "deleted"
        for f, age in report.ages.items():
            n = outcome.deleted.get(f"quarantine-expiry/{f}", 0)
            click.echo(f"{f}: older than {age}: {verb} {n}")
        click.echo(f"{verb} {outcome.total} in all; {outcome.held} kept under legal hold"
                   + (f"; finished {outcome.finished} interrupted deletions"
                      if outcome.finished else ""))
        for problem in outcome.problems:
            click.echo(f"problem: {problem}", err=True)
    sys.exit(1 if outcome.problems else 0)
