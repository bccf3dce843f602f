"""A real PostgreSQL server for the SQL tests and the benchmarks (the pytest fixtures built on it,
``db_url`` and the rest, are in ``tests/pg.py``).

The server is started (initdb into a temp dir, ``pg_ctl start`` on a
free loopback port, unix socket in the same temp dir) as an unprivileged user: PostgreSQL
refuses to run as root, so under root the Debian ``postgres`` account runs it through
``runuser``. Durability is switched off (``fsync=off``): test data is thrown away (the
benchmark switches it back on).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"


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
            conn.execute(sql)

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
