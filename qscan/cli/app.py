"""The admin CLI: ``qscan [-c CONFIG] COMMAND``.

Every command reads one TOML config (``-c``, else ``$QSCAN_CONFIG``, else
/etc/qscan/qscan.toml). Start with ``qscan config example > qscan.toml`` and
``qscan config check``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qscan import __version__
from qscan.cli.output import output_options

if TYPE_CHECKING:  # pydantic, SQLAlchemy, alembic are imported when a command runs, not for --help
    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


class _Group(click.Group):
    """Turns config errors into one clear message and exit code 2 wherever they surface, and a
    missing extra (kafka, postgres) into a one-line hint and exit 78 (`qscan run` leaves it stopped)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ImportError as exc:
            from qscan.extras import hint, missing_extra

            extra = missing_extra(exc)
            if extra is None:
                raise
            from qscan.ops.supervisor import EXIT_NEEDS_OPERATOR

            click.echo(f"qscan: {hint(extra)}", err=True)
            ctx.exit(EXIT_NEEDS_OPERATOR)
        except Exception as exc:
            config = sys.modules.get("qscan.config")  # a ConfigError means the module was loaded
            if config is None or not isinstance(exc, config.ConfigError):
                raise
            click.echo(f"qscan: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="QSCAN_CONFIG",
              default="/etc/qscan/qscan.toml", show_default=True, help="configuration file")
@click.option("-q", "--quiet", is_flag=True, help="warnings and errors only; no progress bars")
@click.option("-v", "--verbose", is_flag=True, help="debug logging, and the libraries' INFO lines")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="QSCAN_LOG_FORMAT", help="log lines on stderr: text, or one JSON object per line")
@click.version_option(__version__, prog_name="qscan")
@click.pass_context
def cli(ctx: click.Context, config_path: str, quiet: bool, verbose: bool, log_format: str) -> None:
    """qscan: content scanner and compliance pipeline for qmail.

    \b
    Quick start:
      qscan config example > /etc/qscan/qscan.toml
      qscan config check
      qscan db upgrade
      qscan run                      # daemon + consumers (embedded defaults)
    Then point qmail at it: QMAILQUEUE=/usr/local/bin/qscan-queue
    """
    from qscan.logs import setup

    if quiet and verbose:
        raise click.UsageError("-q and -v contradict each other")
    setup(verbosity=-1 if quiet else 1 if verbose else 0, fmt=log_format)
    os.environ["QSCAN_LOG_FORMAT"] = log_format  # the children of `qscan run` log the same way
    cache: dict[str, Config] = {}

    def load() -> Config:
        from qscan.config import load_config

        if "cfg" not in cache:
            cache["cfg"] = load_config(config_path)
        return cache["cfg"]

    ctx.obj = {"config": load, "config_path": config_path, "quiet": quiet}


# -- config -----------------------------------------------------------------
@cli.group()
def config() -> None:
    """Write, check and show the configuration."""


@config.command("check")
@output_options("text")
@click.pass_context
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Validate the config file, run the daemon's start-up checks, print the effective values.

    \b
    The start-up checks are the daemon's own (qscan/ops/preflight.py): what passes here, the
    daemon starts with. Besides every key's type and range, and scanner names:
      the enabled scanners are built as the daemon's workers build them: internal.rules
      and dlp.rules are read and compiled (each error named by the rules file, line, rule
      and key); "dlp" enabled needs dlp.rules; "cmdline" needs cmdline.argv;
      daemon.qmail_queue is an executable file; daemon.socket_group exists.
    And for the consumers `qscan run` starts: with "notify" in consumers.enabled,
    notify.qmail_inject (transport = "qmail-inject") is executable and
    notify.template_dir, if set, is a directory.
    Every problem is listed, each naming the file, the line and the key, e.g.
      /etc/qscan/qscan.toml:7: key 'daemon.workers': Input should be greater than or equal to 1
    Exit codes: 0 the config is usable, 2 it is not (the problems are on stderr).
    """
    from qscan.ops.preflight import check

    cfg = _config(ctx)
    check(cfg, consumers=True)  # PreflightError: every problem, exit 2 (as the daemon would refuse to start)
    eff = cfg.effective()
    if as_json:
        click.echo(json.dumps(eff, indent=2))
        return
    click.echo(f"{cfg.source}: OK")
    for section, values in eff.items():
        if isinstance(values, dict):
            for key, value in values.items():
                click.echo(f"  {section}.{key} = {value}")
        else:
            click.echo(f"  {section} = {values}")


@config.command("example")
@click.option("--data-dir", default="/var/lib/qscan", show_default=True,
              help="the data_dir the example names (journal, maildirs, SQLite store under it)")
def config_example(data_dir: str) -> None:
    """Print a complete, commented config with every default."""
    from qscan.config import example_config

    click.echo(example_config(data_dir), nl=False)


# -- daemon and consumers ---------------------------------------------------
@cli.command()
@click.pass_context
def daemon(ctx: click.Context) -> None:
    """Run the scan daemon (pre-forked workers on the unix socket) in the foreground."""
    from ingest.daemon import AlreadyRunning, Daemon
    from ingest.journal import Journal
    from ingest.processor import record_queue_failure
    from qscan.ops.preflight import check
    from qscan.wiring.pipeline import daemon_options, processor_factory

    cfg = _config(ctx)
    check(cfg)  # what `qscan config check` checks: fail now, naming every problem, not in every worker
    Journal(cfg.journal_path).close()  # create it before workers race to
    from qscan.ops.metrics import TimedJournal, start_daemon_metrics

    journal_cls = TimedJournal if cfg.metrics.enabled else Journal
    try:
        d = Daemon(daemon_options(cfg), processor_factory(cfg, journal_cls),
                   preflight=lambda: check(cfg),  # SIGHUP: replace workers only if new ones would start
                   queue_failed=functools.partial(record_queue_failure, cfg.journal_path, cfg.hostname))
        start_daemon_metrics(cfg, d)  # [metrics]: /metrics on loopback (docs/operations.md)
        from qscan.ops.sdnotify import Notifier

        systemd = Notifier()  # Type=notify: ready once it serves; WatchdogSec: pinged by the master loop
        code = d.serve(ready=lambda: systemd.ready(f"listening on {cfg.daemon.socket}"), tick=systemd.ping)
        systemd.stopping()
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@cli.command()
@click.argument("name", type=click.Choice(["archive", "summaries", "notify", "index"]))
@click.option("--once", is_flag=True, help="stop when caught up instead of following the log")
@click.option("--from-beginning", "from_start", is_flag=True,
              help="reset this consumer's position first: rebuild from the oldest event the log holds")
@click.option("--from-start", "from_start", is_flag=True, hidden=True)  # the old name of --from-beginning
@click.option("--source", type=click.Choice(["journal", "kafka"]), default=None,
              help="read the local journal or the Kafka topic (default: consumers.source)")
@click.option("--partition", "partitions", default=None, metavar="0,1,...",
              help="Kafka: read exactly these partitions instead of joining the consumer group")
@click.option("--partitions", "partitions", default=None, hidden=True)  # the old name of --partition
@click.pass_context
def consume(ctx: click.Context, name: str, once: bool, from_start: bool, source: str | None,
            partitions: str | None) -> None:
    """Run one consumer: project the log into the archive maildirs, the SQL store, ...

    \b
    Examples:
      qscan consume archive             # follow the log
      qscan consume summaries --once    # catch up and exit
      qscan consume archive --from-beginning --once   # rebuild from what the journal holds
      qscan consume summaries --source kafka      # join the group qscan-summaries
      qscan consume archive --source kafka --partition 0,1   # a static layout
    """
    from ingest.journal import Journal
    from ingest.log import JournalReader, Stop, run_consumer
    from qscan.wiring.pipeline import make_sink

    cfg = _config(ctx)
    if (source or cfg.consumers.source) == "kafka":
        _consume_kafka(cfg, name, once=once, from_start=from_start, partitions=partitions)
        return
    sink = make_sink(cfg, name)
    from qscan.ops.metrics import consumer_metrics

    metrics = consumer_metrics(cfg, name)
    if metrics is not None:
        sink = metrics.wrap(sink)
    journal = Journal(cfg.journal_path)
    if from_start:
        sink.set_position(0)
    stop = Stop().install()
    try:
        n = run_consumer(JournalReader(journal), sink, cfg.consumers, once=once, stop=stop)
    finally:
        sink.close()
        journal.close()
    if once:
        click.echo(f"{name}: applied {n} events, position {sink.position()}")


def _partition_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError as exc:
        raise click.BadParameter(f"not a comma-separated list of partition numbers: {text!r}") from exc


def _consume_kafka(cfg: Config, name: str, *, once: bool, from_start: bool,
                   partitions: str | None) -> None:
    from ingest.kafka_source import KafkaSource
    from ingest.log import Stop
    from qscan.wiring.pipeline import kafka_settings, make_sink

    try:
        settings = kafka_settings(cfg)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    static = _partition_list(partitions)
    if from_start:
        for p in static if static is not None else range(settings.partitions):
            _reset_kafka_position(cfg, name, settings.topic, p)
    from ingest.kafka_source import PoisonRecord
    from qscan.ops.metrics import consumer_metrics
    from qscan.wiring.kafka_anchor import make_anchor_store

    metrics = consumer_metrics(cfg, name, source="kafka")
    source = KafkaSource(settings, name, lambda key: metrics.wrap(make_sink(cfg, name, key)) if metrics
                         else make_sink(cfg, name, key), partitions=static, batch=cfg.consumers.batch,
                         anchors=make_anchor_store(cfg, name))
    if metrics is not None:
        metrics.attach_kafka(source)  # consumer lag per topic on /metrics
    try:
        n = source.run(Stop().install(), once=once)
    except PoisonRecord as exc:  # stop, do not crash-loop over it: someone must decide
        from qscan.ops.supervisor import EXIT_NEEDS_OPERATOR

        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NEEDS_OPERATOR)
    if once:
        click.echo(f"{name}: applied {n} events from {settings.topic}")


def _reset_kafka_position(cfg: Config, name: str, topic: str, partition: int) -> None:
    from ingest.kafka_source import position_key
    from qscan.wiring.pipeline import make_sink

    sink = make_sink(cfg, name, position_key(topic, partition))
    try:
        sink.set_position(0)
    finally:
        sink.close()


@cli.command()
@click.argument("name", type=click.Choice(["archive", "summaries", "notify", "index"]))
@click.option("--from-beginning", is_flag=True,
              help="start again from the oldest event the log still holds (what replay always does; "
                   "accepted for scripts that say so)")
@click.option("--source", type=click.Choice(["journal", "kafka"]), default=None,
              help="which log's positions to reset (default: consumers.source)")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def replay(ctx: click.Context, name: str, from_beginning: bool, source: str | None, yes: bool) -> None:
    """Reset a consumer's stored position and rebuild its projection from the log.

    Projections are keyed by event id, so a replay rewrites the same files and rows and
    fills whatever is missing; it reaches back as far as the log keeps events (the
    journal's retain_days, the topic's retention).
    """
    from ingest.journal import Journal
    from ingest.log import JournalReader, Stop, run_consumer
    from qscan.wiring.pipeline import kafka_settings, make_sink

    cfg = _config(ctx)
    source = source or cfg.consumers.source
    if not yes:
        click.confirm(f"reset {name}'s {source} position to the beginning and rebuild?", abort=True)
    if source == "kafka":
        try:
            settings = kafka_settings(cfg)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        _consume_kafka(cfg, name, once=True, from_start=True,
                       partitions=",".join(str(p) for p in range(settings.partitions)))
        return
    from qscan.cli.progress import progress_bar

    sink = make_sink(cfg, name)
    sink.set_position(0)
    with Journal(cfg.journal_path) as journal, progress_bar() as bar:
        start = max(journal.oldest() - 1, 0)
        task = bar.add_task(f"replaying {name}", total=max(journal.head() - start, 0))
        try:
            n = run_consumer(JournalReader(journal), sink, cfg.consumers, once=True,
                             stop=Stop().install(),
                             on_batch=lambda pos, head: bar.update(task, completed=pos - start,
                                                                   total=head - start))
        finally:
            sink.close()
    click.echo(f"{name}: replayed {n} events from the journal")


@cli.group()
def consumer() -> None:
    """Inspect and move consumer positions."""


@consumer.command("position")
@click.argument("name", type=click.Choice(["archive", "summaries", "notify", "index"]))
@output_options("text")
@click.option("--set", "new_position", type=int, help="move the position (0 replays everything kept)")
@click.option("--source", type=click.Choice(["journal", "kafka"]), default="journal", show_default=True,
              help="the journal's position, or one Kafka partition's (with --partition)")
@click.option("--partition", type=int, default=None, help="with --source kafka: the partition")
@click.pass_context
def consumer_position(ctx: click.Context, name: str, new_position: int | None, source: str,
                      partition: int | None, as_json: bool) -> None:
    """Show (or set) where a consumer stands in the journal or in one Kafka partition.

    \b
      qscan consumer position summaries
      qscan consumer position summaries --source kafka --partition 3 --set 1205

    The last form skips the Kafka records below offset 1205 of partition 3 (a poison
    record the consumer stopped at, say): their events are then missing from the projection.
    """
    from ingest.journal import Journal
    from qscan.wiring.pipeline import make_sink

    cfg = _config(ctx)
    if source == "kafka":
        from ingest.kafka_source import position_key
        from qscan.wiring.pipeline import kafka_settings

        if partition is None:
            raise click.UsageError("--source kafka needs --partition")
        try:
            key = position_key(kafka_settings(cfg).topic, partition)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        ksink = make_sink(cfg, name, key)
        try:
            if new_position is not None:
                ksink.set_position(new_position)
            if as_json:
                click.echo(json.dumps({"consumer": name, "source": "kafka", "key": key,
                                       "partition": partition, "position": ksink.position()}))
            else:
                click.echo(f"{name}: {key} at offset {ksink.position()}")
        finally:
            ksink.close()
        return
    sink = make_sink(cfg, name)
    try:
        if new_position is not None:
            sink.set_position(new_position)
            with Journal(cfg.journal_path) as j:
                j.set_position(name, new_position)
        with Journal(cfg.journal_path) as j:
            head = j.head()
        if as_json:
            click.echo(json.dumps({"consumer": name, "source": "journal", "position": sink.position(),
                                   "head": head, "lag": head - sink.position()}))
        else:
            click.echo(f"{name}: position {sink.position()} of {head} (lag {head - sink.position()})")
    finally:
        sink.close()


@cli.command()
@click.option("--no-upgrade", is_flag=True, help="do not migrate the SQL schema on start")
@click.pass_context
def run(ctx: click.Context, no_upgrade: bool) -> None:
    """Run the daemon and every enabled consumer under one supervisor (embedded default).

    Refuses to start on a config the daemon cannot run with (the checks of
    ``qscan config check``, exit 2), migrates the SQL schema first
    (``--no-upgrade`` to skip), restarts crashed components with back-off,
    prunes the journal behind the consumers, and stops everything cleanly on
    SIGTERM or Ctrl-C.
    """
    from qscan.ops.preflight import check
    from qscan.ops.supervisor import supervise

    cfg = _config(ctx)
    check(cfg, consumers=True)  # not a daemon restarted with back-off forever on a config it cannot run with
    if not no_upgrade and {"summaries", "notify"} & set(cfg.consumers.enabled):
        from compliance.db import upgrade

        upgrade(cfg.sql_url)
    sys.exit(supervise(cfg, str(Path(ctx.obj["config_path"]).resolve())))


# -- journal ----------------------------------------------------------------
@cli.group()
def journal() -> None:
    """The embedded durable log."""


@journal.command("status")
@output_options("text")
@click.pass_context
def journal_status(ctx: click.Context, as_json: bool) -> None:
    """Head, oldest kept event, size on disk and every reader's position and lag.

    Exits 3 when the journal is larger than journal.disk_budget_mb (a stuck reader).
    """
    from qscan.ops.status import journal_info

    cfg = _config(ctx)
    budget = cfg.journal.disk_budget_mb * 1e6
    try:  # the same figures as `qscan status` and the metrics endpoint
        info = journal_info(cfg.journal_path, budget)
    except FileNotFoundError as exc:
        raise click.ClickException(f"{exc} (journal.path; the daemon creates it at start)") from exc
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"journal {info['path']}: head {info['head']}, oldest kept {info['oldest']}, "
                   f"{info['events']} events, {info['bytes'] / 1e6:.1f} MB")
        for name, p in info["positions"].items():
            click.echo(f"  {name}: position {p['position']} (lag {p['lag']} events, "
                       f"{p['lag_seconds']:.0f}s)")
    if info["over_budget"]:
        # Mail still flows (the daemon never stops journaling); the operator must act:
        # bring the relay/consumers back, raise the budget, or add disk.
        click.echo(f"qscan: journal is over its disk budget ({info['bytes'] / 1e6:.0f} MB > "
                   f"{budget / 1e6:.0f} MB): a reader is stuck; see README 'Operations'", err=True)
        sys.exit(3)


@journal.command("prune")
@click.pass_context
def journal_prune(ctx: click.Context) -> None:
    """Delete events every reader (consumers, or the relay) has passed, older than journal.retain_days."""
    from ingest.journal import Journal
    from qscan.wiring.pipeline import log_readers_required

    cfg = _config(ctx)
    with Journal(cfg.journal_path) as j:
        n = j.prune(log_readers_required(cfg), cfg.journal.retain_days * 86400)
    click.echo(f"pruned {n} events")


# -- kafka ------------------------------------------------------------------
@cli.command()
@click.option("--once", is_flag=True, help="relay what is pending and exit")
@click.pass_context
def relay(ctx: click.Context, once: bool) -> None:
    """Relay the journal to the Kafka topic of [log.kafka] (also started by `qscan run`).

    The relay position advances only after the broker acknowledged (acks=all); a broker
    outage never stops mail: the daemon keeps journaling and the relay catches up.
    """
    from ingest.journal import Journal
    from ingest.kafka_log import Relay
    from ingest.log import Stop
    from qscan.wiring.pipeline import kafka_settings

    cfg = _config(ctx)
    try:
        settings = kafka_settings(cfg)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    assert cfg.log.kafka is not None
    from ingest.kafka_log import TopicMismatch
    from qscan.ops.journal_budget import budget_warning

    with Journal(cfg.journal_path) as j:
        r = Relay(j, settings, cfg.hostname, watch=budget_warning(cfg))
        from qscan.ops.metrics import relay_metrics

        relay_metrics(cfg, r)  # [metrics]: relay lag and acknowledgements on /metrics
        try:
            n = r.run(Stop().install(), once=once)
        except TopicMismatch as exc:  # retrying cannot help: say what to do, once
            from qscan.ops.supervisor import EXIT_NEEDS_OPERATOR

            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_NEEDS_OPERATOR)
        if once:
            events, seconds = r.lag()
            click.echo(f"relayed {n} events; lag {events} events ({seconds:.0f}s)")
            if events:
                sys.exit(1)


@cli.group()
def kafka() -> None:
    """The Kafka topic: create and check it."""


@kafka.command("init")
@click.pass_context
def kafka_init(ctx: click.Context) -> None:
    """Create the topic of [log.kafka] (partitions, max.message.bytes, retention) or check it."""
    from ingest.kafka_log import TopicMismatch, init_topic
    from qscan.wiring.pipeline import kafka_settings

    cfg = _config(ctx)
    try:
        notes = init_topic(kafka_settings(cfg))
    except (ValueError, TopicMismatch) as exc:  # not configured; an existing topic that does not fit
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # broker unreachable and friends
        servers = cfg.log.kafka.bootstrap_servers if cfg.log.kafka else []
        raise click.ClickException(f"cannot reach Kafka at {servers}: {exc}") from exc
    for note in notes:
        click.echo(note)


# -- schema and demo --------------------------------------------------------
@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to a file")
def schema(output: str | None) -> None:
    """Print the JSON Schema of the events (for consumers in other languages)."""
    from ingest.event import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default="demo-data", show_default=True,
              help="where the demo keeps its config, journal, maildirs and database (wiped first)")
@click.option("--concurrency", type=int, default=4, show_default=True, help="concurrent senders")
@click.option("--keep-running", is_flag=True, help="leave the daemon running until Ctrl-C")
def demo(data_dir: str, concurrency: int, keep_running: bool) -> None:
    """Run the whole pipeline on embedded defaults with the bundled corpus.

    Starts `qscan run` with a fresh config under DATA_DIR, pushes every corpus
    message through the real qscan-queue program over the qmail-queue
    protocol (a stand-in qmail-queue records what would be queued), waits for
    the consumers, prints the audit table and where everything is, and stops
    what it started.
    """
    from qscan.testing.demo import run_demo

    sys.exit(run_demo(Path(data_dir), concurrency=concurrency, keep_running=keep_running))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (commands, options, choices).

    \b
    Load it once in the current shell, or install it for good:
      eval "$(qscan completion bash)"
      qscan completion bash > /etc/bash_completion.d/qscan
      qscan completion zsh > "${fpath[1]}/_qscan"
      qscan completion fish > ~/.config/fish/completions/qscan.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choices are exactly click's shells
    click.echo(cls(cli, {}, "qscan", "_QSCAN_COMPLETE").source())


def _register_optional() -> None:
    from qscan.cli.db import audit, db

    cli.add_command(db)
    cli.add_command(audit)
    from qscan.cli.compliance import export, hold, retention, verify

    for command in (verify, retention, hold, export):
        cli.add_command(command)
    from qscan.cli.policy import policy
    cli.add_command(policy)
    from qscan.cli.notify import notify
    cli.add_command(notify)
    from qscan.cli.ops import install, report, status
    for command in (status, report, install):
        cli.add_command(command)
    from qscan.cli.dlp import dlp
    cli.add_command(dlp)
    from qscan.cli.quarantine import quarantine
    cli.add_command(quarantine)
    from qscan.cli.anchor import anchor
    cli.add_command(anchor)
    from qscan.cli.discover import discover
    cli.add_command(discover)
    from qscan.cli.web import web
    cli.add_command(web)


_register_optional()


def main() -> None:
    # Every qscan process (daemon, consumers, `qscan run`'s children, commands) makes what it
    # writes private, whatever umask it was started with (ingest/private.py).
    from ingest.private import restrict_umask

    restrict_umask()
    cli(prog_name="qscan")
