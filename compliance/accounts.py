"""The web console's accounts: create, list, disable, and check a password.

``qscan web user ...`` and the console's sign-in both come here. Every change is an event on
the log first (``console.account``), then a row in ``web_accounts``; accounts are disabled,
never deleted, so a login named by old events still means someone. Passwords are Argon2id
hashes (argon2-cffi, from the ``web`` extra, imported where a hash is made or checked); an
account without one signs in only through the trusted proxy's SSO header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from compliance.audit import Scope
from compliance.db import session_factory
from compliance.models import WebAccount
from compliance.roles import ROLES, is_scoped
from ingest.event import AnyEvent, ConsoleAccountChanged, utc
from ingest.ids import uuid7

LogAppend = Callable[[AnyEvent], None]
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    """An account that cannot be created or changed (bad login, unknown role, exists...)."""


@dataclass(frozen=True)
class Account:
    login: str
    role: str
    addresses: tuple[str, ...]
    domains: tuple[str, ...]
    disabled: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str
    password_hash: str | None = None

    @property
    def scope(self) -> Scope | None:
        """What this account may see: None is every message; a ``user`` sees its own."""
        return Scope(self.addresses, self.domains) if is_scoped(self.role) else None

    def row(self) -> dict[str, Any]:
        """For listings (no hash)."""
        return {"login": self.login, "role": self.role, "addresses": list(self.addresses),
                "domains": list(self.domains), "state": "disabled" if self.disabled else "active",
                "password": self.has_password, "updated_at": self.updated_at,
                "updated_by": self.updated_by}


def login_name(text: str) -> str:
    """A login as stored: lowercased, 1-128 of a-z 0-9 . _ @ + - (an address works)."""
    login = text.strip().lower()
    if not _LOGIN.match(login):
        raise AccountError(f"{text!r} is not a login: 1-128 characters of a-z, 0-9, '.', '_', "
                           "'@', '+', '-', starting with a letter or digit")
    return login


def _addresses(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        addr = value.strip().removeprefix("<").removesuffix(">").strip().lower()
        local, at, domain = addr.rpartition("@")
        if not at or not local or not _DOMAIN.match(domain) or "*" in addr or any(c.isspace() for c in addr):
            raise AccountError(f"{value!r} is not a whole mail address (no wildcards)")
        out.append(addr)
    return tuple(dict.fromkeys(out))


def _domains(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        dom = value.strip().lower().lstrip("@").rstrip(".")
        if not _DOMAIN.match(dom):
            raise AccountError(f"{value!r} is not a domain name (no wildcards)")
        out.append(dom)
    return tuple(dict.fromkeys(out))


def _hasher() -> Any:
    from argon2 import PasswordHasher  # the web extra

    return PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    hashed: str = _hasher().hash(password)
    return hashed


def _account(row: WebAccount) -> Account:
    return Account(login=row.login, role=row.role, addresses=tuple(json.loads(row.addresses)),
                   domains=tuple(json.loads(row.domains)), disabled=row.disabled,
                   has_password=row.password_hash is not None, created_at=utc(row.created_at),
                   updated_at=utc(row.updated_at), updated_by=row.updated_by,
                   password_hash=row.password_hash)


def _event(row: WebAccount, change: str, actor: str, host: str) -> ConsoleAccountChanged:
    return ConsoleAccountChanged(
        event_id=str(uuid7()), time=datetime.now(UTC), host=host, login=row.login,
        change=change,
        role=row.role, addresses=json.loads(row.addresses), domains=json.loads(row.domains),
        password=row.password_hash is not None, actor=actor)


def add(engine: Engine, log: LogAppend, login: str, role: str, *, password: str | None,
        addresses: Iterable[str] = (), domains: Iterable[str] = (), actor: str,
        host: str) -> Account:
    """A new account; ``password`` None: SSO only. A ``user`` needs an address or a domain."""
    login = login_name(login)
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} ({', '.join(ROLES)})")
    addrs, doms = _addresses(addresses), _domains(domains)
    if is_scoped(role) and not (addrs or doms):
        raise AccountError("a user account sees only its own mail: give --address or --domain")
    if not is_scoped(role) and (addrs or doms):
        raise AccountError(f"a {role} sees every message: --address and --domain are for the user role")
    hashed = hash_password(password) if password is not None else None
    now = datetime.now(UTC)
    with session_factory(engine, write=True).begin() as session:
        if session.get(WebAccount, login) is not None:
            raise AccountError(f"account {login!r} exists (see `qscan web user list`)")
        row = WebAccount(login=login, role=role, password_hash=hashed, addresses=json.dumps(addrs),
                         domains=json.dumps(doms), disabled=False, created_at=now, updated_at=now,
                         updated_by=actor)
        log(_event(row, "created", actor, host))
        session.add(row)
        session.flush()
        return _account(row)


def set_disabled(engine: Engine, log: LogAppend, login: str, disabled: bool, *, actor: str,
                 host: str) -> Account:
    """Disable an account (its sessions end at their next request) or enable it again."""
    login = login_name(login)
    with session_factory(engine, write=True).begin() as session:
        row = session.get(WebAccount, login)
        if row is None:
            raise AccountError(f"no account {login!r} (see `qscan web user list`)")
        if row.disabled != disabled:
            row.disabled = disabled
            row.updated_at = datetime.now(UTC)
            row.updated_by = actor
            log(_event(row, "disabled" if disabled else "enabled", actor, host))
        return _account(row)


def listing(engine: Engine) -> list[Account]:
    with session_factory(engine).begin() as session:
        return [_account(r) for r in session.scalars(select(WebAccount).order_by(WebAccount.login))]


def get(engine: Engine, login: str) -> Account | None:
    """The account, disabled or not; None for no such login (or one that is not a login)."""
    try:
        login = login_name(login)
    except AccountError:
        return None
    with session_factory(engine).begin() as session:
        row = session.get(WebAccount, login)
        return _account(row) if row is not None else None


_DUMMY: list[str] = []


def authenticate(engine: Engine, login: str, password: str) -> Account | None:
    """The enabled account ``login`` if ``password`` is its password, else None.

    An unknown login, a disabled account and one without a password cost one Argon2 check all
    the same, so the answer's timing does not tell which logins exist."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    account = get(engine, login)
    hashed = account.password_hash if account is not None else None
    if hashed is None:
        if not _DUMMY:
            _DUMMY.append(hasher.hash("not a password of anyone"))
        hashed = _DUMMY[0]
    try:
        hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None or account.disabled or account.password_hash is None:
        return None
    return account
