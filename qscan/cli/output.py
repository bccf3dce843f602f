"""How listing commands print: one ``--format table|json|csv|tsv`` (``--json`` its alias),
``--wide``, and tables that fit the terminal.

A table is drawn at the terminal's width (``COLUMNS`` wins, as for every program that
asks the terminal; 80 when stdout is not a terminal and ``COLUMNS`` is unset). When the
columns do not fit, the least useful ones are dropped first (each :class:`Column` has a
``drop`` rank: 0 never, higher goes sooner), then the long text columns are shortened,
each cut ending in "…". ``--wide`` shows every column whole. Identifiers are never cut
with "…": a table shows the shortest prefix (at least ``id_min`` characters) that tells the
listed rows apart, which every command taking an id accepts; JSON, CSV and TSV always carry
the whole id and every value exactly (recipients as a list in JSON).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

TABLE_FORMATS = ("table", "json", "csv", "tsv")
TEXT_FORMATS = ("text", "json")
ELLIPSIS = "\u2026"
GAP = 2


@dataclass(frozen=True)
class Column:
    """One column of a table: ``key`` in the rows, its ``header``, how soon it is dropped
    when the terminal is narrow (``drop``: 0 never; higher first), the narrowest it may be
    shortened to (``min_width``; ``None``: never shortened), and whether it is an id
    (shown as a unique prefix of ``id_min`` characters or more)."""

    key: str
    header: str = ""
    drop: int = 0
    min_width: int | None = None
    right: bool = False
    ident: bool = False
    id_min: int = 18  # uuid7: 48 bits of milliseconds and 12 random bits

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


def terminal_width() -> int:
    """``COLUMNS`` when set (a number), else the terminal's width, else 80."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return shutil.get_terminal_size((80, 24)).columns


def cell_width(text: str) -> int:
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, ending in "…" when anything was cut."""
    if cell_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for c in text:
        w = cell_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + ELLIPSIS


def wrap(line: str, width: int | None = None, *, indent: int = 4) -> str:
    """A line of a report in words folded at word boundaries to the terminal's width, the
    continuation lines indented by ``indent``; a word longer than a line is left whole."""
    import textwrap

    width = terminal_width() if width is None else width
    if cell_width(line) <= width:
        return line
    return textwrap.fill(line, width, subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False)


def plain(value: Any) -> str:
    """A value as one line of text a terminal cannot misread (controls become spaces)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        from ingest.vocabulary import utc

        return utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = str(value)
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def short_ids(ids: Sequence[str], minimum: int) -> list[str]:
    """The shortest prefixes (at least ``minimum`` characters) telling ``ids`` apart."""
    n = minimum
    while n < max((len(i) for i in ids), default=0):
        cut = [i[:n] for i in ids]
        clashes = {c for c in cut if cut.count(c) > 1} - set(ids)
        if not clashes or all(len(i) <= n for i in ids):
            break
        n += 1
    return [i[:n] for i in ids]


MIN_COMFORT = 12  # a shortened text column keeps at least this (more on wide terminals) before a column goes


def _fit(columns: list[Column], natural: dict[str, int], width: int) -> tuple[list[Column], dict[str, int]]:
    """Drop the least useful columns until the shortenable ones keep a readable width, then
    shorten the widest of those, one cell at a time, until the table fits."""
    shown = list(columns)

    def needs(col: Column, floor: int) -> int:
        if col.min_width is None:
            return natural[col.key]
        return min(natural[col.key], max(col.min_width, floor))

    for floor in (max(MIN_COMFORT, width // 6), 0):  # readable text first; else only fit at all
        while sum(needs(c, floor) for c in shown) + GAP * (len(shown) - 1) > width:
            victim = max((c for c in shown if c.drop), key=lambda c: c.drop, default=None)
            if victim is None:
                break
            shown.remove(victim)
    widths = {c.key: natural[c.key] for c in shown}
    excess = sum(widths.values()) + GAP * (len(shown) - 1) - width
    while excess > 0:
        candidates = [c for c in shown if c.min_width is not None and widths[c.key] > c.min_width]
        if not candidates:
            break
        widest = max(candidates, key=lambda c: widths[c.key])
        widths[widest.key] -= 1
        excess -= 1
    return shown, widths


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *,
                 width: int | None = None, wide: bool = False,
                 cells: Callable[[dict[str, Any], Column], Any] | None = None) -> str:
    """Rows as an aligned text table fitting ``width`` (default: the terminal's)."""
    width = terminal_width() if width is None else width

    def text(row: dict[str, Any], col: Column) -> str:
        return plain(cells(row, col) if cells else row.get(col.key))

    table: dict[str, list[str]] = {c.key: [text(r, c) for r in rows] for c in columns}
    for col in columns:
        if col.ident and not wide:
            table[col.key] = short_ids(table[col.key], col.id_min)
    natural = {c.key: max([cell_width(c.title), *(cell_width(v) for v in table[c.key])])
               for c in columns}
    if wide:
        shown, widths = list(columns), natural
    else:
        shown, widths = _fit(list(columns), natural, width)

    def line(values: Iterable[tuple[Column, str]]) -> str:
        out = []
        for col, value in values:
            value = truncate(value, widths[col.key])
            pad = " " * (widths[col.key] - cell_width(value))
            out.append(pad + value if col.right else value + pad)
        return (" " * GAP).join(out).rstrip()

    lines = [line((c, c.title) for c in shown),
             line((c, "-" * widths[c.key]) for c in shown)]
    lines += [line((c, table[c.key][i]) for c in shown) for i in range(len(rows))]
    return "\n".join(lines) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _flat(value: Any, sep: str = ",") -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return sep.join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    return value


def render_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """CSV for spreadsheets: lists joined with ',', formula-like cells get a leading quote
    (CSV injection: senders and subjects come from strangers); JSON keeps values exact."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        out = {}
        for k in fields:
            value = _flat(row.get(k))
            if isinstance(value, str) and value.startswith(_FORMULA_START):
                value = "'" + value
            out[k] = value
        writer.writerow(out)
    return buf.getvalue()


def render_tsv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """Tab-separated, one record a line, for cut/awk: tabs and line breaks inside a value
    become spaces, lists are joined with ','."""
    def cell(value: Any) -> str:
        value = _flat(value)
        text = "" if value is None else str(value)
        return "".join(" " if c in "\t\r\n\v\f\x85\u2028\u2029" else c for c in text)

    lines = ["\t".join(fields)]
    lines += ["\t".join(cell(row.get(k)) for k in fields) for row in rows]
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    """Exact values for tools: times in ISO 8601, whole ids, lists as lists."""
    def default(v: object) -> str:
        if isinstance(v, datetime):
            return v.isoformat()
        raise TypeError(f"not JSON: {type(v).__name__}")

    return json.dumps(value, indent=2, ensure_ascii=False, default=default) + "\n"


def emit_rows(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str, *,
              wide: bool = False, fields: Sequence[str] | None = None, empty: str = "nothing",
              footer: str | None = None,
              cells: Callable[[dict[str, Any], Column], Any] | None = None) -> None:
    """Print ``rows`` in ``fmt``; ``fields``: the csv/tsv columns (default: every key of the
    first row). The table's ``footer`` and the ``empty`` note go to stderr."""
    keys = list(fields or (rows[0].keys() if rows else [c.key for c in columns]))
    if fmt == "json":
        click.echo(to_json(list(rows)), nl=False)
    elif fmt == "csv":
        click.echo(render_csv(rows, keys), nl=False)
    elif fmt == "tsv":
        click.echo(render_tsv(rows, keys), nl=False)
    elif rows:
        click.echo(render_table(rows, columns, wide=wide, cells=cells), nl=False)
        if footer:
            click.echo(footer, err=True)
    else:
        click.echo(empty, err=True)


def output_options(kind: str = "table", *, default: str | None = None) -> Callable[[F], F]:
    """``--format`` (table|json|csv|tsv, or for a report that is not a table text|json), the
    ``--json`` alias of ``--format json``, and for tables ``--wide``. A table command
    receives ``fmt`` and ``wide``, a text one ``as_json``."""
    choices = TABLE_FORMATS if kind == "table" else TEXT_FORMATS
    default = default or choices[0]

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fmt, as_json = kwargs.pop("fmt"), kwargs.pop("as_json")
            if as_json and fmt not in (None, "json"):
                raise click.UsageError(f"--json and --format {fmt} contradict each other")
            chosen = "json" if as_json else (fmt or default)
            if kind == "table":
                kwargs["fmt"] = chosen
            else:  # a report in words or one JSON document: the command asks "as JSON?"
                kwargs["as_json"] = chosen == "json"
            return fn(*args, **kwargs)

        helps = {"table": "table (fits the terminal), json (exact, for tools), csv "
                          "(spreadsheets) or tsv (cut/awk)",
                 "text": "text, or json (exact, for tools)"}
        out: Any = wrapper
        if kind == "table":
            out = click.option("--wide", is_flag=True,
                               help="table: every column, nothing shortened (lines may wrap)")(out)
        out = click.option("--json", "as_json", is_flag=True, help="same as --format json")(out)
        out = click.option("--format", "fmt", type=click.Choice(choices), default=None,
                           help=f"{helps[kind]} [default: {default}]")(out)
        return out

    return deco
