"""Operations commands: ``qscan status``, ``qscan report``, ``qscan install`` (checks only).

See docs/operations.md for what each figure means and what to do about it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qscan.cli.db import When
from qscan.cli.output import output_options

if TYPE_CHECKING:
    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    cfg: Config = ctx.obj["config"]()
    return cfg


@click.command()
@output_options("text")
@click.option("--max-lag", type=float, default=300.0, show_default=True, metavar="SECONDS",
              help="a consumer or the relay further behind than this is a problem (exit 8)")
@click.option("--min-free", type=float, default=5.0, show_default=True, metavar="PERCENT",
              help="less free space than this under the journal, archive or quarantine is a problem (exit 6)")
@click.option("--probe-timeout", type=float, default=3.0, show_default=True, metavar="SECONDS",
              help="how long to wait for each of clamd, spamd, rspamd, the SQL store, the Kafka "
              "broker and the SMTP relay")
@click.option("--no-scanners", is_flag=True, help="do not probe the network scanners")
@click.pass_context
def status(ctx: click.Context, as_json: bool, max_lag: float, min_free: float, probe_timeout: float,
           no_scanners: bool) -> None:
    """Is mail flowing, is anything stuck? Daemon, workers, journal, readers, scanners, disks.

    \b
    Shows: daemon up, workers busy/idle, messages in flight; journal size and the
    oldest event a reader has not handled; each consumer's (and the Kafka relay's)
    position and lag (consumers.source = "kafka": each consumer's stored offset per
    partition and its lag against the broker's end offsets, or "unknown" when the
    broker does not answer within --probe-timeout); clamd/spamd/rspamd reachability
    and versions; free space for the journal, archive and quarantine.

    \b
    Exit codes (the most urgent problem wins, in this order):
      0  all well
      4  the daemon is not running
      5  the journal is missing or unreadable
      3  the journal is over journal.disk_budget_mb (a reader is stuck)
      6  disk space under --min-free
      7  a network scanner does not answer
      9  a consumer's sink is unreachable (the SQL store down, the archive not writable)
      10 the Kafka broker does not answer (or the topic does not exist)
      11 the SMTP relay is down while notices wait to go out
      8  a consumer or the relay is more than --max-lag behind
    """
    from qscan.ops.status import collect, render

    st = collect(_config(ctx), max_lag=max_lag, min_free_percent=min_free, probe_timeout=probe_timeout,
                 scanners=not no_scanners)
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
    else:
        import re

        from qscan.cli.output import wrap

        for line in render(st):  # "name  state  detail": a folded detail stays in its column
            lead = re.match(r"^(\S.{15} \S+\s+)\S", line)
            click.echo(wrap(line, indent=len(lead.group(1)) if lead else 4))
    sys.exit(st.exit_code)


@click.command()
@click.option("--since", type=When(), default=None,
              help="from (UTC): 2026-11-01, 2026-11-01T08:00, 90m, 36h, 7d, 2w, 1y (default: from the "
                   "first message of the last 31 days)")
@click.option("--until", type=When(end=True), default=None,
              help="before (UTC; a date alone includes that day; default: now)")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="directory for index.html and the SVG charts (created; files replaced)")
@click.option("--unit", type=click.Choice(["auto", "minute", "5min", "15min", "hour", "6h", "day", "week"]),
              default="auto", show_default=True,
              help="bucket of the traffic and blocked-mail bars (auto: the finest giving at most 180 bars)")
@click.option("--url", default=None, help="SQLAlchemy URL to read (default: sql.url of the config)")
@click.pass_context
def report(ctx: click.Context, since: datetime | None, until: datetime | None, out_dir: str, unit: str,
           url: str | None) -> None:
    """Traffic graphs from the SQL store: SVG charts and one static HTML page.

    \b
    Incoming vs outgoing mail as bars per minute, hour or day (chosen from the
    period: at most 180 bars), mail blocked (quarantined, rejected, dropped) by
    category and mail tagged but delivered, top attachment types in blocked mail,
    top rules fired, scan time percentiles, each chart beside a table of the same
    figures (SQLite or PostgreSQL; a SQLite --url that does not exist is refused,
    never created).

    \b
    Examples:
      qscan report --out /var/www/qscan              # the data's own period (at most 31 days)
      qscan report --since 7d --out /var/www/qscan   # the last week, hourly bars
      qscan report --since 2h --out /tmp/r           # the last two hours, a bar per minute
      qscan report --since 2026-01-01 --until 2026-03-31 --out /tmp/q1   # a quarter, daily bars
    A daily cron job or systemd timer keeps a web page current (docs/operations.md).
    """
    from compliance.db import check_schema, make_engine
    from qscan.ops.report import choose_step, data_window, gather, render_charts, render_html

    if since is not None and until is not None and since >= until:
        raise click.BadParameter("must be before --until", param_hint="--since")
    cfg = _config(ctx)
    from sqlalchemy.engine import make_url

    target = make_url(url or cfg.sql_url)
    if target.get_backend_name() == "sqlite" and target.database not in (None, "", ":memory:") \
            and not Path(str(target.database)).exists():
        # SQLite would create an empty file (and report on nothing): a typo must not do that.
        raise click.ClickException(f"no SQLite store at {target.database} "
                                   f"({'--url' if url else 'sql.url'}; `qscan db upgrade` creates one)")
    engine = make_engine(url or cfg.sql_url)
    try:
        try:
            check_schema(engine)
        except Exception as exc:
            raise click.ClickException(str(exc)) from exc
        end = until or datetime.now(UTC)
        start, end = (since, end) if since is not None else data_window(engine, now=end)
        data = gather(engine, start, end, choose_step(end - start, unit))
    finally:
        engine.dispose()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    render_charts(data, out)  # milliseconds: no progress bar
    page = render_html(data, cfg.hostname, datetime.now(UTC))
    (out / "index.html").write_text(page, encoding="utf-8")
    click.echo(f"{data.messages} messages from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: "
               f"{out / 'index.html'}")


@click.command()
@click.option("--check", is_flag=True,
              help="verify only: what it always does (qscan never changes the system itself)")
@click.option("--user", default="qscand", show_default=True, help="the service user the units run as")
@click.option("--smtpd-run", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="qmail-smtpd's run script (default: the first of /var/qmail/supervise/qmail-smtpd/run, "
                   "/service/, /etc/service/, /var/service/, /etc/sv/ qmail-smtpd/run)")
@click.pass_context
def install(ctx: click.Context, check: bool, user: str, smtpd_run: Path | None) -> None:
    """Verify the service user, directories, permissions and socket; print what to fix.

    It only checks: nothing on the system is changed (`qscan install` and
    `qscan install --check` are the same); each problem comes with the command that
    fixes it, to run yourself.

    \b
    Checks, for the user the systemd units run as (contrib/systemd/):
      the user exists and is not root; the config is readable by it and writable
      only by root; data_dir, journal, archive and quarantine directories are its
      own and private (0700), and so is everything under them (files 0600,
      directories 0700: journal, SQLite store and their -wal/-shm ...); the socket
      directory, daemon.socket_group and the socket's mode; that qmail-smtpd can
      connect as tcpserver runs it (as root: a child becomes the run script's
      -u user with only its -g group and connects); the real qmail-queue
      (setuid qmailq) and the qscan-queue client; the installed units that run
      qmail-queue (no NoNewPrivileges= or anything implying it;
      RuntimeDirectoryMode lets qmaild reach the socket).
    Exits 1 when anything needs fixing; each problem is followed by a command
    that fixes it.
    """
    from qscan.ops.install_check import run_checks

    cfg = _config(ctx)
    findings = run_checks(cfg, Path(ctx.obj["config_path"]), user, smtpd_run=smtpd_run)
    bad = unchecked = 0
    for f in findings:
        if f.unchecked:
            unchecked += 1
            click.echo(f"skip  {f.what}")
        elif f.ok:
            click.echo(f"ok    {f.what}")
        else:
            bad += 1
            click.echo(f"FIX   {f.what}")
            if f.fix:
                click.echo(f"        -> {f.fix}")
    skipped = f"; {unchecked} thing(s) not checked (skip)" if unchecked else ""
    click.echo(f"{bad} problem(s){skipped}" if bad else f"everything is in place{skipped}")
    sys.exit(1 if bad else 0)
