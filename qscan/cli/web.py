"""``qscan web``: serve the web console; ``qscan web user``: its accounts (docs/web.md).

The console and these commands need the ``web`` extra (``pip install 'qscan[web]'``); without
it they say so in one line (exit 78).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from compliance.roles import ROLES
from qscan.cli.db import When, sql_store
from qscan.cli.output import Column, emit_rows, output_options

if TYPE_CHECKING:
    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


@click.group(invoke_without_command=True)
@click.option("--listen", metavar="HOST:PORT",
              help="where to listen (default: web.listen, 127.0.0.1:8470)")
@click.option("--insecure-cookies", is_flag=True,
              help="session cookie without the Secure flag, for plain http on localhost only")
@click.pass_context
def web(ctx: click.Context, listen: str | None, insecure_cookies: bool) -> None:
    """Serve the web console: audit search and message views for auditors, legal, DLP
    officers, postmasters and mail users, each by role (docs/web.md). Put it behind a
    reverse proxy that terminates TLS; accounts are made with `qscan web user add`.

    \b
    Examples:
      qscan web                                   # on web.listen (127.0.0.1:8470)
      qscan web --listen 127.0.0.1:8080 --insecure-cookies   # plain http, this host only
      qscan web user add alice --role auditor
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn  # noqa: F401  (the web extra: a missing one is named before anything starts)

    from qscan.web.app import serve
    from qscan.web.settings import _listen

    cfg = _config(ctx)
    where = listen or cfg.web.listen
    try:
        _listen(where)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    with sql_store(ctx):  # a missing schema or an unreachable database: one line, exit 3
        pass
    serve(cfg, where, secure_cookies=False if insecure_cookies else None)


@web.group()
def user() -> None:
    """Console accounts: add, list, disable, enable. Every change is an event on the log.

    \b
    Examples:
      qscan web user add alice --role auditor              # asks for the password twice
      qscan web user add bob --role user --address bob@example.com --domain example.org
      qscan web user add carol --role legal --sso-only     # signs in through the proxy header
      qscan web user list
      qscan web user disable alice
    """


def _password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


@user.command("add")
@click.argument("login")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the account may see and do")
@click.option("--address", "addresses", multiple=True, metavar="ADDR",
              help="user role: an address whose mail it sees (sent or received); repeat")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="user role: a domain whose mail it sees; repeat")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
@click.option("--sso-only", is_flag=True, help="no password: signs in only through web.proxy_header")
@click.pass_context
def user_add(ctx: click.Context, login: str, role: str, addresses: tuple[str, ...],
             domains: tuple[str, ...], password_stdin: bool, sso_only: bool) -> None:
    """Add the account LOGIN with a role (a user role needs --address or --domain)."""
    import argon2  # noqa: F401  (the web extra: a missing one is named before a password is asked)

    from compliance import accounts
    from qscan.wiring.compliance import actor, log_appender

    if sso_only and password_stdin:
        raise click.UsageError("--sso-only and --password-stdin contradict each other")
    cfg = _config(ctx)
    try:
        accounts.login_name(login)
        password = None if sso_only else _password(password_stdin)
        with sql_store(ctx) as engine, log_appender(cfg) as append:
            made = accounts.add(engine, append, login, role, password=password, addresses=addresses,
                                domains=domains, actor=actor(cfg), host=cfg.hostname)
    except accounts.AccountError as exc:
        raise click.UsageError(str(exc)) from exc
    seen = ", ".join(made.addresses + made.domains) or "every message"
    click.echo(f"account {made.login!r} ({made.role}) added; it sees {seen}")


USER_COLUMNS = (
    Column("login", min_width=8), Column("role"), Column("state"),
    Column("addresses", min_width=10, drop=2), Column("domains", min_width=10, drop=3),
    Column("password", drop=4), Column("updated_at", "changed (UTC)", drop=5),
    Column("updated_by", "by", min_width=8, drop=6),
)


def _user_cell(row: dict[str, Any], col: Column) -> Any:
    value = row.get(col.key)
    if isinstance(value, list):
        return ", ".join(value)
    if col.key == "password":
        return "yes" if value else "sso only"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value


@user.command("list")
@output_options()
@click.pass_context
def user_list(ctx: click.Context, fmt: str, wide: bool) -> None:
    """List the console's accounts (no password hashes, ever)."""
    from compliance import accounts

    with sql_store(ctx) as engine:
        rows = [a.row() for a in accounts.listing(engine)]
    emit_rows(rows, USER_COLUMNS, fmt, wide=wide, cells=_user_cell,
              empty="no accounts: add one with `qscan web user add LOGIN --role ROLE`")


ACTIVITY_COLUMNS = (
    Column("time", "time (UTC)"), Column("type", "what", min_width=10), Column("actor", "who", min_width=8),
    Column("outcome", drop=3), Column("role", drop=4), Column("remote", "from", drop=2),
    Column("subject", "on", min_width=8, drop=1), Column("detail", min_width=8, drop=5),
)


@web.command("activity")
@click.option("--login", metavar="LOGIN", help="only this person (a login, with or without its @host)")
@click.option("--kind", type=click.Choice(["console.signin", "console.account", "message.raw_read",
                                           "export.downloaded"]), help="only this kind of event")
@click.option("--since", type=When(), help="at or after (2026-11-25, 7d, 12h)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="the newest this many")
@output_options()
@click.pass_context
def activity(ctx: click.Context, login: str | None, kind: str | None, since: datetime | None,
             limit: int, fmt: str, wide: bool) -> None:
    """The console's own activity, newest first: sign-ins (and refused ones), account changes,
    raw mail read and exports downloaded - what the console's Activity page lists, from the
    rows the summaries consumer projects from their events (`qscan verify` checks them).

    \b
    Examples:
      qscan web activity                                   # the latest 100
      qscan web activity --kind console.signin --since 7d  # a week of sign-ins
      qscan web activity --login alice --format csv > alice.csv
    """
    from compliance import activity as act

    with sql_store(ctx) as engine:
        rows = act.listing(engine, actor=login, kind=kind, since=since, limit=limit)
    if fmt == "table":  # json, csv and tsv keep the exact time (ISO 8601, with its zone)
        for r in rows:
            r["time"] = r["time"].strftime("%Y-%m-%d %H:%M:%S")
    emit_rows(rows, ACTIVITY_COLUMNS, fmt, wide=wide, empty="no console activity")


def _set_disabled(ctx: click.Context, login: str, disabled: bool) -> None:
    from compliance import accounts
    from qscan.wiring.compliance import actor, log_appender

    cfg = _config(ctx)
    with sql_store(ctx) as engine, log_appender(cfg) as append:
        try:
            acc = accounts.set_disabled(engine, append, login, disabled, actor=actor(cfg),
                                        host=cfg.hostname)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"account {acc.login!r} {'disabled' if disabled else 'enabled'}")


@user.command("disable")
@click.argument("login")
@click.pass_context
def user_disable(ctx: click.Context, login: str) -> None:
    """Disable LOGIN: it cannot sign in, and its open sessions end at their next request."""
    _set_disabled(ctx, login, True)


@user.command("enable")
@click.argument("login")
@click.pass_context
def user_enable(ctx: click.Context, login: str) -> None:
    """Enable LOGIN again."""
    _set_disabled(ctx, login, False)
