"""``qscan verify``, ``qscan retention``, ``qscan hold`` and ``qscan export``.

The commands auditors and lawyers run (docs/compliance.md). Each prints what
it did in words, exits non-zero when something is wrong (1: tampering found or
an export that does not verify; 2: a bad option; 3: the SQL store could not be
used - bad URL, missing driver, unreachable, no schema), and never leaves anything
half-written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qscan import __version__
from qscan.cli.db import When, filter_options, sql_store, take_filters
from qscan.cli.output import Column, emit_rows, output_options

if TYPE_CHECKING:
    from rich.progress import Progress

    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


def printable(text: str) -> str:
    """``text`` with control characters escaped (file names come from the production)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _progress() -> Progress:
    from qscan.cli.progress import progress_bar

    return progress_bar()


# -- verify -----------------------------------------------------------------------
@click.command()
@click.option("--no-files", is_flag=True, help="skip the archive and quarantine copies")
@click.option("--no-log", is_flag=True, help="skip the cross-check with the journal")
@click.option("--anchor", "anchor_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="anchors the chains must still pass through, besides the configured witness "
              "file and the journal's: a --save-anchor file, a witness file or a summary log; repeat")
@click.option("--anchor-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ed25519 public key the anchors must be signed with (default: anchor.public_key)")
@click.option("--save-anchor", type=click.Path(dir_okay=False, path_type=Path),
              help="write the chain heads to FILE (keep it where the database admins cannot); "
              "refused when verify finds problems")
@output_options("text")
@click.pass_context
def verify(ctx: click.Context, no_files: bool, no_log: bool, anchor_files: tuple[Path, ...],
           anchor_key: Path | None, save_anchor: Path | None, as_json: bool) -> None:
    """Prove the summaries and stored copies are unaltered: walk every host's hash chain,
    check the rows against it, every archive/quarantine file against its row, and the
    journal against SQL (and the holds and exports against their events). Exit code 1 when
    anything was altered, inserted or deleted; 3 when the database cannot be used.

    \b
    Examples:
      qscan verify
      qscan verify --save-anchor /mnt/worm/qscan-anchor-$(date +%F).json
      qscan verify --anchor /mnt/worm/qscan-anchor-2026-11-01.json --no-files
    """
    cfg = _config(ctx)
    with sql_store(ctx) as engine, _progress() as bar:
        report = run_verify(cfg, engine, bar, no_files=no_files, no_log=no_log,
                            anchor_files=anchor_files, anchor_key=anchor_key)
    if save_anchor is not None and report.ok:
        save_anchor.write_text(json.dumps({"heads": report.heads}, indent=2) + "\n")
    elif save_anchor is not None:
        click.echo(f"--save-anchor: not written ({save_anchor}): an anchor must only record "
                   "heads that verified", err=True)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for problem in report.problems:
            click.echo(problem.line())
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        heads = ", ".join(f"{h}#{x['seq']}" for h, x in sorted(report.heads.items())) or "none"
        verdict = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
        click.echo(f"{verdict}: {report.entries} chain entries ({heads}), {report.files} stored "
                   f"copies, {report.log_events} journal events checked", err=True)
    sys.exit(0 if report.ok else 1)


def run_verify(cfg: Config, engine: Any, bar: Progress, *, no_files: bool = False,
               no_log: bool = False, anchor_files: tuple[Path, ...] = (),
               anchor_key: Path | None = None) -> Any:
    """What `qscan verify` checks, as a report (compliance.verify.Report); the web console's
    verify page runs this too. Raises click.UsageError/ClickException for unusable anchors."""
    from compliance import verify as v
    from ingest.journal import Journal
    from ingest.log import JournalReader
    from qscan.wiring.compliance import copy_store, todays_rule

    stages = bar.add_task("verify: hash chains", total=2 + (not no_log) + (not no_files))
    report = v.verify_chain(engine)
    journal = None
    if not no_log and cfg.journal_path.exists():
        journal = Journal(cfg.journal_path, readonly=True)
    try:
        topic = not no_log and cfg.log.kafka is not None and cfg.consumers.source == "kafka"
        bar.update(stages, advance=1, description="verify: anchors")
        anchored = _check_anchors(cfg, engine, journal, anchor_files, anchor_key, topic)
        report.merge(anchored)
        position, waiting = _summaries_coverage(cfg, engine, journal, report)
        bar.update(stages, advance=1, description="verify: journal against SQL")
        if journal is not None:
            reader = JournalReader(journal)
            report.merge(v.verify_release_events(
                engine, _release_events(reader), local_host=cfg.hostname,
                since=_journal_since(journal)))
            events = bar.add_task("  journal events", total=journal.count())
            records = _skipping(v.journal_records(journal, cfg.hostname, report), waiting)
            report.merge(v.verify_log(engine, _counted(records, bar, events),
                                      position=position, local_host=cfg.hostname,
                                      raw=reader.raw))
        if not no_log:
            bar.update(stages, advance=1, description="verify: stored copies")
        if not no_files:
            known = _journal_ids(journal, position) | waiting
            report.merge(v.verify_copies(engine, copy_store(cfg), archived=todays_rule(cfg),
                                         pending=lambda event_id: event_id in known))
            bar.update(stages, advance=1)
    finally:
        if journal is not None:
            journal.close()
    return report


def _counted(batches: Any, bar: Progress, task: Any) -> Any:
    """The batches, each advancing ``task`` of ``bar`` by its size once checked."""
    for batch in batches:
        yield batch
        bar.advance(task, len(batch))


def _skipping(batches: Any, skip: set[str]) -> Any:
    """The batches without the events in ``skip`` (still waiting in Kafka)."""
    for batch in batches:
        yield [r for r in batch if r.event.event_id not in skip] if skip else batch


def _summaries_coverage(cfg: Config, engine: Any, journal: Any, report: Any) -> tuple[int, set[str]]:
    """(journal position up to which every event must be in SQL, ids of events below it that
    are still waiting in the Kafka topic for the summaries consumer).

    The summaries consumer's positions are found by what they are (compliance.positions): a
    journal sequence number, or one next offset per partition of the Kafka topic. A
    Kafka-fed consumer covers every event the relay has passed (the relay's journal position)
    except those still at or after its offsets in the topic: those are read from the broker.
    If the broker cannot be read, nothing is excused: a relayed event missing from SQL is
    reported (the note says why)."""
    from compliance.positions import coverage

    k = cfg.log.kafka
    cov = coverage(engine, "summaries")
    source = cov.source(cfg.consumers.source, k.topic if k is not None else None)
    if source != "kafka" and not (source is None and cfg.consumers.source == "kafka"):
        return cov.journal or 0, set()
    if k is None or journal is None:
        if k is None:
            report.notes.append("the summaries consumer reads Kafka but [log.kafka] is not configured: "
                                "the journal was not compared with SQL")
        return 0, set()
    from ingest.kafka_log import RELAY_NAME
    from ingest.kafka_source import waiting_ids
    from qscan.wiring.pipeline import kafka_settings

    relayed = journal.get_position(RELAY_NAME) or 0
    offsets = cov.kafka_for(k.topic)
    try:
        waiting = waiting_ids(kafka_settings(cfg), offsets)
    except Exception as exc:  # the broker down or the topic gone: excuse nothing
        report.notes.append(f"the Kafka topic {k.topic} could not be read ({type(exc).__name__}: {exc}): "
                            "every relayed event must be in SQL, none is excused as still in the topic")
        waiting = set()
    report.notes.append(f"summaries reads Kafka topic {k.topic} (partitions "
                        + (" ".join(f"{p}:{o}" for p, o in sorted(offsets.items())) or "none stored")
                        + f"); journal checked up to the relay's position #{relayed}, "
                        f"{len(waiting)} relayed events still waiting in the topic")
    return relayed, waiting


def _check_anchors(cfg: Config, engine: Any, journal: Any, files: tuple[Path, ...],
                   key_path: Path | None, topic: bool) -> Any:
    """The journal chain walks (the local journal; with ``topic``, every host's from the
    Kafka topic) and every anchor (witness file, journal, topic, --anchor) checked."""
    from compliance import anchor as a
    from compliance import verify as v
    from compliance.journal_chain import journal_start, walk_journal
    from ingest.event import ChainAnchored
    from ingest.log import JournalReader, LogRecord

    try:
        anchors = list(a.iter_sources(cfg.anchor.witness_file, files))
        key_path = key_path or cfg.anchor.public_key
        key = a.VerifyKey(key_path) if key_path else None
    except a.AnchorError as exc:
        raise click.UsageError(str(exc)) from exc
    report = v.Report()
    journals = {}
    walked = None
    if topic:
        from kafka.errors import KafkaError

        from compliance.journal_chain import read_topic
        from ingest.kafka_source import scan_records
        from qscan.wiring.pipeline import kafka_settings

        try:
            walked, found = read_topic(scan_records(kafka_settings(cfg), name="verify"))
        except KafkaError as exc:
            raise click.ClickException(f"cannot read the Kafka topic to walk the hosts' "
                                       f"journal chains: {exc} (--no-log skips it)") from exc
        for where, doc in found:
            try:
                anchors.append(a.parse_record(doc, f"kafka {where}"))
            except a.AnchorError as exc:
                report.problems.append(v.Problem("anchor", f"kafka {where}", None, str(exc)))
    if journal is not None:
        for item in JournalReader(journal).scan(types={"chain.anchored"}):
            if isinstance(item, LogRecord) and isinstance(item.event, ChainAnchored):
                where = f"journal #{item.position}"
                try:
                    anchors.append(a.parse_record({**item.event.anchor,
                                                   "trail": item.event.trail}, where))
                except a.AnchorError as exc:
                    report.problems.append(v.Problem("anchor", where, item.event.event_id,
                                                     str(exc)))
        walk = walk_journal(journal, cfg.hostname,
                            keep=a.seqs_of_interest(anchors, "journal", cfg.hostname))
        report.merge(v.verify_journal_chain(walk))
        pruned = journal_start(journal).pruned
        journals[cfg.hostname] = a.JournalState(walk.links, pruned[0] if pruned else 0, walk.ids)
    for host in walked.hosts() if walked is not None else []:
        if host in journals or walked is None:  # this host's own journal: walked from its file
            continue
        tw = walked.finish(host, keep=a.seqs_of_interest(anchors, "journal", host))
        report.merge(v.verify_journal_chain(tw))
        # the topic's retention drops the oldest records: anchors before them are not comparable
        journals[host] = a.JournalState(tw.links, (tw.first or 1) - 1, tw.ids)
    report.merge(v.verify_anchors(a.check(anchors, engine=engine, journals=journals, key=key)))
    return report


def _release_events(reader: Any) -> Any:
    from ingest.event import MessageReleased, ReleaseDenied, ReleaseRequested
    from ingest.log import LogRecord

    for item in reader.scan(types={"message.released", "release.requested", "release.denied"}):
        if isinstance(item, LogRecord) and isinstance(item.event, (MessageReleased,
                                                                   ReleaseRequested,
                                                                   ReleaseDenied)):
            yield item.event


def _journal_since(journal: Any) -> Any:
    """The time from which the journal still holds every event (None: it holds none)."""
    from datetime import UTC, datetime

    first = journal.read(0, 1, with_raw=False)
    return datetime.fromtimestamp(first[0].appended, UTC) if first else None


def _journal_ids(journal: Any, after: int) -> set[str]:
    """Events on the log the summaries consumer has not reached (their files may exist)."""
    if journal is None:
        return set()
    ids: set[str] = set()
    pos = after
    while True:
        entries = journal.read(pos, 1000, with_raw=False)
        if not entries:
            return ids
        ids.update(e.event_id for e in entries)
        pos = entries[-1].seq


def _archive_judge(cfg: Config) -> Callable[[str, str, list[str]], bool]:
    """Whether a message should have an archive copy, by its recorded decision; refuses
    (exit 1) when the decision record cannot be read."""
    from compliance.copystore import CopyError
    from qscan.wiring.compliance import archived

    try:
        return archived(cfg)
    except CopyError as exc:
        raise click.ClickException(f"the archive decisions cannot be read ({exc}): run "
                                   "`qscan verify`") from exc


# -- retention --------------------------------------------------------------------
@click.group()
def retention() -> None:
    """Delete stored copies past their retention, lawfully (tombstones; holds win).

    \b
    Examples:
      qscan retention show
      qscan retention apply --dry-run
      qscan retention apply            # e.g. nightly from cron or a systemd timer
    """


@retention.command("show")
@click.pass_context
def retention_show(ctx: click.Context) -> None:
    """Print the rules in the order they are tried."""
    p = _config(ctx).retention  # [retention] is compliance.retention.Policy, checked on load
    for rule in p.rules:
        conds = [f"{k}={getattr(rule, k)}" for k in ("domain", "address", "direction", "verdict")
                 if getattr(rule, k)]
        click.echo(f"{rule.name}: {' '.join(conds) or 'everything'} -> "
                   f"{'forever' if rule.days is None else f'{rule.days} days'}")
    click.echo(f"default: {'forever' if p.default_days is None else f'{p.default_days} days'}")


@retention.command("apply")
@click.option("--dry-run", is_flag=True, help="only say what would be deleted")
@click.option("--now", "now", type=When(), hidden=True, help="pretend it is this time (tests)")
@output_options("text")
@click.pass_context
def retention_apply(ctx: click.Context, dry_run: bool, now: Any, as_json: bool) -> None:
    """Delete the archive and quarantine copies the rules say have expired.

    Each deletion is a message.deleted event on the log and a chained tombstone
    in SQL; messages under a legal hold are skipped; a copy that does not match
    its row is never deleted (it is reported; run `qscan verify`).
    """
    from compliance import retention as r
    from qscan.wiring.compliance import actor, copy_store, log_appender

    cfg = _config(ctx)
    p = cfg.retention
    judge = _archive_judge(cfg)
    with sql_store(ctx) as engine, log_appender(cfg) as append, _progress() as bar:
        task = bar.add_task("retention: checked" if dry_run else "retention: deleting", total=None)
        outcome = r.apply(engine, copy_store(cfg), append, p, archived=judge,
                          actor=actor(cfg), host=cfg.hostname, dry_run=dry_run, now=now,
                          progress=lambda n: bar.advance(task, n))
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "deleted": outcome.deleted,
                               "held": outcome.held, "finished": outcome.finished,
                               "problems": outcome.problems, "examples": outcome.examples},
                              indent=2))
    else:
        verb = "would delete" if dry_run else "deleted"
        for rule, n in sorted(outcome.deleted.items()):
            click.echo(f"{rule}: {verb} {n} stored copies")
        click.echo(f"{verb} {outcome.total} in all; {outcome.held} kept under legal hold"
                   + (f"; finished {outcome.finished} interrupted deletions"
                      if outcome.finished else ""))
        for problem in outcome.problems:
            click.echo(f"problem: {problem}", err=True)
    sys.exit(1 if outcome.problems else 0)


# -- holds ------------------------------------------------------------------------
@click.group()
def hold() -> None:
    """Legal holds: matters whose mail retention and expiry must not delete.

    \b
    Examples:
      qscan hold create "Acme v. Example" --custodian ceo@example.com \\
          --custodian '*@acme.test' --since 2025-01-01 --reason "litigation notice 2026-11-20"
      qscan hold create "Falcon" --query '"wire transfer" AND acme' --since 2026-01-01 \\
          --reason "subpoena 2026-12-01"
      qscan hold list
      qscan hold show Falcon --rerun
      qscan hold release "Acme v. Example" --reason "case settled"
    """


@hold.command("create")
@click.argument("matter")
@click.option("--custodian", "custodians", multiple=True, metavar="ADDR",
              help="an address whose mail (sent or received) is held; repeat; '*' allowed")
@click.option("--query", "search", metavar="QUERY",
              help="hold exactly what this discovery search finds (docs/discovery.md); "
              "with --since/--until/--sender/--recipient only")
@click.option("--reason", required=True, help="why (kept with the hold, on the log and in SQL)")
@filter_options
@click.pass_context
def hold_create(ctx: click.Context, matter: str, custodians: tuple[str, ...], search: str | None,
                reason: str, **kwargs: Any) -> None:
    """Put MATTER on hold: the custodians' mail, within --since/--until, narrowed by any
    further filters. Mail arriving later is covered as well.

    With --query, the messages a discovery search finds (every page, every copy) are
    held, by id, as found now; the search and its results are recorded with the hold,
    and `qscan hold show MATTER --rerun` shows what it would find today."""
    from compliance import holds
    from qscan.wiring.compliance import actor, log_appender

    filters = take_filters(kwargs)
    cfg = _config(ctx)
    chosen = None
    if search is not None:
        chosen = _hold_selection(ctx, cfg, matter, search, custodians, filters)
        spec_args: dict[str, Any] = {"discovery": chosen.record()}
    else:
        spec_args = {"custodians": custodians, "since": filters.since, "until": filters.until,
                     "query": type(filters)(**{**filters.__dict__, "since": None,
                                               "until": None})}
    try:
        spec = holds.HoldSpec(matter=matter, **spec_args)
    except holds.HoldError as exc:
        raise click.UsageError(str(exc)) from exc
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            ev = holds.create(engine, append, spec, reason=reason, actor=actor(cfg),
                              host=cfg.hostname, items=chosen.items() if chosen else ())
        except holds.HoldError as exc:
            raise click.ClickException(str(exc)) from exc
        covered = [h for h in holds.listing(engine) if h["hold_id"] == ev.event_id]
    n = covered[0]["messages"] if covered else 0
    found = (f" ({chosen.counts.total} found by the query, {len(chosen.matches)} copies held "
             "by id)" if chosen else "")
    click.echo(f"hold {ev.event_id} on {matter!r}: {n} stored messages covered now{found}")


def _hold_selection(ctx: click.Context, cfg: Config, matter: str, search: str,
                    custodians: tuple[str, ...], filters: Any) -> Any:
    """The discovery search of ``hold create --query``: its filters are --since, --until
    and exact --sender/--recipient; custodians and the other audit filters are refused
    (the hold is exactly what the recorded search found)."""
    from compliance.discovery.search import Filters
    from qscan.cli.discover import choose

    others = sorted(k for k, v in filters.as_json().items()
                    if k not in ("since", "until", "sender", "recipient"))
    if custodians or others:
        given = ["--custodian"] if custodians else []
        given += [f"--{k.replace('_', '-')}" for k in others]
        raise click.UsageError(f"--query takes --since, --until, --sender and --recipient "
                               f"only, not {', '.join(given)}: a hold by query holds exactly "
                               "what the search finds")
    for name in ("sender", "recipient"):
        value = getattr(filters, name)
        if value is not None and ("*" in value or "@" not in value):
            raise click.UsageError(f"with --query, --{name} is one exact address (as in "
                                   "`qscan discover search`), not a pattern")
    return choose(ctx, cfg, search, Filters(since=filters.since, until=filters.until,
                                            sender=filters.sender, recipient=filters.recipient),
                  purpose=f"hold {matter}")


HOLD_COLUMNS = (  # drop: which go first on a narrow terminal (0: never)
    Column("matter", min_width=10), Column("hold_id", "id", ident=True, drop=4),
    Column("state", drop=5), Column("messages", right=True),
    Column("custodians", min_width=10, drop=2), Column("dates", min_width=10, drop=3),
    Column("filters", min_width=10, drop=1), Column("created_at", "created (UTC)", drop=6),
    Column("reason", min_width=10, drop=7),
)


def _hold_cell(row: dict[str, Any], col: Column) -> Any:
    from compliance.holds import query_text

    if col.key == "state":
        return f"released {row['released_at'][:10]}" if row["released_at"] else "active"
    if col.key == "dates":
        if not row["since"] and not row["until"]:
            return "any time"
        return f"{(row['since'] or '')[:10] or '…'} to {(row['until'] or '')[:10] or '…'}"
    if col.key == "filters":
        if row.get("discovery"):
            return f"--query {json.dumps(row['discovery']['canonical'], ensure_ascii=False)}"
        return query_text(row["query"])
    if col.key == "created_at":
        return f"{row['created_at'][:16].replace('T', ' ')} {row['created_by']}"
    return row.get(col.key)


@hold.command("list")
@click.option("--all", "include_released", is_flag=True, help="released holds too")
@output_options()
@click.pass_context
def hold_list(ctx: click.Context, include_released: bool, fmt: str, wide: bool) -> None:
    """Active holds (with --all, released ones too) and how many messages each covers.

    The table shows a hold's filters as the options that would select the same mail
    (nothing when it holds custodians' mail alone); --format json has every field."""
    from compliance import holds

    with sql_store(ctx) as engine:
        rows = holds.listing(engine, include_released=include_released)
    emit_rows(rows, HOLD_COLUMNS, fmt, wide=wide, cells=_hold_cell,
              empty="no holds" if include_released else "no active holds")


@hold.command("show")
@click.argument("matter")
@click.option("--rerun", is_flag=True,
              help="a hold by query: run its search again and list what changed since")
@output_options("text")
@click.pass_context
def hold_show(ctx: click.Context, matter: str, rerun: bool, as_json: bool) -> None:
    """One hold (by matter, id, or its first 8+ characters): what it covers and why; for a
    hold by query, the search as recorded and the messages it holds.

    With --rerun, the recorded search (its canonical query, its filters) runs again over
    today's index and the messages it finds that the hold does not have (mail indexed
    since), and the held messages it no longer finds (deleted after a release, or no longer
    indexed), are listed. The hold itself does not change; the rerun is recorded as a
    discovery.searched event."""
    from compliance import holds

    cfg = _config(ctx)
    with sql_store(ctx) as engine:
        try:
            doc = holds.show(engine, matter)
        except holds.HoldError as exc:
            raise click.ClickException(str(exc)) from exc
        again = _rerun(ctx, cfg, engine, doc["hold_id"]) if rerun else None
    if again is not None:
        change = again.change
        doc["rerun"] = {
            "total": change.now.counts.total, "copies": len(change.now.matches),
            "added": [{"event_id": m.event_id, "sha256": m.sha256,
                       "received_at": m.received_at.isoformat()} for m in change.added],
            "removed": [{"event_id": i.event_id, "sha256": i.sha256,
                         "deleted_at": (again.deleted[i.event_id].isoformat()
                                        if i.event_id in again.deleted else None)}
                        for i in change.removed]}
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _show_hold(doc)


def _rerun(ctx: click.Context, cfg: Config, engine: Any, hold_id: str) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from compliance import holds
    from compliance.discovery.search import searched_event
    from qscan.cli.discover import open_index
    from qscan.wiring.compliance import actor, log_appender

    index = open_index(ctx, cfg)
    try:
        again = holds.rerun(engine, index, hold_id)
    except holds.HoldError as exc:
        raise click.ClickException(str(exc)) from exc
    except SQLAlchemyError as exc:
        raise click.ClickException(f"discovery search failed: {exc}") from exc
    finally:
        index.close()
    now = again.change.now
    with log_appender(cfg) as append:
        append(searched_event(now.query, now.tree, now.filters, now.counts, actor=actor(cfg),
                              host=cfg.hostname, purpose=f"rerun of hold {again.matter}"))
    return again


def _show_hold(doc: dict[str, Any]) -> None:
    state = (f"released {doc['released_at'][:16].replace('T', ' ')} by {doc['released_by']}: "
             f"{printable(doc['release_reason'] or '')}" if doc["released_at"] else "active")
    click.echo(f"hold {doc['hold_id']} on {printable(doc['matter'])!r} ({state})")
    click.echo(f"  created {doc['created_at'][:16].replace('T', ' ')} UTC by "
               f"{doc['created_by']}: {printable(doc['reason'])}")
    found = doc.get("discovery")
    if found:
        filters = " ".join(f"--{k} {v}" for k, v in found["filters"].items())
        click.echo(f"  query      {printable(found['query'])}")
        click.echo(f"  canonical  {printable(found['canonical'])}")
        click.echo(f"  filters    {filters or 'none'}")
        more = f", {found['incomplete']} not fully indexed" if found["incomplete"] else ""
        click.echo(f"  found      {found['total']} messages{more}; {len(doc['items'])} copies "
                   "held by id")
    else:
        from compliance.holds import query_text

        dates = f"{(doc['since'] or '')[:10] or '…'} to {(doc['until'] or '')[:10] or '…'}"
        click.echo(f"  custodians {', '.join(doc['custodians']) or 'none'}")
        click.echo(f"  dates      {dates if doc['since'] or doc['until'] else 'any time'}")
        click.echo(f"  filters    {query_text(doc['query']) or 'none'}")
    click.echo(f"  covers     {doc['messages']} stored messages now")
    again = doc.get("rerun")
    if again is None:
        return
    click.echo(f"\nrerun: {again['total']} messages now ({again['copies']} copies); "
               f"{len(again['added'])} added, {len(again['removed'])} removed since the hold")
    for m in again["added"]:
        click.echo(f"  + {m['event_id']}  {m['received_at'][:16].replace('T', ' ')}  "
                   f"sha256 {m['sha256'][:16]}  (not held)")
    for m in again["removed"]:
        why = (f"deleted {m['deleted_at'][:16].replace('T', ' ')}" if m["deleted_at"]
               else "no longer found")
        click.echo(f"  - {m['event_id']}  sha256 {m['sha256'][:16]}  ({why})")


@hold.command("release")
@click.argument("matter")
@click.option("--reason", required=True, help="why the hold ends")
@click.pass_context
def hold_release(ctx: click.Context, matter: str, reason: str) -> None:
    """End the active hold on MATTER (or the hold with that id, or its first 8+ characters)."""
    from compliance import holds
    from qscan.wiring.compliance import actor, log_appender

    cfg = _config(ctx)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            ev = holds.release(engine, append, matter, reason=reason, actor=actor(cfg),
                               host=cfg.hostname)
        except holds.HoldError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"hold {ev.hold_id} on {ev.matter!r} released")


# -- export -----------------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.option("--matter", help="the matter (a hold's name) whose messages are exported")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="directory to create (must not exist)")
@click.option("--format", "fmt", type=click.Choice(["eml", "mbox"]), default="eml",
              show_default=True, help="one .eml per message, or one mbox (mboxrd)")
@click.option("--prefix", default="QSCAN", show_default=True, help="document id prefix")
@click.option("--query", "search", metavar="QUERY",
              help="export what this discovery search finds (docs/discovery.md), within the "
              "matter's hold if it has one; --since/--until/--sender/--recipient go to the search")
@filter_options
@click.pass_context
def export(ctx: click.Context, matter: str | None, out: Path | None, fmt: str, prefix: str,
           search: str | None, **kwargs: Any) -> None:
    """Produce a legal-discovery export of a matter: .eml files (or one mbox), manifest.csv
    and manifest.json, an EDRM XML and a Concordance DAT load file, and a chain-of-custody
    record (custody.json, also in SQL and on the log).

    \b
    Examples:
      qscan export --matter "Acme v. Example" --out /srv/productions/acme-001
      qscan export --matter "Acme v. Example" --since 2025-06-01 --subject contract \\
          --format mbox --out /srv/productions/acme-002
      qscan export --matter Falcon --query '"wire transfer" NEAR/5 acme' \\
          --out /srv/productions/falcon-001
      qscan export verify /srv/productions/acme-001
    """
    if ctx.invoked_subcommand is not None:
        return
    if not matter or out is None:
        raise click.UsageError("qscan export needs --matter NAME and --out DIR "
                               "(or: qscan export verify DIR)")
    from compliance import export as ex
    from qscan.wiring.compliance import actor, copy_store, journal_raw, log_appender

    filters = take_filters(kwargs)
    cfg = _config(ctx)
    judge = _archive_judge(cfg)
    by_query: dict[str, Any] = {}
    if search is not None:
        filters, chosen = _export_selection(ctx, cfg, matter, search, filters)
        by_query = {"discovery": chosen.record(), "selected": chosen.items()}
    try:
        req = ex.ExportRequest(matter=matter, out=out, actor=actor(cfg), host=cfg.hostname,
                               tool_version=__version__, filters=filters,
                               fmt="mbox" if fmt == "mbox" else "eml", prefix=prefix,
                               **by_query)
    except ex.ExportError as exc:
        raise click.UsageError(str(exc)) from exc
    with sql_store(ctx) as engine, log_appender(cfg) as append, journal_raw(cfg) as raw, \
            _progress() as bar:
        task = bar.add_task(f"exporting {matter}", total=None)
        try:
            ev = ex.run(engine, copy_store(cfg), append, req, raw_from_log=raw,
                        archived=judge,
                        progress=lambda done, total: bar.update(task, completed=done,
                                                                total=total))
        except ex.ExportError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"export {ev.event_id}: {ev.messages} messages ({ev.total_bytes} bytes) in "
               f"{ev.out_dir}" + (f"; {ev.missing} selected messages not produced (deleted by "
                                  "retention, not stored by design, or missing: the manifest's "
                                  "source says which)" if ev.missing else ""))


def _export_selection(ctx: click.Context, cfg: Config, matter: str, search: str,
                      filters: Any) -> tuple[Any, Any]:
    """(the audit filters left to narrow with, the discovery selection) of ``export
    --query``: --since/--until and exact --sender/--recipient go to the search."""
    from compliance.discovery.search import Filters
    from qscan.cli.discover import choose

    for name in ("sender", "recipient"):
        value = getattr(filters, name)
        if value is not None and ("*" in value or "@" not in value):
            raise click.UsageError(f"with --query, --{name} is one exact address (as in "
                                   "`qscan discover search`), not a pattern")
    chosen = choose(ctx, cfg, search, Filters(since=filters.since, until=filters.until,
                                              sender=filters.sender,
                                              recipient=filters.recipient),
                    purpose=f"export {matter}")
    rest = type(filters)(**{**filters.__dict__, "since": None, "until": None, "sender": None,
                            "recipient": None})
    return rest, chosen


@export.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-db", is_flag=True, help="check the files only, not the record in SQL")
@click.pass_context
def export_verify(ctx: click.Context, directory: Path, no_db: bool) -> None:
    """Re-check every hash of a production against its custody record (and SQL)."""
    from compliance.export import verify_export

    if no_db:
        problems = verify_export(directory)
    else:
        with sql_store(ctx) as engine:
            problems = verify_export(directory, engine)
    for problem in problems:
        click.echo(printable(problem))
    if problems:
        click.echo(f"{directory}: {len(problems)} PROBLEM(S)", err=True)
        sys.exit(1)
    click.echo(f"{directory}: every file matches its custody record", err=True)


@export.command("rerun")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options("text")
@click.pass_context
def export_rerun(ctx: click.Context, directory: Path, as_json: bool) -> None:
    """An export by query (qscan export --query): run its recorded search again over
    today's index and list what changed since the export - messages it finds now that the
    export does not hold (mail indexed since), and exported messages it no longer finds.
    The export is not touched; the rerun is recorded as a discovery.searched event."""
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.discovery.search import searched_event
    from compliance.discovery.selection import rerun
    from compliance.export import ExportError, recorded_search
    from qscan.cli.discover import open_index
    from qscan.wiring.compliance import actor, log_appender

    try:
        custody, then, items = recorded_search(directory)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    cfg = _config(ctx)
    index = open_index(ctx, cfg)
    try:
        change = rerun(index, then, items)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"discovery search failed: {exc}") from exc
    finally:
        index.close()
    now = change.now
    with log_appender(cfg) as append:
        append(searched_event(now.query, now.tree, now.filters, now.counts, actor=actor(cfg),
                              host=cfg.hostname, purpose=f"rerun of export {custody['export_id']}"))
    doc = {"export_id": custody["export_id"], "matter": custody.get("matter"),
           "query": then.query, "canonical": then.canonical, "filters": then.filters,
           "then": {"total": then.total, "copies": len(items)},
           "now": {"total": now.counts.total, "copies": len(now.matches)},
           "added": [{"event_id": m.event_id, "sha256": m.sha256,
                      "received_at": m.received_at.isoformat()} for m in change.added],
           "removed": [{"event_id": i.event_id, "sha256": i.sha256} for i in change.removed]}
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(f"export {doc['export_id']} ({printable(str(doc['matter']))}): "
               f"{printable(then.query)}")
    click.echo(f"then: {then.total} messages ({len(items)} copies); now: {now.counts.total} "
               f"messages ({len(now.matches)} copies); {len(change.added)} added, "
               f"{len(change.removed)} removed since the export")
    for m in change.added:
        click.echo(f"  + {m.event_id}  {m.received_at:%Y-%m-%d %H:%M}  sha256 {m.sha256[:16]}  "
                   "(not in the export)")
    for i in change.removed:
        click.echo(f"  - {i.event_id}  sha256 {i.sha256[:16]}  (no longer found)")
