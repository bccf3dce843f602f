"""``qscan dlp``: check a rules file, test a message against it, hunt through past mail.

``check`` and ``test`` send and record nothing. ``hunt`` reads the journal, the
Kafka topic or the archive maildir and records what the rules find in SQL
(``dlp_hunts`` / ``dlp_hunt_findings``), showing its progress on the terminal.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qscan.cli.db import When
from qscan.cli.output import output_options
from scanners.direction import DIRECTIONS

if TYPE_CHECKING:
    from compliance.dlp_hunts import HuntStore
    from compliance.hunt import HuntStats
    from qscan.config import Config
    from scanners.dlp.engine import DlpEngine


def _config(ctx: click.Context) -> Config:
    """The configured values; built-in defaults when no config file exists at all."""
    path = (ctx.find_root().obj or {}).get("config_path")
    if path and not Path(path).exists():
        from qscan.config import Config

        click.echo(f"(no config file at {path}: using built-in defaults)", err=True)
        return Config()
    cfg: Config = ctx.find_root().obj["config"]()
    return cfg


def _engine(cfg: Config, rules: str | None) -> tuple[DlpEngine, Path]:
    from qscan.config import ConfigError
    from qscan.wiring.dlp import dlp_engine
    from scanners.dlp.rules import DlpRulesError

    path = Path(rules) if rules else cfg.dlp.rules
    if path is None:
        raise click.ClickException("no rules file given (--rules) and dlp.rules is not set")
    try:
        return dlp_engine(cfg, path), path
    except (DlpRulesError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def dlp() -> None:
    """Data loss prevention: check rules, test a message, hunt through past mail (docs/dlp.md)."""


@dlp.command("check")
@click.argument("rules", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def check(ctx: click.Context, rules: str | None) -> None:
    """Load a DLP rules file (default: dlp.rules) and list its rules; exit 1 on errors."""
    from scanners.dlp.rules import DlpRulesError, load_rules

    cfg = _config(ctx)
    path = Path(rules) if rules else cfg.dlp.rules
    if path is None:
        raise click.ClickException("no rules file given and dlp.rules is not set")
    try:
        policy = load_rules(path)
    except DlpRulesError as exc:
        for line in exc.problems:
            click.echo(line)
        sys.exit(1)
    for r in policy.rules:
        scope = r.direction if r.direction != "any" else "any direction"
        click.echo(f"{r.id}: {', '.join(r.detectors)} >= {r.min_count} at {r.min_confidence.label}+, "
                   f"{scope} -> {r.action}{' + notify' if r.notify and r.action != 'notify' else ''}"
                   f"{' (encrypted: allow)' if r.allow_encrypted else ''}")
    click.echo(f"encrypted mail ({policy.encrypted.direction}): {policy.encrypted.action}")
    for name, det in policy.detectors.items():
        if getattr(det, "clear_evidence", False):
            click.echo(f"note: detector {name!r} records its dictionary words in clear "
                       "(evidence = \"clear\"): they go to events, SQL and notifications")
    click.echo(f"{path}: OK, {len(policy.rules)} rules, {len(policy.detectors)} detectors")


@dlp.command("test")
@click.argument("message", type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", type=click.Path(exists=True, dir_okay=False), help="default: dlp.rules")
@click.option("--sender", default="", help="envelope sender")
@click.option("--recipient", "recipients", multiple=True, help="envelope recipient (repeatable)")
@click.option("--outbound", is_flag=True, help="as if RELAYCLIENT were set (an authorised sender)")
@output_options("text")
@click.pass_context
def test(ctx: click.Context, message: str, rules: str | None, sender: str, recipients: tuple[str, ...],
         outbound: bool, as_json: bool) -> None:
    """Run the DLP rules on MESSAGE (a .eml file): what was found, which rules fire, the action.
    Only masked values are printed."""
    from scanners.dlp.engine import MessageFacts
    from scanners.dlp.scanner import results_for

    engine, _ = _engine(_config(ctx), rules)
    raw = Path(message).read_bytes()
    msg = BytesParser(policy=email_policy.default).parsebytes(raw)
    ev = engine.evaluate(msg, MessageFacts(sender, list(recipients) or ["someone@example.org"], outbound))
    found = {name: [{"masked": h.masked, "confidence": h.confidence.label, "label": h.label,
                     "locations": list(locs)} for h, locs in hits]
             for name, hits in ev.found.items()}
    if as_json:
        click.echo(json.dumps({"action": ev.action, "findings": ev.records(), "found": found,
                               "encrypted": ev.encrypted, "notes": ev.notes, "chars": ev.chars,
                               "inspected": ev.inspected, "ms": round(ev.duration_ms, 2)}, indent=2))
        return
    if not ev.inspected:
        click.echo("no rule applies to this message (direction, domains): nothing inspected")
        return
    click.echo(f"inspected {ev.chars} characters in {ev.segments} segments ({ev.duration_ms:.1f} ms)")
    for name, hits in found.items():
        for h in hits:
            click.echo(f"  {name}: {h['masked']} ({h['confidence']}) in {', '.join(h['locations'])}")
    for note in ev.notes:
        click.echo(f"  note: {note}")
    if ev.encrypted:
        click.echo(f"  encrypted: {', '.join(ev.encrypted)}")
    for r in results_for(ev):
        click.echo(f"rule {r.name}: {r.detail}")
    click.echo(f"action: {ev.action or 'none (no rule fired)'}")


class _GracefulStop:
    """The first Ctrl-C (SIGINT) or SIGTERM asks the hunt to stop after the current message - its
    findings are written and the hunt row says 'interrupted'; a second Ctrl-C stops at once."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("stopping after this message (findings so far are kept); Ctrl-C again to "
                           "stop at once", style="yellow")

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _finish(store: HuntStore | None, stats: HuntStats) -> int | str:
    """Close the hunt's row (no store: a dry run) and close the store; the findings recorded
    (counted in SQL), or why the row could not be closed."""
    if store is None:
        return stats.findings
    try:
        return store.finish(stats.hunt_id, state=stats.state, examined=stats.examined,
                            matched=stats.matched, unreadable=stats.unreadable, error=stats.error or None)
    except Exception as exc:  # the database itself went away: say so, keep the first error
        return f"unknown (the hunt row could not be updated: {type(exc).__name__}: {exc})"
    finally:
        store.close()


@dlp.command("hunt")
@click.option("--rules", type=click.Path(exists=True, dir_okay=False), required=True,
              help="the DLP rules to apply to past mail")
@click.option("--source", type=click.Choice(["journal", "archive", "kafka"]), default="journal",
              show_default=True, help="where past mail is read from")
@click.option("--since", type=When(), help="received at or after (2026-11-25, 2026-11-25T10:00, 7d)")
@click.option("--until", type=When(end=True), help="received before (a date includes that day)")
@click.option("--sender", help="envelope sender ('*' allowed; alice = alice@*)")
@click.option("--recipient", help="an envelope recipient ('*' allowed)")
@click.option("--domain", help="the sender's or a recipient's domain ('*' allowed)")
@click.option("--direction", type=click.Choice(DIRECTIONS),
              help="outbound = RELAYCLIENT set; local = injected on the host")
@click.option("--partition", "partitions", metavar="0,1,...",
              help="kafka: only these partitions, e.g. 0,1 (default: all)")
@click.option("--partitions", "partitions", hidden=True)  # the old name of --partition
@click.option("--dry-run", is_flag=True, help="report only: record nothing in SQL")
@output_options("text")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on a terminal)")
@click.pass_context
def hunt(ctx: click.Context, rules: str, source: str, since: datetime | None, until: datetime | None,
         sender: str | None, recipient: str | None, domain: str | None, direction: str | None,
         partitions: str | None, dry_run: bool, as_json: bool, progress: bool | None) -> None:
    """Re-evaluate DLP rules over past mail and record the findings in SQL.

    \b
    qscan dlp hunt --rules dlp.toml --since 30d --direction outbound
    qscan dlp hunt --rules dlp.toml --source archive --domain example.org
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from archive.hunt import archive_source
    from compliance.db import SchemaMissing
    from compliance.dlp_hunts import HuntStore
    from compliance.hunt import (
        HuntFailed,
        HuntFilter,
        HuntStats,
        actor,
        dumps,
        error_text,
        journal_source,
        kafka_source,
        query_of,
        rules_digest,
        run_hunt,
    )
    from ingest.ids import uuid7

    cfg = _config(ctx)
    engine, rules_path = _engine(cfg, rules)
    filt = HuntFilter(since=since, until=until, sender=sender, recipient=recipient, domain=domain,
                      direction=direction)
    total: int | None
    if source == "journal":
        if not cfg.journal_path.exists():
            raise click.ClickException(f"no journal at {cfg.journal_path}")
        total, items = journal_source(cfg.journal_path)
    elif source == "archive":
        total, items = archive_source(cfg.archive_maildir, cfg.quarantine_dir, filt)
    else:
        from qscan.wiring.pipeline import kafka_settings

        try:
            settings = kafka_settings(cfg)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        parts = [int(p) for p in partitions.split(",")] if partitions else None
        total, items = kafka_source(settings, parts)
    store = None
    hunt_id = str(uuid7())
    if not dry_run:
        try:
            store = HuntStore(cfg.sql_url)
        except SchemaMissing as exc:
            raise click.ClickException(str(exc)) from exc
        store.start(hunt_id, actor=actor(), source=source, rules_path=str(rules_path.resolve()),
                    rules_sha256=rules_digest(rules_path), query=query_of(filt, source))
    console = Console(stderr=True)
    from qscan.cli.progress import progress_wanted

    show = progress_wanted() if progress is None else progress  # a terminal, and no -q
    bar = Progress(TextColumn("dlp hunt"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[hits]}"), TimeElapsedColumn(), console=console,
                   disable=not show, transient=False)
    latest = HuntStats(hunt_id)  # the totals so far, for a hunt stopped outside run_hunt
    stop = _GracefulStop(console)
    stats: HuntStats
    try:
        with bar, stop:
            task = bar.add_task("hunt", total=total, hits="")

            def advance(current: HuntStats) -> None:
                nonlocal latest
                latest = current
                bar.update(task, advance=1, hits=f"{current.matched} matched")

            stats = run_hunt(engine, items, store, filt=filt, hunt_id=hunt_id, advance=advance,
                             stopped=lambda: stop.requested)
    except HuntFailed as exc:
        failed = exc.stats
        written = _finish(store, failed)
        raise click.ClickException(
            f"hunt {hunt_id} failed after {failed.examined} messages ({written} findings recorded"
            f"{'; state failed in dlp_hunts' if store else ''}): {failed.error}") from None
    except KeyboardInterrupt:  # a second Ctrl-C: the row is closed with what reached SQL
        latest.state = "interrupted"
        stopped_at = _finish(store, latest)
        click.echo(f"hunt {hunt_id} stopped at once after {latest.examined} messages: "
                   f"{stopped_at} findings recorded; state interrupted in dlp_hunts", err=True)
        ctx.exit(130)
    except Exception as exc:  # outside the hunt loop (the progress display, ...)
        latest.state, latest.error = "failed", error_text(exc)
        _finish(store, latest)
        raise click.ClickException(f"hunt {hunt_id} failed: {latest.error}") from exc
    recorded = _finish(store, stats)
    if isinstance(recorded, int):
        stats.findings = recorded
    if as_json:
        click.echo(dumps(stats))
    else:
        click.echo(f"hunt {hunt_id}{' (dry run, nothing recorded)' if dry_run else ''}: "
                   f"{stats.examined} messages examined, {stats.matched} matched, {stats.findings} findings, "
                   f"{stats.unreadable} unreadable, {stats.skipped} outside the selection")
        for rule, n in sorted(stats.by_rule.items()):
            click.echo(f"  {rule}: {n} messages")
        if not dry_run:
            click.echo(f"findings: SELECT * FROM dlp_hunt_findings WHERE hunt_id = '{hunt_id}'")
    if stats.state == "interrupted":
        click.echo(f"hunt {hunt_id} interrupted after {stats.examined} messages: {stats.matched} matched, "
                   f"{recorded} findings recorded{'; state interrupted in dlp_hunts' if store else ''}",
                   err=True)
        ctx.exit(130)
