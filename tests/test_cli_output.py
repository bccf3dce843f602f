"""Listing commands as a user sees them: tables that fit 80 and 120 columns, ``--wide``,
``--format table|json|csv|tsv`` with ``--json`` as its alias, whole ids in JSON, lists as
lists (#23)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.cli.output import Column, render_table, short_ids, truncate
from tests.factories import make_event
from tests.test_audit import populate

LONG_SUBJECT = "A subject far too long for any terminal column " * 3


@pytest.fixture
def qscan(tmp_path: Path) -> Any:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')

    def run(*args: str, columns: int = 80) -> Any:
        return CliRunner().invoke(cli, ["-c", str(config), *args], env={"COLUMNS": str(columns)})

    assert run("db", "upgrade").exit_code == 0
    wide = make_event(sender="someone.with.a.long.name@subdomain.example.com",
                      recipients=[f"recipient{i}@example.org" for i in range(5)],
                      subject=LONG_SUBJECT)
    run.ids = populate(f"sqlite:///{tmp_path}/qscan.db", extra=[wide])  # type: ignore[attr-defined]
    run.ids["wide"] = wide.event_id  # type: ignore[attr-defined]
    holds = run("hold", "create", "Acme v. Example", "--custodian", "alice@example.com",
                "--reason", "litigation")
    assert holds.exit_code == 0, holds.output
    return run


LISTINGS = [("audit", "search"), ("quarantine", "list"), ("hold", "list")]


@pytest.mark.parametrize("command", LISTINGS)
@pytest.mark.parametrize("columns", [80, 120])
def test_tables_fit_the_terminal(qscan: Any, command: tuple[str, ...], columns: int) -> None:
    result = qscan(*command, columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) >= 3  # header, rule, at least one row
    assert max(len(line) for line in lines) <= columns
    header = lines[0].split()
    assert len(set(lines[1].split())) >= 1 and all(set(w) == {"-"} for w in lines[1].split())
    assert len(header) >= 3  # more than a squeezed column or two


def test_audit_search_at_80_and_120_columns(qscan: Any) -> None:
    narrow = qscan("audit", "search", columns=80).stdout
    assert "\u2026" in narrow  # long text cut with an ellipsis, not wrapped
    for column in ("time", "id", "sender", "subject"):
        assert column in narrow.splitlines()[0]
    row = next(line for line in narrow.splitlines() if line.startswith(qscan.ids["wide"][:0])
               and "someone" in line)
    assert "someone.with" in row  # a readable start, not one character per line
    full = qscan.ids["wide"]
    assert full not in narrow and full[:18] in narrow  # an id prefix every command accepts
    at120 = qscan("audit", "search", columns=120).stdout
    assert len(at120.splitlines()[0].split()) > len(narrow.splitlines()[0].split())
    wide = qscan("audit", "search", "--wide", columns=80).stdout
    assert full in wide and LONG_SUBJECT.strip() in wide and "\u2026" not in wide


def test_id_prefix_from_the_table_is_accepted(qscan: Any) -> None:
    line = next(x for x in qscan("audit", "search", "--subject", "Quarterly").stdout.splitlines()
                if "Quarterly" in x)
    prefix = line.split()[2]
    assert qscan.ids["e1"].startswith(prefix)
    shown = qscan("audit", "show", prefix, "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["message"]["event_id"] == qscan.ids["e1"]


@pytest.mark.parametrize("command", LISTINGS)
def test_every_format(qscan: Any, command: tuple[str, ...]) -> None:
    as_json = qscan(*command, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert rows and qscan(*command, "--json").stdout == as_json.stdout  # the alias
    as_csv = list(csv.DictReader(io.StringIO(qscan(*command, "--format", "csv").stdout)))
    tsv = qscan(*command, "--format", "tsv").stdout.splitlines()
    fields = tsv[0].split("\t")
    as_tsv = [dict(zip(fields, line.split("\t"), strict=True)) for line in tsv[1:]]
    ident = "hold_id" if command[0] == "hold" else "event_id"
    assert [r[ident] for r in as_csv] == [r[ident] for r in as_tsv] == [r[ident] for r in rows]
    assert all(len(r[ident]) == 36 for r in rows)  # whole ids outside the table
    refused = qscan(*command, "--json", "--format", "csv")
    assert refused.exit_code == 2


def test_json_recipients_are_a_list(qscan: Any) -> None:
    rows = json.loads(qscan("audit", "search", "--subject", "Überweisung", "--json").stdout)
    assert rows[0]["recipients"] == ["alice@example.com", "carol@example.net"]
    (entry,) = json.loads(qscan("quarantine", "list", "--json").stdout)
    assert entry["recipients"] == ["alice@example.com", "carol@example.net"]
    assert isinstance(entry["rules"], list)


def test_hold_list_shows_no_empty_query(qscan: Any) -> None:
    out = qscan("hold", "list", "--wide").stdout
    assert "Acme v. Example" in out and "{}" not in out and "query" not in out
    assert qscan("hold", "create", "Beta", "--custodian", "bob@example.org", "--subject",
                 "contract", "--reason", "x").exit_code == 0
    assert "--subject contract" in qscan("hold", "list", "--wide").stdout


# -- the renderer ---------------------------------------------------------------------
def test_truncate_counts_terminal_cells() -> None:
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdef", 4) == "abc\u2026"
    assert truncate("日本語テキスト", 5) == "日本\u2026"  # wide characters take two cells


def test_low_value_columns_go_first() -> None:
    cols = [Column("a"), Column("b", min_width=4), Column("c", drop=2), Column("d", drop=1)]
    rows = [{"a": "x" * 10, "b": "y" * 30, "c": "z" * 10, "d": "w" * 10}]
    out = render_table(rows, cols, width=40)
    assert max(len(line) for line in out.splitlines()) <= 40
    head = out.splitlines()[0].split()
    assert head[:2] == ["a", "b"] and "c" not in head  # c (drop=2) left before d (drop=1)
    assert "\u2026" in out


def test_short_ids_stay_unique() -> None:
    ids = ["0192f1c0-7a3e-7c4b-9d2e-000000000001", "0192f1c0-7a3e-7c4b-9d2e-000000000002",
           "0192f1c0-8888-7c4b-9d2e-000000000003"]
    short = short_ids(ids, 13)
    assert len(set(short)) == 3 and all(i.startswith(s) for i, s in zip(ids, short, strict=True))
    assert short_ids(ids[2:], 13) == ["0192f1c0-8888"]


def test_controls_in_mail_never_reach_the_terminal() -> None:
    out = render_table([{"s": "a\x1b[31mred\nnext"}], [Column("s")], width=80)
    assert "\x1b" not in out and out.count("\n") == 3


# -- id prefixes everywhere an id is ----------------------------------------------------
def test_notify_takes_an_event_id_prefix(tmp_path: Path) -> None:
    from tests.test_notify_delivery import journal_with

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    twins = [make_event(subject="one"), make_event(subject="two")]
    journal_with(tmp_path / "journal.db", twins).close()
    run = CliRunner()
    a, b = (ev.event_id for ev in twins)
    common = next(i for i in range(36) if a[i] != b[i])
    for command in ("plan", "preview"):
        ok = run.invoke(cli, ["-c", str(config), "notify", command, "--kind", "virus", a[:common + 1]]
                        if command == "preview" else ["-c", str(config), "notify", command, a[:common + 1]])
        assert ok.exit_code == 0, ok.output
    if common >= 8:
        ambiguous = run.invoke(cli, ["-c", str(config), "notify", "plan", a[:common]])
        assert ambiguous.exit_code == 1 and "several event ids" in ambiguous.output
    short = run.invoke(cli, ["-c", str(config), "notify", "plan", a[:5]])
    assert short.exit_code == 1 and "8+ characters" in short.output


def test_hold_release_takes_an_id_prefix(qscan: Any) -> None:
    (hold,) = json.loads(qscan("hold", "list", "--json").stdout)
    released = qscan("hold", "release", hold["hold_id"][:18], "--reason", "settled")
    assert released.exit_code == 0, released.output
    assert "released" in released.output


def test_quarantine_list_names_each_rule_once(tmp_path: Path) -> None:
    from ingest.event import Action, Category, Finding

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    run = CliRunner()
    assert run.invoke(cli, ["-c", str(config), "db", "upgrade"]).exit_code == 0
    twice = [Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature"),
             Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature"),
             Finding(scanner="internal", verdict=Category.VIRUS, name="double-extension")]
    ev = make_event(action=Action.QUARANTINE, category=Category.VIRUS, reason="virus", findings=twice)
    populate(f"sqlite:///{tmp_path}/qscan.db", extra=[ev])
    listed = run.invoke(cli, ["-c", str(config), "quarantine", "list", "--json"])
    rules = next(r["rules"] for r in json.loads(listed.stdout) if r["event_id"] == ev.event_id)
    assert rules == ["clamd:Eicar-Test-Signature", "internal:double-extension"]
    table = run.invoke(cli, ["-c", str(config), "quarantine", "list", "--wide"]).stdout
    assert table.count("Eicar-Test-Signature") == 1


def test_status_folds_its_lines_to_the_terminal(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    from tests.test_notify_delivery import journal_with

    journal_with(tmp_path / "journal.db", [make_event()]).close()
    result = CliRunner().invoke(cli, ["-c", str(config), "status", "--no-scanners"],
                                env={"COLUMNS": "60"})
    lines = result.stdout.splitlines()
    assert "daemon" in result.stdout and len(lines) > 3
    assert all(len(line) <= 60 or " " not in line.strip() for line in lines), lines
