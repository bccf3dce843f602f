"""The console as an ASGI app (``create_app``) and the server ``qscan web`` runs (``serve``).

Every response carries a strict Content-Security-Policy (no scripts at all, styles and images
from the console only, no frames, forms posting only to the console), ``X-Frame-Options:
DENY``, ``nosniff``, no referrer, and ``Cache-Control: no-store`` (mail pages must not linger
in a shared cache or the browser's history cache).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qscan.config import Config
from qscan.web.console import Console, load_secret

log = logging.getLogger("qscan.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the headers above to every response; ``no-store`` to all but the stylesheet."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control" or static]
                headers += HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _home(request: Request) -> Response:
    return RedirectResponse("/audit", status_code=303)


async def _not_found(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no such route, wrong method), on the console's error page."""
    status = getattr(exc, "status_code", 404)
    text = {404: "There is no such page.", 405: "That is not how this page is used."}.get(status, "Error.")
    console: Console = request.app.state.console
    html = console.templates.get_template("error.html").render(
        visit=None, account=None, nav=[], csrf_field="", path=request.url.path, status_code=status,
        message=text)
    return HTMLResponse(html, status_code=status)


def create_app(cfg: Config, *, engine: Engine | None = None, secure_cookies: bool | None = None) -> Starlette:
    """The console for ``cfg``; ``secure_cookies=False`` for plain-http localhost (default:
    ``not web.insecure_cookies``)."""
    from compliance.db import check_schema, make_engine
    from qscan.web import routes

    engine = engine or make_engine(cfg.sql_url)
    check_schema(engine)
    secure = (not cfg.web.insecure_cookies) if secure_cookies is None else secure_cookies
    console = Console(cfg=cfg, engine=engine, secret=load_secret(cfg.web_secret_path),
                      secure_cookies=secure, nav=routes.nav())
    app = Starlette(
        routes=[Route("/", _home), *routes.routes(),
                Mount("/static", StaticFiles(packages=[("qscan.web", "static")]), name="static")],
        exception_handlers={404: _not_found, 405: _not_found})
    app.state.console = console
    app.add_middleware(SecurityHeaders, hsts=secure)
    return app


def serve(cfg: Config, listen: str, *, secure_cookies: bool | None = None, **uvicorn_args: Any) -> None:
    """Serve the console on ``listen`` (HOST:PORT) until stopped (SIGTERM, SIGINT)."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    app = create_app(cfg, secure_cookies=secure_cookies)
    log.info("web console on http://%s/ (%s cookies)", listen,
             "secure" if app.state.console.secure_cookies else "INSECURE plain-http")
    # The access log is off: request lines carry searched addresses (personal data); sign-ins
    # and raw reads are events on the log, and the reverse proxy keeps its own access log.
    uvicorn.run(app, host=host, port=int(port), log_config=None, access_log=False,
                server_header=False, proxy_headers=False, **uvicorn_args)
