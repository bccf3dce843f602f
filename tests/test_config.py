"""Config loading: defaults, path resolution, and errors that name file, line and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.config import Config, ConfigError, example_config, load_config, parse_config


def test_example_config_is_valid_and_complete(tmp_path: Path) -> None:
    cfg = parse_config(example_config(str(tmp_path)), tmp_path / "q.toml")
    assert cfg.journal_path == tmp_path / "journal.db"
    assert cfg.archive_maildir == tmp_path / "archive"
    assert cfg.sql_url == f"sqlite:///{tmp_path / 'qscan.db'}"
    assert cfg.daemon.socket_mode == 0o666


def _model_keys(model: type, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key of ``model`` and its sections, as dotted tuples (sections included)."""
    from qscan.config import _submodel, section_fields

    out: set[tuple[str, ...]] = set()
    for name, field in section_fields(model).items():
        if field.exclude:
            continue
        out.add((*prefix, name))
        sub = _submodel(field)
        if sub is not None:
            out |= _model_keys(sub, (*prefix, name))
    return out


def _data_keys(data: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    items = data.items() if isinstance(data, dict) else ()
    for name, value in items:
        out.add((*prefix, name))
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:  # an array of tables
                out |= _data_keys(item, (*prefix, name))
        elif isinstance(value, dict) and name not in _DICT_VALUED:
            out |= _data_keys(value, (*prefix, name))
    return out


_DICT_VALUED = {"checks", "allow_banned_by_domain", "exit_codes", "languages", "folder_days"}
_COMMENTED_SETTING = re.compile(r"^# (\[{1,2}[a-z_.]+\]{1,2}$|[a-z_]+ = )")


def _uncommented(text: str) -> str:
    """The example with every commented-out key and table switched on (descriptions stay
    comments); an array value continues over the lines up to its closing bracket."""
    out, open_array = [], False
    for line in text.splitlines():
        if open_array or _COMMENTED_SETTING.match(line):
            open_array = (open_array or line.rstrip().endswith("[")) and line != "# ]"
            line = line[2:]
        out.append(line)
    return "\n".join(out)


def test_example_names_every_key_of_every_section(tmp_path: Path) -> None:
    """Complete by construction: switching on every commented-out key gives a config that
    names every field of every section (nested and array tables too), and it is valid."""
    text = _uncommented(example_config(str(tmp_path)))
    data = tomllib.loads(text)
    missing = _model_keys(Config) - _data_keys(data)
    assert not missing, sorted(missing)
    cfg = parse_config(text, tmp_path / "q.toml")
    assert cfg.log.kafka is not None and cfg.retention.rules[0].name
    for key in ("log.kafka", "consumers", "journal"):
        assert f"[{key}]" in example_config()
    assert "\nsource = " in example_config() and "\ndisk_budget_mb = " in example_config()


def test_example_fits_100_columns_and_spells_defaults(tmp_path: Path) -> None:
    text = example_config(str(tmp_path))
    assert max(len(line) for line in example_config().splitlines()) <= 100
    assert parse_config(text, tmp_path / "q.toml").model_dump(exclude={"data_dir"}) == \
        Config(data_dir=tmp_path).model_dump(exclude={"data_dir"})


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


def test_configuration_doc_is_the_generated_example_and_names_every_section() -> None:
    """docs/configuration.md holds `qscan config example` as it is (defaults are written in the
    code only) and names each section's settings class."""
    from qscan.config import _submodel, section_fields

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == example_config()

    def sections(model: type, prefix: str = "") -> list[tuple[str, type]]:
        out = []
        for name, field in section_fields(model).items():
            sub = _submodel(field)
            if sub is not None:
                out += [(f"{prefix}{name}", sub), *sections(sub, f"{prefix}{name}.")]
        return out

    for key, model in sections(Config):
        assert f"| `[{key}]` | `{model.__module__}.{model.__qualname__}` |" in doc, key
