"""A real PostgreSQL server for the SQL tests, and the ``db_url`` fixtures built on it.

The server is started once per test session (initdb into a temp dir, ``pg_ctl start`` on a
free loopback port, unix socket in the same temp dir) as an unprivileged user: PostgreSQL
refuses to run as root, so under root the Debian ``postgres`` account runs it through
``runuser``. Durability is switched off (``fsync=off``): test data is thrown away.

Every SQL test takes ``db_url`` (an empty database) or ``migrated_url`` (one at the schema
head), parametrized over ``sqlite`` and ``postgresql``. A fresh PostgreSQL database is a
``CREATE DATABASE ... TEMPLATE`` copy, so a migrated one costs a file copy, not a migration.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
DB_KINDS = ("sqlite", "postgresql")
# PostgreSQL spawns a server: the integration mark lets `make test-fast` leave it out.
DB_PARAMS = [pytest.param(k, marks=pytest.mark.integration) if k == "postgresql" else k
             for k in DB_KINDS]


def pg_bin() -> Path | None:
    """The newest installed server's bin directory (Debian keeps one per major version)."""
    versions = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _service_user() -> str | None:
    """Who runs the server: ourselves, or ``postgres`` when we are root (or None: impossible)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return SERVICE_USER


def available() -> bool:
    return pg_bin() is not None and _service_user() is not None and bool(shutil.which("runuser")
                                                                          or os.geteuid() != 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """One running server: its URL parts and a way to make fresh databases on it."""

    bindir: Path
    datadir: Path
    sockdir: Path
    port: int
    user: str
    as_root: bool

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout,
                              cwd=self.datadir.parent)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, template: str = "template0") -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server(base: Path) -> PgServer:
    bindir = pg_bin()
    user = _service_user()
    assert bindir is not None and user is not None
    as_root = os.geteuid() == 0
    datadir, sockdir = base / "data", base / "sock"
    sockdir.mkdir()
    if as_root:
        info = pwd.getpwnam(user)
        for p in (base, sockdir):
            os.chown(p, info.pw_uid, info.pw_gid)
    server = PgServer(bindir, datadir, sockdir, _free_port(), user, as_root)
    server.run("initdb", "-D", str(datadir), "-U", user, "--auth=trust", "-E", "UTF8",
               "--locale=C.UTF-8", "--no-sync")
    options = (f"-c listen_addresses=127.0.0.1 -c port={server.port} "
               f"-c unix_socket_directories={sockdir} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB")
    server.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(datadir), "-l",
               str(base / "server.log"), "-o", options)
    return server


def stop_server(server: PgServer) -> None:
    try:
        server.run("pg_ctl", "stop", "-m", "fast", "-w", "-t", "30", "-D", str(server.datadir))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        server.run("pg_ctl", "stop", "-m", "immediate", "-D", str(server.datadir))


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

