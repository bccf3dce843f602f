"""What every page shares: the console's state, the signed-in visit, rendering, the page decorator.

A page is an ``async def handler(visit)`` wrapped by :func:`page`, which reads and re-signs the
session cookie (idle timeout, absolute lifetime), loads the account (a disabled one is signed
out at its next request), checks the role, checks the CSRF token of every POST, and renders
errors as pages. Handlers call the blocking compliance functions through :meth:`Visit.run`
(a worker thread), so one slow query never stalls the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from compliance.accounts import Account
from compliance.roles import ROLES
from ingest.event import AnyEvent, ConsoleSignIn
from ingest.ids import uuid7
from qscan.config import Config
from qscan.web.jobs import Jobs

log = logging.getLogger("qscan.web")
T = TypeVar("T")
ALL_ROLES = frozenset(ROLES)
CSRF_FIELD = "csrf"
LOGIN_LEN = 128  # a login as recorded in a sign-in event


@dataclass(frozen=True)
class NavItem:
    """One link of the layout's navigation, shown to ``roles``."""

    label: str
    path: str
    roles: frozenset[str] = ALL_ROLES


class Refused(Exception):
    """A request the console answers with an error page (status, words for the person)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_secret(path: Path) -> bytes:
    """The session-signing key: created (0600, 256 random bits) on first start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path}: the web secret is too short (delete it to have a new one made)")
    return key.encode()


@dataclass
class Console:
    """The running console: config, the SQL store, templates, the cookie signer, throttling."""

    cfg: Config
    engine: Engine
    secret: bytes
    secure_cookies: bool
    templates: jinja2.Environment = field(init=False)
    signer: URLSafeTimedSerializer = field(init=False)
    nav: list[NavItem] = field(default_factory=list)
    jobs: Jobs = field(default_factory=Jobs)  # exports running in this process (qscan/web/jobs.py)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("qscan.web", "templates"),
            autoescape=True,  # every template, whatever its name: mail text is always escaped
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        from qscan.web import filters

        filters.install(self.templates)
        self.signer = URLSafeTimedSerializer(self.secret, salt="qscan-web-session")
        from qscan.web.throttle import Throttle

        self.throttle = Throttle(self.cfg.web.login_attempts, self.cfg.web.login_window_minutes * 60)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in self.cfg.web.trusted_proxies]

    @property
    def cookie_name(self) -> str:
        # __Host-: the browser keeps it only if Secure, Path=/ and no Domain (no subdomain can set it)
        return "__Host-qscan" if self.secure_cookies else "qscan_session"

    def trusted_proxy(self, host: str | None) -> bool:
        if not host or not self._proxies:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    def append(self, event: AnyEvent) -> None:
        """Append an event to this host's journal (blocking: call through Visit.run)."""
        from qscan.wiring.compliance import log_appender

        with log_appender(self.cfg) as append:
            append(event)

    def actor(self, account: Account) -> str:
        """login@host, as the CLI's actor is: the console's events name the person signed in."""
        return f"{account.login}@{self.cfg.hostname}"


def password_mark(account: Account) -> str:
    """A short digest of the password hash: a changed password ends the sessions made with the
    old one (and a cookie reveals nothing of the hash)."""
    return hashlib.sha256((account.password_hash or "-").encode()).hexdigest()[:12]


@dataclass
class Visit:
    """One request, as a page sees it."""

    request: Request
    console: Console
    session: dict[str, Any]
    account: Account | None = None
    form: FormData | None = None
    fresh_session: bool = False

    @property
    def cfg(self) -> Config:
        return self.console.cfg

    @property
    def actor(self) -> str:
        """login@host of the signed-in account: what the events a page appends name."""
        assert self.account is not None
        return self.console.actor(self.account)

    @property
    def csrf(self) -> str:
        token: str = self.session["c"]
        return token

    @property
    def remote(self) -> str:
        """The client's address; behind a trusted proxy, the address it says it forwarded."""
        client = self.request.client.host if self.request.client else "unknown"
        if self.console.trusted_proxy(client):
            forwarded = self.request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            if forwarded:
                return forwarded[:64]
        return client

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(fn, *args, **kwargs)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.console.templates.get_template(template).render(
            visit=self, account=self.account, nav=self.visible_nav(), csrf_field=CSRF_FIELD,
            path=self.request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def visible_nav(self) -> list[NavItem]:
        if self.account is None:
            return []
        return [item for item in self.console.nav if self.account.role in item.roles]

    def sign_in(self, account: Account, method: str) -> None:
        """A new session for ``account`` (a new CSRF token too: no fixation across sign-in)."""
        now = int(datetime.now(UTC).timestamp())
        self.session = {"c": secrets.token_urlsafe(24), "l": account.login, "s": now,
                        "p": password_mark(account), "m": method}
        self.account = account

    def sign_out(self) -> None:
        self.session = {"c": secrets.token_urlsafe(24)}
        self.account = None


def signin_event(visit: Visit, login: str, outcome: str, method: str,
                 account: Account | None = None) -> ConsoleSignIn:
    """The ``console.signin`` event of one attempt (the login as given: bounded, controls as '?')."""
    shown = "".join(c if c.isprintable() else "?" for c in login)[:LOGIN_LEN]
    return ConsoleSignIn(event_id=str(uuid7()), time=datetime.now(UTC), host=visit.cfg.hostname,
                         login=shown, outcome=outcome, method=method, remote=visit.remote,
                         role=account.role if account else None)


async def proxy_sign_in(visit: Visit) -> None:
    """SSO: a trusted reverse proxy names the signed-in login in ``web.proxy_header``.

    Believed only from ``web.trusted_proxies``; the login must be an enabled console account
    (its role decides what it sees). A different login than the session's starts a new session."""
    header = visit.cfg.web.proxy_header
    client = visit.request.client.host if visit.request.client else None
    if not header or not visit.console.trusted_proxy(client):
        return
    name = visit.request.headers.get(header, "").strip()
    if not name:
        return
    if visit.account is not None and visit.account.login == name.lower():
        return
    from compliance.accounts import get

    account = await visit.run(get, visit.console.engine, name)
    if account is None or account.disabled:
        await visit.run(visit.console.append, signin_event(visit, name, "failed", "proxy"))
        visit.sign_out()
        raise Refused(403, "Your single sign-on login has no console account here; ask a postmaster.")
    visit.sign_in(account, "proxy")
    await visit.run(visit.console.append, signin_event(visit, account.login, "ok", "proxy", account))


def _read_session(console: Console, request: Request) -> tuple[dict[str, Any], bool]:
    raw = request.cookies.get(console.cookie_name)
    if raw:
        try:
            data = console.signer.loads(raw, max_age=console.cfg.web.idle_minutes * 60)
            if isinstance(data, dict) and isinstance(data.get("c"), str):
                return data, False
        except BadSignature:  # also SignatureExpired: idle too long
            pass
    return {"c": secrets.token_urlsafe(24)}, True


def _session_account(console: Console, session: dict[str, Any]) -> Account | None:
    from compliance.accounts import get

    login = session.get("l")
    if not isinstance(login, str):
        return None
    started = session.get("s", 0)
    if datetime.now(UTC).timestamp() - started > console.cfg.web.session_hours * 3600:
        return None
    account = get(console.engine, login)
    if account is None or account.disabled:
        return None
    if session.get("m") == "password" and session.get("p") != password_mark(account):
        return None
    return account


def set_cookie(console: Console, response: Response, session: dict[str, Any]) -> None:
    response.set_cookie(console.cookie_name, console.signer.dumps(session), path="/",
                        max_age=console.cfg.web.session_hours * 3600,
                        secure=console.secure_cookies, httponly=True, samesite="strict")


Handler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page(roles: Iterable[str] = ALL_ROLES, *, signed_in: bool = True) -> Callable[[Handler], Endpoint]:
    """Wrap a handler: session, account, role, CSRF on POST, error pages, the cookie re-signed.

    ``roles``: who may open it (others get 403); ``signed_in=False`` for the sign-in page."""
    allowed = frozenset(roles)
    unknown = allowed - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def deco(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            session, fresh = _read_session(console, request)
            visit = Visit(request, console, session, fresh_session=fresh)
            response: Response
            try:
                visit.account = await visit.run(_session_account, console, session)
                if visit.account is None and "l" in session:
                    visit.sign_out()  # expired, disabled, password changed
                await proxy_sign_in(visit)
                if request.method == "POST":
                    visit.form = await request.form(max_files=0, max_fields=200)
                    token = visit.form.get(CSRF_FIELD)
                    if fresh or not isinstance(token, str) or not secrets.compare_digest(token, visit.csrf):
                        raise Refused(403, "This form has expired or did not come from this console. "
                                      "Go back, reload the page and try again.")
                if signed_in and visit.account is None:
                    if request.method == "GET":
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        response = RedirectResponse("/login?" + _next(target), status_code=303)
                    else:
                        raise Refused(401, "Your session has ended: sign in again.")
                elif signed_in and visit.account is not None and visit.account.role not in allowed:
                    raise Refused(403, "Your role does not give access to this page.")
                else:
                    response = await handler(visit)
            except Refused as exc:
                response = visit.render("error.html", status=exc.status, status_code=exc.status,
                                        message=exc.message)
            set_cookie(console, response, visit.session)
            return response

        return endpoint

    return deco


def _next(target: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": target})


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this console, never another site (no '//', no
    backslash, no whitespace or control characters, which browsers drop: '/<TAB>/evil.example')."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
        return "/"
    return value
