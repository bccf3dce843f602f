"""The ``db_url`` fixtures: every SQL test on SQLite and on a real PostgreSQL server.

The server is the one ``qscan.testing.postgres`` starts (once per test session). Every SQL test
takes ``db_url`` (an empty database) or ``migrated_url`` (one at the schema head), parametrized
over ``sqlite`` and ``postgresql``. A fresh PostgreSQL database is a ``CREATE DATABASE ...
TEMPLATE`` copy, so a migrated one costs a file copy, not a migration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from qscan.testing.postgres import PgServer, available, start_server, stop_server

DB_KINDS = ("sqlite", "postgresql")
# PostgreSQL spawns a server: the integration mark lets `make test-fast` leave it out.
DB_PARAMS = [pytest.param(k, marks=pytest.mark.integration) if k == "postgresql" else k
             for k in DB_KINDS]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (skipped on a dev box without it, a failure in CI)."""
    from tests.conftest import require

    require("PostgreSQL server (Debian postgresql)", available())
    # Not pytest's tmp dir: that one is private to root and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="qscan-pg-"))
    os.chmod(base, 0o700)
    try:
        server = start_server(base)
    except subprocess.CalledProcessError as exc:
        log = base / "server.log"
        detail = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr}{detail}")
    try:
        yield server
    finally:
        stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_migrated_template(pg_server: PgServer) -> str:
    """A database at the schema head that fresh test databases are copied from."""
    from compliance import db

    name = pg_server.create_database()
    db.upgrade(pg_server.url(name))
    return name


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=DB_PARAMS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) on SQLite or PostgreSQL."""
    if db_kind == "sqlite":
        yield _sqlite_url(tmp_path / "sub" / "qscan.db")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def sqlite_migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compliance import db

    path = tmp_path_factory.mktemp("template") / "qscan.db"
    db.upgrade(_sqlite_url(path))
    return path


class FreshDatabases:
    """Makes migrated databases of one kind on demand (hypothesis examples need several)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, base: Path) -> None:
        self.kind = kind
        self._request = request
        self._base = base
        self._dropped: list[str] = []
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        if self.kind == "sqlite":
            template: Path = self._request.getfixturevalue("sqlite_migrated_template")
            path = self._base / f"db{self._n}" / "qscan.db"
            path.parent.mkdir()
            shutil.copy(template, path)
            return _sqlite_url(path)
        server: PgServer = self._request.getfixturevalue("pg_server")
        name = server.create_database(self._request.getfixturevalue("pg_migrated_template"))
        self._dropped.append(name)
        return server.url(name)

    def close(self) -> None:
        if self._dropped:
            server: PgServer = self._request.getfixturevalue("pg_server")
            for name in self._dropped:
                server.drop_database(name)


@pytest.fixture
def fresh_db(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path
             ) -> Iterator[FreshDatabases]:
    """A factory of migrated databases of the test's kind."""
    factory = FreshDatabases(db_kind, request, tmp_path / "fresh")
    (tmp_path / "fresh").mkdir()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def migrated_url(fresh_db: FreshDatabases) -> str:
    """A database at the schema head on SQLite or PostgreSQL."""
    return fresh_db()

