"""One vocabulary for flags (#23): every option of every command is in docs/cli.md's table,
every row there is used, and the rules written under it hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from qscan.cli import cli
from qscan.cli.db import When

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HIDDEN_ALIASES = {"--from-start": "--from-beginning", "--partitions": "--partition"}
LISTINGS = {("audit", "search"), ("quarantine", "list"), ("hold", "list"), ("notify", "outbox")}


def commands(cmd: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from commands(sub, (*path, name))


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option)]


def vocabulary() -> set[str]:
    text = DOC.read_text()
    section = text.split("## Option vocabulary", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(-{1,2}[a-z][a-z-]*)`", line.split(" | ")[0]))
    return names


def test_every_option_is_in_the_vocabulary_and_back() -> None:
    words = vocabulary()
    used: set[str] = set()
    unknown = []
    for path, cmd in commands():
        for opt in options(cmd):
            for name in opt.opts + opt.secondary_opts:
                used.add(name)
                if name not in words and not (opt.hidden and name in HIDDEN_ALIASES):
                    unknown.append(f"qscan {' '.join(path)} {name}")
    assert unknown == [], "options missing from docs/cli.md's vocabulary"
    assert words - used == set(), "docs/cli.md names options no command has"


def test_visible_options_have_help_and_hidden_ones_are_old_names() -> None:
    for path, cmd in commands():
        for opt in options(cmd):
            where = f"qscan {' '.join(path)} {opt.opts[0]}"
            if opt.hidden:
                assert opt.opts[0] in (*HIDDEN_ALIASES, "--now"), where
            elif opt.opts[0] not in ("--version", "-h", "--help"):
                assert opt.help, f"{where} has no help text"


def test_times_go_through_one_parser() -> None:
    for path, cmd in commands():
        for opt in options(cmd):
            if opt.name in ("since", "until", "now"):
                assert isinstance(opt.type, When), f"qscan {' '.join(path)} {opt.opts[0]}"


def test_json_is_an_alias_of_format_json_and_listings_have_every_format() -> None:
    for path, cmd in commands():
        opts = {o.opts[0]: o for o in options(cmd)}
        fmt = opts.get("--format")
        choices = list(getattr(fmt.type, "choices", [])) if fmt else []
        assert ("--json" in opts) == ("json" in choices), f"qscan {' '.join(path)}"
        if path in LISTINGS:
            assert choices == ["table", "json", "csv", "tsv"] and "--wide" in opts, path


def test_report_since_takes_what_audit_since_takes(tmp_path: Path) -> None:
    from compliance import db

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    for since in ("5y", "2026-01-01", "2026-01-01T08:00", "90m"):
        for args in (["report", "--out", str(tmp_path / "r"), "--since", since],
                     ["audit", "search", "--count", "--since", since]):
            result = CliRunner().invoke(cli, ["-c", str(config), *args])
            assert result.exit_code == 0, (args, result.output)
    bad = CliRunner().invoke(cli, ["-c", str(config), "report", "--out", str(tmp_path / "r"),
                                   "--since", "someday"])
    assert bad.exit_code == 2 and "is not a date" in bad.output


def test_old_flag_names_still_work(tmp_path: Path) -> None:
    from compliance import db
    from tests.factories import make_event
    from tests.test_notify_delivery import journal_with

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    journal_with(tmp_path / "journal.db", [make_event()]).close()
    for flag in ("--from-beginning", "--from-start"):
        run = CliRunner().invoke(cli, ["-c", str(config), "consume", "summaries", "--once", flag])
        assert run.exit_code == 0 and "applied 1 events" in run.output, run.output
    replay = CliRunner().invoke(cli, ["-c", str(config), "replay", "summaries", "--yes"])
    assert replay.exit_code == 0 and "replayed 1 events" in replay.output, replay.output


def test_install_alone_checks(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "install", "--user", "root"])
    assert "--check" not in result.output  # no "Missing option '--check'"
    assert result.exit_code in (0, 1) and ("problem(s)" in result.output
                                           or "everything is in place" in result.output)


def test_a_bare_sender_is_a_local_part_in_the_hunt_as_in_the_audit() -> None:
    from compliance.hunt import HuntFilter

    def hunts(sender: str) -> bool:
        return HuntFilter(sender=sender).matches(None, "alice@example.com", ["bob@example.org"], "inbound")

    assert hunts("alice") and hunts("ALICE") and hunts("alice@example.com") and hunts("*@example.com")
    assert not hunts("bob") and not hunts("alice@example.org")
    assert HuntFilter(sender="<>").matches(None, "", ["bob@example.org"], "inbound")  # bounces
