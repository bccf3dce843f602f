"""Configuration: one TOML file, validated, with errors that name file, line and key.

Every path defaults to a place under ``data_dir``; relative paths are taken
relative to the directory of the config file, so a config can be moved with its
data. ``qscan config check`` loads it and prints the effective values.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG = "/etc/qscan/qscan.toml"
MiB = 1024 * 1024


class ConfigError(Exception):
    """A config file that cannot be used; the message names file, line and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonConfig(_Section):
    socket: Path = Field(Path("/run/qscan/qscan.sock"), description="unix socket qscan-queue connects to")
    socket_mode: int = Field(0o660, description="permissions of the socket (octal in TOML: 0o660)")
    socket_group: str | None = Field(None, description="group owning the socket (qmail's group)")
    workers: int = Field(4, ge=1, le=256, description="pre-forked worker processes")
    max_messages_per_worker: int = Field(
        1000, ge=1, description="a worker is recycled after this many messages"
    )
    max_message_size: int = Field(
        50 * MiB, ge=1024, description="bigger messages are rejected permanently (bytes)"
    )
    timeout: float = Field(300.0, gt=0, description="seconds allowed to receive one message")
    qmail_queue: Path = Field(Path("/var/qmail/bin/qmail-queue"), description="the real qmail-queue")
    qmail_queue_timeout: float = Field(600.0, gt=0, description="seconds qmail-queue may take")
    hostname: str = Field("", description="name used in headers and events (default: FQDN)")


class JournalConfig(_Section):
    path: Path | None = Field(None, description="journal database (default: DATA_DIR/journal.db)")
    retain_days: float = Field(
        7.0, ge=0, description="keep consumed events this long for replays before pruning"
    )
    prune_interval: float = Field(300.0, gt=0, description="seconds between prunes in `qscan run`")


class ArchiveConfig(_Section):
    enabled: bool = Field(True, description="write the archive maildir")
    maildir: Path | None = Field(None, description="archive maildir (default: DATA_DIR/archive)")
    quarantine_dir: Path | None = Field(
        None, description="root of viruses/ policy/ spam/ dlp/ maildirs (default: DATA_DIR/quarantine)"
    )
    filter: str | None = Field(
        None,
        description="regex: archive only mail with an envelope address matching it "
        r"(e.g. '(support|sales)@example\.com'); unset archives everything",
    )

    @field_validator("filter")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value or None


class SqlConfig(_Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL (default: sqlite:///DATA_DIR/qscan.db)"
    )


class SummaryLogConfig(_Section):
    target: Literal["syslog", "file", "none"] = Field(
        "syslog", description="where the one-line summary of each message goes"
    )
    path: Path | None = Field(None, description="file for target='file' (default: DATA_DIR/summary.log)")
    facility: Literal[
        "mail", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"
    ] = "mail"


class HeadersConfig(_Section):
    diagnostics: bool = Field(True, description="add X-Qmail-Scanner-Diagnostics")
    style: Literal["header", "received"] = Field(
        "header", description="'received' writes the diagnostics as a Received: line instead"
    )
    mail_from: bool = Field(False, description="add X-Qmail-Scanner-Mail-From")
    attachments: bool = Field(False, description="add X-Qmail-Scanner-Mime-Attachments")
    recipients: bool = Field(False, description="add X-Qmail-Scanner-Rcpt-To (privacy: off)")


class ScannersConfig(_Section):
    enabled: list[str] = Field(["size"], description="scanners to run, in order")


class ConsumersConfig(_Section):
    enabled: list[Literal["archive", "summaries"]] = Field(
        ["archive", "summaries"], description="consumers `qscan run` starts (and pruning waits for)"
    )
    batch: int = Field(200, ge=1, le=10000, description="events per consumer transaction")
    poll_interval: float = Field(0.2, gt=0, description="seconds between polls when idle")


class Config(_Section):
    data_dir: Path = Field(Path("/var/lib/qscan"), description="where data lives by default")
    daemon: DaemonConfig = DaemonConfig()
    journal: JournalConfig = JournalConfig()
    archive: ArchiveConfig = ArchiveConfig()
    sql: SqlConfig = SqlConfig()
    summary_log: SummaryLogConfig = SummaryLogConfig()
    headers: HeadersConfig = HeadersConfig()
    scanners: ScannersConfig = ScannersConfig()
    consumers: ConsumersConfig = ConsumersConfig()
    source: Path | None = Field(None, exclude=True, description="file this was loaded from")

    # Effective values (defaults resolved against data_dir).
    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.data_dir / "journal.db"

    @property
    def archive_maildir(self) -> Path:
        return self.archive.maildir or self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.archive.quarantine_dir or self.data_dir / "quarantine"

    @property
    def sql_url(self) -> str:
        return self.sql.url or f"sqlite:///{self.data_dir / 'qscan.db'}"

    @property
    def summary_log_path(self) -> Path:
        return self.summary_log.path or self.data_dir / "summary.log"

    @property
    def hostname(self) -> str:
        return self.daemon.hostname or socket.getfqdn()

    def effective(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["journal"]["path"] = str(self.journal_path)
        out["archive"]["maildir"] = str(self.archive_maildir)
        out["archive"]["quarantine_dir"] = str(self.quarantine_dir)
        out["sql"]["url"] = self.sql_url
        out["summary_log"]["path"] = str(self.summary_log_path)
        out["daemon"]["hostname"] = self.hostname
        out["daemon"]["socket_mode"] = oct(self.daemon.socket_mode)
        return out


_PATH_KEYS = [
    ("data_dir",),
    ("daemon", "socket"),
    ("daemon", "qmail_queue"),
    ("journal", "path"),
    ("archive", "maildir"),
    ("archive", "quarantine_dir"),
    ("summary_log", "path"),
]


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for key in _PATH_KEYS:
        node: Any = data
        for k in key[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(key[-1]), str):
            p = Path(node[key[-1]]).expanduser()
            node[key[-1]] = str(p if p.is_absolute() else (base / p))
    sql = data.get("sql")
    if isinstance(sql, dict) and isinstance(sql.get("url"), str):
        url = sql["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and not rel.startswith(":memory:"):
                sql["url"] = f"sqlite:///{base / rel}"


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (tomllib gives none)."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_.\-\"]+)\s*=")
    fallback = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            current = [p.strip().strip('"') for p in m.group(1).split(".")]
            if current == keys:  # the key is itself a table
                return lineno
            continue
        m = assign.match(line)
        if m:
            dotted = current + [p.strip('"') for p in m.group(1).split(".")]
            if dotted == [*table, key]:
                return lineno
            if dotted[: len(keys)] == keys or (current == table and dotted[-1] == key):
                fallback = fallback or lineno
    if fallback is None and table:
        # an unknown key may sit under a table we can point at
        for lineno, line in enumerate(text.splitlines(), 1):
            m = header.match(line)
            if m and [p.strip() for p in m.group(1).split(".")] == table:
                return lineno
    return fallback


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; ``None`` means $QSCAN_CONFIG or the default path."""
    if path is None:
        path = os.environ.get("QSCAN_CONFIG") or DEFAULT_CONFIG
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: config file not found (use -c FILE or $QSCAN_CONFIG)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from exc
    return parse_config(text, p)


def parse_config(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    _resolve_paths(data, path.resolve().parent)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(k) for k in loc)
            lineno = _locate(text, loc)
            where = f"{path}:{lineno}" if lineno else str(path)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{where}: key '{key}': {msg}")
        raise ConfigError("\n".join(lines)) from exc
    cfg.source = path
    return cfg


def example_config(data_dir: str = "/var/lib/qscan") -> str:
    """A complete, commented config with every default spelled out."""
    return EXAMPLE.replace("@DATA_DIR@", data_dir)


EXAMPLE = """\
# qscan configuration. Every key is optional; shown values are the defaults.
# Relative paths are relative to this file's directory.

data_dir = "@DATA_DIR@"

[daemon]
socket = "/run/qscan/qscan.sock"       # qscan-queue reads $QSCAN_SOCKET, same default
socket_mode = 0o660
# socket_group = "qmail"               # group allowed to connect (qmaild/qmail)
workers = 4                            # pre-forked worker processes
max_messages_per_worker = 1000         # recycle a worker after this many messages
max_message_size = 52428800            # bytes; bigger mail is rejected (5.3.4)
timeout = 300                          # seconds to receive one message from qscan-queue
qmail_queue = "/var/qmail/bin/qmail-queue"
qmail_queue_timeout = 600
# hostname = "mx1.example.com"         # default: this host's FQDN

[journal]
# path = "@DATA_DIR@/journal.db"
retain_days = 7                        # keep consumed events for replays this long
prune_interval = 300

[archive]
enabled = true
# maildir = "@DATA_DIR@/archive"
# quarantine_dir = "@DATA_DIR@/quarantine"
# filter = '(support|sales)@example\\.com'   # archive only matching envelope addresses

[sql]
# url = "sqlite:///@DATA_DIR@/qscan.db"      # or postgresql+psycopg://user@host/qscan

[summary_log]
target = "syslog"                      # syslog | file | none
facility = "mail"
# path = "@DATA_DIR@/summary.log"      # for target = "file"

[headers]
diagnostics = true                     # X-Qmail-Scanner-Diagnostics
style = "header"                       # or "received" (a Received: line, as QS 1.x did)
mail_from = false
attachments = false
recipients = false                     # privacy: off unless asked

[scanners]
enabled = ["size"]

[consumers]
enabled = ["archive", "summaries"]
batch = 200
poll_interval = 0.2
"""
