"""Start-up checks: everything the daemon verifies before it listens, and all `config check` runs.

``check(cfg)`` is the one function ``qscan daemon``, ``qscan run`` and ``qscan config check``
call, so what the check passes the daemon starts with: the enabled scanners are built by the
very factories the workers use (rules files read and compiled, DLP rules present), the real
qmail-queue is an executable file, the socket's group exists. ``consumers=True`` (config check,
``qscan run``) adds what the consumers `qscan run` starts need: with "notify" enabled, the
qmail-inject it sends with and the template directory. Every problem is listed, each as
``FILE:LINE: key 'x.y': message``; a rules file's own problems follow its key, each named by
the rules file, line, rule and key. Scanner names are already checked when the config is
parsed (qscan/config.py: SCANNER_NAMES, with a suggestion for a typo).
"""

from __future__ import annotations

import grp
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qscan.config import Config, ConfigError, locate
from qscan.wiring.pipeline import SCANNERS
from scanners.base import Scanner
from scanners.dlp.rules import DlpRulesError
from scanners.internal.policy import PolicyError


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the daemon would not start (or would temp-fail every message)."""

    file: Path
    line: int | None
    key: str  # 'daemon.qmail_queue'; in a rules file the rule's key ('action'), or ''
    message: str
    context: str = ""  # in a rules file: "rule #2 (zip)", "detector 'employee'"

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else str(self.file)]
        if self.context:
            parts.append(self.context)
        if self.key:
            parts.append(f"key '{self.key}'")
        parts.append(self.message)
        return ": ".join(parts)


class PreflightError(ConfigError):
    """The config parses but the daemon cannot run with it; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


class _Add(Protocol):
    def __call__(self, key: tuple[str, ...], message: str, *fallback: tuple[str, ...]) -> None: ...


def check(cfg: Config, *, consumers: bool = False) -> list[Scanner]:
    """Run every start-up check of the daemon (``consumers``: and of the consumers `qscan run`
    starts); the scanners built, or PreflightError naming every problem."""
    scanners, problems = run(cfg, consumers=consumers)
    if problems:
        raise PreflightError(problems)
    return scanners


def run(cfg: Config, *, consumers: bool = False) -> tuple[list[Scanner], list[Problem]]:
    """The scanners that could be built and every problem found."""
    source = cfg.source or Path("config")
    problems: list[Problem] = []

    def add(key: tuple[str, ...], message: str, *fallback: tuple[str, ...]) -> None:
        problems.append(Problem(source, locate(source, key, *fallback), ".".join(key), message))

    qq = _not_executable(cfg.daemon.qmail_queue)
    if qq:
        add(("daemon", "qmail_queue"), f"{qq} (the real qmail-queue every accepted message goes to)")
    group = cfg.daemon.socket_group
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            add(("daemon", "socket_group"), f"no such group {group!r} (the group qmail-smtpd runs with)")
    scanners = _scanners(cfg, problems, add)
    if consumers and "notify" in cfg.consumers.enabled:
        _notify(cfg, add)
    return scanners, problems


def _notify(cfg: Config, add: _Add) -> None:
    """What would make every notice fail (and be retried until given up) or silently fall back."""
    n = cfg.notify
    if n.transport == "qmail-inject":
        why = _not_executable(n.qmail_inject)
        if why:
            add(("notify", "qmail_inject"),
                f"{why} (transport = \"qmail-inject\" sends every notice with it)", ("notify", "transport"))
    if n.template_dir is not None and not n.template_dir.is_dir():
        add(("notify", "template_dir"), f"{n.template_dir} is not a directory (the built-in templates "
                                        "would be used instead of yours)")


def _scanners(cfg: Config, problems: list[Problem], add: _Add) -> list[Scanner]:
    """Each enabled scanner built by SCANNERS, the factories the daemon's workers use."""
    built: list[Scanner] = []
    for name in cfg.scanners.enabled:
        entry = SCANNERS[name]
        # the key a failure comes from: its rules file, the setting it needs, or its section
        key = (name, "rules") if entry.rules else (name, entry.needs) if entry.needs else (name,)
        rules: Path | None = getattr(cfg, name).rules if entry.rules else None
        if entry.rules == "required" and rules is None:
            add(key, f"'{name}' is in scanners.enabled but no rules file is set: it needs rules to "
                     f"know what to look for (docs/{name}.md)", ("scanners", "enabled"))
            continue
        unreadable = _unreadable(rules) if rules is not None else None
        if unreadable:
            add(key, unreadable)
            continue
        try:
            built.append(entry.build(cfg))
        except ConfigError as exc:
            cause = exc.__cause__
            if rules is not None and isinstance(cause, PolicyError | DlpRulesError):
                found = _rules_problems(rules, cause)
                add(key, f"the rules file {rules} does not load ({len(found)} error(s) follow)")
                problems.extend(found)
            else:
                add(key, str(exc), ("scanners", "enabled"))
        except (ValueError, OSError) as exc:
            add(key, str(exc), ("scanners", "enabled"))
    return built


def _unusable(path: Path, what: str, need: int, missing: str | None = None) -> str | None:
    """Why ``path`` is not a regular file this process may use as ``what`` (``need``:
    os.X_OK to run it, os.R_OK to read it), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return missing or f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a directory, not {what}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if not os.access(path, need):
        verb = "executable" if need == os.X_OK else "readable"
        return f"{path} is not {verb} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _not_executable(path: Path) -> str | None:
    return _unusable(path, "a program", os.X_OK)


def _unreadable(path: Path) -> str | None:
    return _unusable(path, "a rules file", os.R_OK, missing=f"{path}: no such file")


# -- a rules file's problems, each with its line ---------------------------------------------------
# What the loaders write after the file name: an optional ":LINE", then "rule #N (id)" and/or
# "detector 'NAME'", then the key as "key 'k': " (DLP) or "k: " (policy rules), then the message.
_LINE = re.compile(r"^:(\d+)")
_RULE = re.compile(r"^rule #(\d+)(?: \(([^)]*)\))?$")
_DETECTOR = re.compile(r"^detector '([^']+)'$")
_KEY_QUOTED = re.compile(r"^key '([^']+)': (.*)$", re.S)
_KEY_PLAIN = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.+)$", re.S)
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _rules_problems(path: Path, error: PolicyError | DlpRulesError) -> list[Problem]:
    if isinstance(error, PolicyError):
        raw = [f"{p.where}: {p.message}" for p in error.problems if p.level == "error"]
    else:
        raw = list(error.problems)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    out: list[Problem] = []
    for line in raw:
        problem = _rules_problem(path, text, line)
        if not any((p.line, p.key, p.message) == (problem.line, problem.key, problem.message) for p in out):
            out.append(problem)  # a bad detector is named once, not again for each rule using it
    return out


def _rules_problem(path: Path, text: str, raw: str) -> Problem:
    rest = raw[len(str(path)):] if raw.startswith(str(path)) else ": " + raw
    lineno: int | None = None
    m = _LINE.match(rest)
    if m:
        lineno, rest = int(m.group(1)), rest[m.end():]
    rest = rest.removeprefix(": ")
    rule: int | None = None
    detector: str | None = None
    context: list[str] = []
    while True:
        head, sep, tail = rest.partition(": ")
        if not sep:
            break
        if (r := _RULE.match(head)) is not None:
            rule = int(r.group(1))
        elif (d := _DETECTOR.match(head)) is not None:
            detector = d.group(1)
        else:
            break
        context.append(head)
        rest = tail
    key = ""
    k = _KEY_QUOTED.match(rest) or _KEY_PLAIN.match(rest)
    if k is not None:
        key, rest = k.group(1), k.group(2)
    if lineno is None:
        t = _TOML_LINE.search(rest)
        if t is not None:
            lineno = int(t.group(1))
        else:
            if detector is not None:
                lineno = _rules_line(text, None, detector, key)
            if lineno is None and rule is not None:
                lineno = _rules_line(text, rule, None, key)
    return Problem(path, lineno, key, rest, ": ".join(context))


def _rules_line(text: str, rule: int | None, detector: str | None, key: str) -> int | None:
    """The line of ``key`` in the ``rule``-th [[rule]] table (or in [detectors.DETECTOR]);
    the table's own line when the key is not written there."""
    header = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(rf"^\s*{re.escape(key.split('.')[0])}\s*=") if key else None
    rules_seen, inside, table_line = 0, False, None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            name = [p.strip().strip('"').strip("'") for p in m.group(2).split(".")]
            if m.group(1) == "[[" and name == ["rule"]:
                rules_seen += 1
                inside = detector is None and rules_seen == rule
            else:
                inside = rule is None and detector is not None and name == ["detectors", detector]
            if inside and table_line is None:
                table_line = lineno
            elif not inside and table_line is not None:
                return table_line
            continue
        if inside and assign is not None and assign.match(line):
            return lineno
    return table_line
