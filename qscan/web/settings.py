"""[web]: the console's settings (composed into qscan's Config; light: no Starlette here)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from compliance.roles import ROLES
from scanners.settings import SECTION, Check, setting


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8470 or [::1]:8470")
    return value


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network") from exc
    return value


def _roles(value: tuple[str, ...]) -> tuple[str, ...]:
    for role in value:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} ({', '.join(ROLES)})")
    return value


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The web console (`qscan web`, docs/web.md): where it listens, sessions, sign-in, SSO."""

    __pydantic_config__ = SECTION
    listen: Annotated[str, Check(_listen)] = setting(
        "127.0.0.1:8470", "HOST:PORT `qscan web` listens on (put it behind a TLS reverse proxy; "
        "--listen overrides it)")
    secret_file: Path | None = setting(
        None, "the key session cookies are signed with, created (0600) on first start "
        "(default: DATA_DIR/web-secret); replacing it signs everyone out",
        example="/var/lib/qscan/web-secret")
    idle_minutes: int = setting(
        30, "a session ends after this many minutes without a request", ge=1, le=24 * 60)
    session_hours: int = setting(
        12, "a session ends this many hours after sign-in, busy or not", ge=1, le=24 * 30)
    insecure_cookies: bool = setting(
        False, "send the session cookie over plain http too (no Secure flag): only for a "
        "console on localhost without TLS (`qscan web --insecure-cookies`)")
    login_attempts: int = setting(
        5, "failed sign-ins for one login, or from one address, before it must wait", ge=1)
    login_window_minutes: int = setting(
        15, "how long failed sign-ins count, and the wait once login_attempts is reached", ge=1)
    proxy_header: str | None = setting(
        None, "SSO: the request header a trusted reverse proxy names the signed-in login in "
        "(the login must be a console account); read only from trusted_proxies",
        example="X-Remote-User", pattern=r"^[A-Za-z0-9-]+$")
    trusted_proxies: Annotated[tuple[str, ...], Check(_networks)] = setting(
        (), "addresses or networks of the reverse proxies whose proxy_header is believed",
        example=["127.0.0.1", "::1"])
    raw_roles: Annotated[tuple[str, ...], Check(_roles)] = setting(
        ("postmaster", "legal", "dlp-officer"), "roles that may download a message's raw source "
        "(each download is an event on the log)")
    page_size: int = setting(50, "rows per page of the audit search", ge=5, le=1000)
    user_release: bool = setting(
        False, "mail users (role user) may release their own spam and policy quarantine mail, "
        "to their own addresses only, with a reason (each release is an event on the log)")
    export_dir: Path | None = setting(
        None, "where exports started from the console are written, one directory each "
        "(default: DATA_DIR/exports); keep it on storage the legal team may read",
        example="/srv/productions")
