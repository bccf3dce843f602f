"""Signing in and out with a local password, throttled (the trusted proxy's SSO header is read
on every request by ``console.page``: ``console.proxy_sign_in``).

Every sign-in, and every refused one, is a ``console.signin`` event on the log (who, from
where, how, the outcome), so the console's own use is auditable like the mail it shows.
Failures are throttled per login and per client address (``web.login_attempts`` within
``web.login_window_minutes``); a throttled attempt is refused without checking the password.
The counts live in the process (one ``qscan web`` process per console, docs/web.md).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compliance.accounts import authenticate
from qscan.web.console import LOGIN_LEN, Visit, page, safe_next
from qscan.web.console import signin_event as _event


@page(signed_in=False)
async def login(visit: Visit) -> Response:
    target = safe_next(visit.request.query_params.get("next"))
    if visit.request.method == "GET":
        if visit.account is not None:
            return RedirectResponse(target, status_code=303)
        return visit.render("login.html", next=target, error=None, login="")
    assert visit.form is not None
    name = str(visit.form.get("login", ""))[:LOGIN_LEN * 2].strip()
    password = str(visit.form.get("password", ""))
    target = safe_next(str(visit.form.get("next", "")) or None)
    keys = [f"login:{name.lower()}", f"ip:{visit.remote}"]
    console = visit.console
    if console.throttle.blocked(keys):
        await visit.run(console.append, _event(visit, name, "throttled", "password"))
        minutes = visit.cfg.web.login_window_minutes
        return visit.render("login.html", status=429, next=target, login=name,
                            error=f"Too many failed sign-ins: wait {minutes} minutes and try again.")
    account = await visit.run(authenticate, console.engine, name, password) if name and password else None
    if account is None:
        console.throttle.fail(keys)
        await visit.run(console.append, _event(visit, name, "failed", "password"))
        return visit.render("login.html", status=401, next=target, login=name,
                            error="Wrong login or password (or the account is disabled).")
    console.throttle.clear(f"login:{account.login}")
    await visit.run(console.append, _event(visit, account.login, "ok", "password", account))
    visit.sign_in(account, "password")
    return RedirectResponse(target, status_code=303)


@page()
async def logout(visit: Visit) -> Response:
    visit.sign_out()
    return RedirectResponse("/login", status_code=303)


ROUTES = [
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
]
