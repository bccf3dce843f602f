"""Config loading: defaults, path resolution, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.config import ConfigError, example_config, load_config, parse_config


def test_example_config_is_valid_and_complete(tmp_path: Path) -> None:
    cfg = parse_config(example_config(str(tmp_path)), tmp_path / "q.toml")
    assert cfg.journal_path == tmp_path / "journal.db"
    assert cfg.archive_maildir == tmp_path / "archive"
    assert cfg.sql_url == f"sqlite:///{tmp_path / 'qscan.db'}"
    assert cfg.daemon.socket_mode == 0o666


def test_empty_config_uses_documented_defaults(tmp_path: Path) -> None:
    cfg = parse_config("", tmp_path / "q.toml")
    assert cfg.data_dir == Path("/var/lib/qscan")
    assert cfg.daemon.socket == Path("/run/qscan/qscan.sock")
    assert cfg.daemon.workers == 4
    assert cfg.daemon.max_message_size == 50 * 1024 * 1024


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = parse_config('data_dir = "data"\n[sql]\nurl = "sqlite:///db/x.db"\n', tmp_path / "q.toml")
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.sql_url == f"sqlite:///{tmp_path / 'db/x.db'}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[daemon]\nworkers = 0\n", "q.toml:2: key 'daemon.workers': Input should be greater than or equal to 1"),
        ("data_dir = '/x'\n[daemon]\nsocket = '/s'\nworkerz = 3\n", "q.toml:4: key 'daemon.workerz': unknown key"),
        ("[archive]\n\nfilter = '('\n", "q.toml:3: key 'archive.filter': Value error, invalid regular expression"),
        ("[summary_log]\ntarget = 'carrier-pigeon'\n", "q.toml:2: key 'summary_log.target'"),
        ("[daemon]\nmax_message_size = 'big'\n", "q.toml:2: key 'daemon.max_message_size'"),
        ("[nonsense]\na = 1\n", "q.toml:1: key 'nonsense': unknown key"),
        ("x = [\n", "q.toml: TOML syntax error"),
        ("[daemon\n", "line 1"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "q.toml")
    assert expected in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    qq = tmp_path / "qmail-queue"
    qq.write_text("#!/bin/sh\nexit 0\n")
    qq.chmod(0o755)
    good.write_text(example_config(str(tmp_path)).replace("/var/qmail/bin/qmail-queue", str(qq)))
    res = CliRunner().invoke(cli, ["-c", str(good), "config", "check"])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and f"journal.path = {tmp_path / 'journal.db'}" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nworkers = -1\n")
    res = CliRunner().invoke(cli, ["-c", str(bad), "config", "check"])
    assert res.exit_code == 2
    assert f"{bad}:2: key 'daemon.workers'" in res.output


def test_cli_help_teaches() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert "QMAILQUEUE" in res.output and "config example" in res.output
