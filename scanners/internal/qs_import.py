"""Import Qmail-Scanner's ``quarantine-events.txt`` as qscan rules, so a site can migrate.

The file is TAB-separated ``value<TAB>type<TAB>description`` (runs of TABs
allowed, ``#`` comments). ``type`` is either ``SIZE=N`` — an attachment rule,
``N = -1`` for any size — or a header name with its colon (``Subject:``); the
``Policy-Subject:`` spelling is read as the ``Subject`` header. Values are
taken as Qmail-Scanner did: a leading-dot value is a filename extension,
anything with regex metacharacters a case-insensitive regex, anything else an
exact filename. Qmail-Scanner filed entries whose description starts with
``Policy:`` as policy blocks and the rest as viruses; so does the import.
Every imported rule quarantines, as Qmail-Scanner did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from scanners.internal.safe_regex import RegexError, compile_regex

_SIZE = re.compile(r"^SIZE\s*=\s*(-?\d+)$", re.I)
_OLD_SIZE = re.compile(r"^(-?\d+)$")  # Qmail-Scanner 1.x wrote the bare size
_HEADER = re.compile(r"^(?:Policy-)?([A-Za-z0-9][A-Za-z0-9-]{0,75}):$")
_REGEX_META = set("\\^$*+?()[]{}|")


@dataclass
class ImportResult:
    rules: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # 'line N: why'

    def toml(self, source: str = "quarantine-events.txt") -> str:
        head = (
            f"# qscan policy rules imported from {source} by `qscan policy import`.\n"
            "# Review them, then point [internal] rules at this file and run `qscan policy check`.\n\n"
        )
        return head + tomli_w.dumps({"rule": self.rules}) if self.rules else head


def _filename_condition(value: str) -> dict[str, list[str]]:
    if value.startswith(".") and not (_REGEX_META & set(value[1:])):
        return {"filename": [f"*{value}"]}
    if _REGEX_META & set(value):
        return {"filename_regex": [value]}
    return {"filename": [value]}


def _regex_or_literal(value: str) -> str:
    try:
        compile_regex(value)
        return value
    except RegexError:
        return re.escape(value)


def import_events(text: str) -> ImportResult:
    out = ImportResult()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"\t+", line.strip("\r\n"), maxsplit=2)
        if len(fields) < 2:
            out.skipped.append(f"line {lineno}: expected value<TAB>type<TAB>description")
            continue
        value, kind = fields[0].strip(), fields[1].strip()
        description = fields[2].strip() if len(fields) > 2 else ""
        if not value:
            out.skipped.append(f"line {lineno}: empty value")
            continue
        policy = description.lower().startswith("policy:") or kind.lower().startswith("policy-")
        rule: dict[str, Any] = {
            "id": f"qs-{lineno}",
            "description": description or value,
            "action": "quarantine",
            "category": "policy" if policy else "virus",
        }
        size = _SIZE.match(kind) or _OLD_SIZE.match(kind)
        header = _HEADER.match(kind)
        if size:
            rule.update(_filename_condition(value))
            n = int(size.group(1))
            if n >= 0:
                rule["min_size"] = rule["max_size"] = n
        elif header:
            rule["header"] = {header.group(1): _regex_or_literal(value)}
        else:
            out.skipped.append(f"line {lineno}: unknown type {kind!r} (expected SIZE=N or Header:)")
            continue
        if "filename_regex" in rule:
            try:
                compile_regex(rule["filename_regex"][0])
            except RegexError:
                rule.pop("filename_regex")
                rule["filename"] = [value.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")]
        out.rules.append(rule)
    return out
