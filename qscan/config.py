"""Configuration: one TOML file, validated, with errors that name file, line and key.

This module composes and loads; it defines no setting. Each section is the settings class of
the package that uses it (a frozen dataclass written with ``scanners.settings.setting``: name,
type, default, description, example and checks in one place), and the wiring hands it to that
package as it is. ``Config`` lists the sections; ``scanners.enabled`` and ``consumers.enabled``
name what is composed. docs/configuration.md has the map.

Every path defaults to a place under ``data_dir``; relative paths are taken
relative to the directory of the config file, so a config can be moved with its
data. ``qscan config check`` loads it and prints the effective values, and ``qscan config
example`` writes every key from the same classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import socket
import textwrap
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo

from archive.consumer import ArchiveSettings
from compliance.discovery.settings import DiscoverySettings
from compliance.notify.settings import NotifySettings
from compliance.settings import AnchorSettings, QuarantineSettings, RetentionPolicy, SqlSettings
from ingest.daemon import DaemonSettings
from ingest.log import ConsumerSettings, JournalSettings, KafkaLogSettings
from ingest.processor import HeadersSettings
from ingest.summary_log import SummaryLogSettings
from qscan.ops.settings import MetricsSettings
from qscan.web.settings import WebSettings
from scanners.clamd import ClamdSettings
from scanners.cmdline import CmdlineSettings
from scanners.cymru import CymruSettings
from scanners.dlp.rules import DlpSettings
from scanners.internal.policy import InternalSettings
from scanners.rspamd import RspamdSettings
from scanners.settings import setting
from scanners.spamd import SpamdSettings

DEFAULT_CONFIG = "/etc/qscan/qscan.toml"


class ConfigError(Exception):
    """A config file that cannot be used; the message names file, line and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _scanner_name(value: str) -> str:
    """A name of SCANNER_SETTINGS (below), checked when the config is parsed, so a typo is named
    with its line and the closest known name."""
    if value in SCANNER_NAMES:
        return value
    close = difflib.get_close_matches(value.lower(), SCANNER_NAMES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown scanner {value!r} ({hint}known: {', '.join(SCANNER_NAMES)})")


ScannerName = Annotated[str, AfterValidator(_scanner_name)]


class ScannersConfig(_Section):
    enabled: list[ScannerName] = Field(
        ["size", "internal"], description="scanners to run, in order: antivirus first (clamd, "
        "cmdline, cymru), then internal, then spam (spamd or rspamd), dlp last; e.g. "
        '["size", "clamd", "cymru", "internal", "spamd"]')

    @field_validator("enabled")
    @classmethod
    def _dlp_last(cls, value: list[str]) -> list[str]:
        twice = sorted({s for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(" and ".join(repr(s) for s in twice)
                             + f" {'is' if len(twice) == 1 else 'are'} listed twice")
        # DLP reads the parts the other scanners decoded (ctx.found_parts: archive members...):
        # a list that puts it earlier is refused rather than silently reordered (docs/dlp.md)
        if "dlp" in value and value[-1] != "dlp":
            rest = [s for s in value if s != "dlp"]
            raise ValueError(f"'dlp' must be the last scanner (it runs on what the others decoded): "
                             f"write enabled = {[*rest, 'dlp']}".replace("'", '"'))
        return value


# The scanners qscan can run: name -> the model of its Config section (the section has the
# scanner's name), None for one without settings; the order is the one `known:` lists. The one
# list of names: config validation takes it from here, qscan/wiring/pipeline.py's SCANNERS gives
# each name its factory (tests/test_config_preflight.py keeps the two key sets equal).
SCANNER_SETTINGS: dict[str, type | None] = {
    "size": None, "clamd": ClamdSettings, "cmdline": CmdlineSettings, "cymru": CymruSettings,
    "internal": InternalSettings, "spamd": SpamdSettings, "rspamd": RspamdSettings, "dlp": DlpSettings,
}
SCANNER_NAMES = tuple(SCANNER_SETTINGS)

# The consumers `qscan run` can start; qscan/wiring/pipeline.py's SINKS builds each (a test keeps
# the two equal).
ConsumerName = Literal["archive", "summaries", "notify", "index"]
CONSUMER_NAMES: tuple[ConsumerName, ...] = typing.get_args(ConsumerName)


@dataclass(frozen=True, slots=True)
class ConsumersConfig(ConsumerSettings):
    """Which consumers `qscan run` starts, and how they read the log."""

    enabled: tuple[ConsumerName, ...] = setting(
        ("archive", "summaries"), "consumers `qscan run` starts (and pruning waits for)")


class LogConfig(_Section):
    kafka: KafkaLogSettings | None = Field(None, description="set [log.kafka] to relay to Kafka")


class Config(_Section):
    data_dir: Path = Field(Path("/var/lib/qscan"), description="where data lives by default")
    daemon: DaemonSettings = DaemonSettings()
    journal: JournalSettings = JournalSettings()
    log: LogConfig = LogConfig()
    archive: ArchiveSettings = ArchiveSettings()
    sql: SqlSettings = SqlSettings()
    summary_log: SummaryLogSettings = SummaryLogSettings()
    headers: HeadersSettings = HeadersSettings()
    scanners: ScannersConfig = ScannersConfig()
    internal: InternalSettings = InternalSettings()
    clamd: ClamdSettings = ClamdSettings()
    spamd: SpamdSettings = SpamdSettings()
    rspamd: RspamdSettings = RspamdSettings()
    cmdline: CmdlineSettings = CmdlineSettings()
    cymru: CymruSettings = CymruSettings()
    consumers: ConsumersConfig = ConsumersConfig()
    notify: NotifySettings = NotifySettings()
    retention: RetentionPolicy = RetentionPolicy()
    quarantine: QuarantineSettings = QuarantineSettings()
    anchor: AnchorSettings = AnchorSettings()
    dlp: DlpSettings = DlpSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    metrics: MetricsSettings = MetricsSettings()
    web: WebSettings = WebSettings()
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
    def discovery_path(self) -> Path:
        return self.discovery.path or self.data_dir / "discovery.db"

    @property
    def web_secret_path(self) -> Path:
        return self.web.secret_file or self.data_dir / "web-secret"

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
        out["discovery"]["path"] = str(self.discovery_path)
        out["web"]["secret_file"] = str(self.web_secret_path)
        out["daemon"]["hostname"] = self.hostname
        out["daemon"]["socket_mode"] = oct(self.daemon.socket_mode)
        from qscan.redact import mask_values  # printed by `config check`: no passwords

        masked: dict[str, Any] = mask_values(out)
        return masked


_PATH_KEYS = [
    ("data_dir",),
    ("daemon", "socket"),
    ("daemon", "qmail_queue"),
    ("journal", "path"),
    ("archive", "maildir"),
    ("archive", "quarantine_dir"),
    ("summary_log", "path"),
    ("internal", "rules"),
    ("dlp", "rules"),
    ("notify", "template_dir"),
    ("notify", "qmail_inject"),
    ("notify", "mark_key"),
    ("quarantine", "qmail_queue"),
    ("discovery", "path"),
    ("web", "secret_file"),
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


def key_name(loc: tuple[Any, ...]) -> str:
    """A dotted key as errors show it: ``scanners.enabled[1]`` (list items by index from 0)."""
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else f"{'.' if out else ''}{k}"
    return out


def locate(path: Path, *keys: tuple[str, ...]) -> int | None:
    """The line of the first of ``keys`` (dotted key tuples) found in the config file ``path``.

    Used by the start-up checks (qscan/ops/preflight.py) to point at the key a problem comes from;
    None when the file cannot be read or none of the keys (nor their table) is in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for key in keys:
        lineno = _locate(text, key)
        if lineno:
            return lineno
    return None


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
            key = key_name(loc)
            lineno = _locate(text, loc)
            where = f"{path}:{lineno}" if lineno else str(path)
            msg = err["msg"]
            if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                msg = "unknown key"
            lines.append(f"{where}: key '{key}': {msg}")
        raise ConfigError("\n".join(lines)) from exc
    cfg.source = path
    return cfg


# -- `qscan config example`: written from the models above, so every key is in it --------------
_WIDTH = 100
_INLINE_AT = 39  # column of a description that fits beside its key


def example_config(data_dir: str = "/var/lib/qscan") -> str:
    """A complete, commented config with every default spelled out.

    Walks ``Config``: each section, each key with its default and its description (wrapped
    at 100 columns); keys whose default is unset are commented out with an example value."""
    out = ["# qscan configuration. Every key is optional; shown values are the defaults.",
           "# Keys commented out are unset by default; the value shown is an example.",
           "# Relative paths are relative to this file's directory."]
    _example_model(Config, [], out, commented=False, data_dir=data_dir)
    return ("\n".join(out).rstrip("\n") + "\n").replace("@DATA_DIR@", data_dir)


def _example_model(model: type, table: list[str], out: list[str], *, commented: bool,
                   data_dir: str, array: bool = False) -> None:
    fields = [(k, f) for k, f in section_fields(model).items() if not f.exclude]
    scalars = [(k, f) for k, f in fields if _submodel(f) is None]
    sections = [(k, f) for k, f in fields if _submodel(f) is not None]
    for key, field in scalars:
        value = _example_value(key, field, data_dir)
        unset = value is None
        if unset:
            value = _placeholder(field)
        _example_line(key, _toml(value, field), _describe(field), out, commented=commented or unset)
    for key, field in sections:
        sub = _submodel(field)
        assert sub is not None
        is_array = _origin(field.annotation) in (list, tuple)
        unset = field.default is None or is_array
        brackets = ("[[", "]]") if is_array else ("[", "]")
        about = field.description or _doc(sub)
        out.append("")
        prefix = "# " if commented or unset else ""
        if about:
            out.extend("# " + line for line in _wrap(about))
        out.append(f"{prefix}{brackets[0]}{'.'.join([*table, key])}{brackets[1]}")
        _example_model(sub, [*table, key], out, commented=commented or unset, data_dir=data_dir,
                       array=is_array)


def _doc(model: type) -> str:
    """A section's docstring (not the signature dataclasses write for a class without one)."""
    doc = (model.__doc__ or "").strip()
    return "" if doc.startswith(f"{model.__name__}(") else doc


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), _WIDTH - 2, break_on_hyphens=False)


def _origin(annotation: Any) -> Any:
    return typing.get_origin(annotation)


def _unwrap(annotation: Any) -> Any:
    """X from X | None (the type of a key that may be unset)."""
    if _origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _submodel(field: FieldInfo) -> type | None:
    """The section model of a field that is a table ([x]) or an array of tables ([[x]]): a
    pydantic model, or a package's settings dataclass (scanners/settings.py)."""
    ann = _unwrap(field.annotation)
    if _origin(ann) in (list, tuple):
        ann = typing.get_args(ann)[0]
    if isinstance(ann, type) and (issubclass(ann, BaseModel) or dataclasses.is_dataclass(ann)):
        return ann
    return None


@functools.cache
def section_fields(model: type) -> dict[str, FieldInfo]:
    """The keys of a section: a pydantic model's fields, or a settings dataclass's fields read
    the way pydantic reads them when it validates one (scanners/settings.py)."""
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    if not dataclasses.is_dataclass(model):
        raise TypeError(f"not a settings section: {model!r}")
    hints = typing.get_type_hints(model, include_extras=True)
    return {f.name: FieldInfo.from_annotated_attribute(hints[f.name], f)
            for f in dataclasses.fields(model)}


def _example_value(key: str, field: FieldInfo, data_dir: str) -> Any:
    if key == "data_dir":
        return data_dir
    if field.is_required():
        return None
    return field.get_default(call_default_factory=True)


def _placeholder(field: FieldInfo) -> Any:
    """The example shown for a key that is unset by default (its Field's first example)."""
    if not field.examples:
        raise TypeError(f"a key with no default needs Field(examples=[...]): {field}")
    return field.examples[0]


def _choices(annotation: Any) -> list[str]:
    ann = _unwrap(annotation)
    if _origin(ann) is list:
        ann = typing.get_args(ann)[0]
    if _origin(ann) is Literal:
        return [str(a) for a in typing.get_args(ann)]
    return []


def _describe(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    choices = _choices(field.annotation)
    if choices and not all(c in text for c in choices):
        text = f"{text} ({' | '.join(choices)})" if text else " | ".join(choices)
    return text


def _example_line(key: str, value: str, about: str, out: list[str], *, commented: bool) -> None:
    prefix = "# " if commented else ""
    lines = f"{_toml_key(key)} = {value}".split("\n")
    inline = f"{prefix}{lines[0]}".ljust(_INLINE_AT - 2) + f"  # {about}"
    if about and len(lines) == 1 and len(inline) <= _WIDTH:
        out.append(inline)
        return
    if about:
        out.extend("# " + line for line in _wrap(about))
    out.extend(prefix + line for line in lines)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: object) -> str:
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _toml(value: Any, field: FieldInfo | None = None) -> str:
    """``value`` written as TOML; long arrays wrap over several lines."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        extra = field.json_schema_extra if field is not None else None
        return oct(value) if isinstance(extra, dict) and extra.get("octal") else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, Path)):
        text = str(value)
        if "\\" in text and "'" not in text and "\n" not in text:
            return f"'{text}'"  # a literal string: regexes stay readable
        return json.dumps(text)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_toml(v) for v in (sorted(value) if isinstance(value, set | frozenset) else value)]
        one = "[" + ", ".join(items) + "]"
        if len(one) <= _WIDTH - 40:
            return one
        rows, row = [], ""
        for item in items:
            if row and len(row) + len(item) + 2 > _WIDTH - 6:
                rows.append(row)
                row = ""
            row += f"{item}, "
        rows.append(row)
        return "[\n" + "\n".join("    " + r.rstrip() for r in rows) + "\n]"
    raise TypeError(f"no TOML form for {value!r}")
