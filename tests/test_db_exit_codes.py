"""A database problem is exit 3 with one clear line (never 1, "tampering"; never a traceback),
and no command prints the SQL store's password."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from qscan.cli import cli
from qscan.redact import mask_url

COMMANDS = [
    ["verify"],
    ["audit", "search"],
    ["export", "--matter", "M", "--out", "OUT"],
    ["hold", "list"],
    ["retention", "apply", "--dry-run"],
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: connections are refused


def _run(tmp_path: Path, url: str, args: list[str]) -> tuple[int, str]:
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[sql]\nurl = "{url}"\n')
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = CliRunner().invoke(cli, ["-c", str(cfg), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("kind", ["unreachable", "bad-port", "no-driver"])
def test_database_problems_exit_3(tmp_path: Path, args: list[str], kind: str) -> None:
    url = {"unreachable": f"postgresql://qscan:hunter2@127.0.0.1:{_closed_port()}/qscan",
           "bad-port": "postgresql://qscan:hunter2@db.example:54x2/qscan",
           "no-driver": "nosuchdb://qscan:hunter2@db.example/qscan"}[kind]
    code, output = _run(tmp_path, url, args)
    assert code == 3, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output and "hunter2" not in output
    expected = {"unreachable": "refused", "bad-port": "bad [sql] url",
                "no-driver": "bad [sql] url"}[kind]
    assert expected in lines[0].lower() or expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_driver_module_is_exit_3(tmp_path: Path) -> None:
    # a dialect SQLAlchemy knows whose DBAPI module is not installed
    code, output = _run(tmp_path, "mysql://qscan:hunter2@db.example/qscan", ["verify"])
    assert code == 3 and "driver is not installed" in output and "hunter2" not in output


def test_config_check_masks_passwords(tmp_path: Path) -> None:
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nqmail_queue = "/bin/true"\n[sql]\n'
                   'url = "postgresql+psycopg://qscan:s3cr%40t-pw@db.example:5432/qscan"\n')
    text = CliRunner().invoke(cli, ["-c", str(cfg), "config", "check"])  # its start-up checks pass
    assert text.exit_code == 0, text.output
    assert "s3cr" not in text.output
    assert "sql.url = postgresql+psycopg://qscan:***@db.example:5432/qscan" in text.output
    as_json = CliRunner().invoke(cli, ["-c", str(cfg), "config", "check", "--json"])
    assert as_json.exit_code == 0 and "s3cr" not in as_json.output
    assert json.loads(as_json.output)["sql"]["url"].startswith("postgresql+psycopg://qscan:***@")


_WORD = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=20)


@given(user=st.from_regex(r"[a-z0-9_.-]{0,12}", fullmatch=True), password=_WORD,
       host=st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9a-z]{1,6})?", fullmatch=True))
def test_mask_url_never_leaks_the_password(user: str, password: str, host: str) -> None:
    url = f"postgresql+psycopg://{user}:{password}@{host}/qscan"
    masked = mask_url(f"cannot open {url} now")
    assert masked.startswith(f"cannot open postgresql+psycopg://{user}:***@")
    assert masked.endswith(" now")
    rest = masked[len(f"cannot open postgresql+psycopg://{user}:***@"):]
    assert password not in rest or password in f"{host}/qscan now"


def test_mask_url_leaves_other_text_alone() -> None:
    for text in ("sqlite:////var/lib/qscan/qscan.db", "postgresql://qscan@db/qscan",
                 "no url here: a:b@c"):
        assert mask_url(text) == text
