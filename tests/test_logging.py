"""What qscan writes to stderr: its own log lines in text or JSON, no timestamps of its own under
journald, no INFO chatter from libraries, no progress bars where nobody watches."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.logs import setup

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[Path]:
    """A real file as the log stream (journald detection compares its device and inode)."""
    path = tmp_path / "stderr"
    yield path
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == "qscan"]:
        root.removeHandler(h)
    root.setLevel(logging.WARNING)


def emit(path: Path, monkeypatch: pytest.MonkeyPatch, *, journald: bool = False, **kwargs: object) -> list[str]:
    with path.open("w") as f:
        if journald:
            st = os.fstat(f.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        else:
            monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        handler = setup(stream=f, **kwargs)  # type: ignore[arg-type]
        logging.getLogger("qscan.ops.supervisor").info("starting daemon")
        logging.getLogger("qscan.ops.supervisor").debug("argv ...")
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("kafka.conn").warning("broker down")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("ingest.daemon").exception("worker failed")
        handler.flush()
    return path.read_text().splitlines()


def test_text_lines_carry_time_and_pid_and_drop_library_info(stream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = emit(stream, monkeypatch)
    assert lines[0].endswith(f" {os.getpid()} qscan.ops.supervisor INFO starting daemon")
    assert lines[0][:4].isdigit() and lines[0][19] == "Z"  # 2026-11-25T10:00:00Z
    text = "\n".join(lines)
    assert "SQLiteImpl" not in text and "argv" not in text  # library INFO, our DEBUG: not by default
    assert "kafka.conn WARNING broker down" in text  # a library's warning is news
    assert "ingest.daemon ERROR worker failed" in text and "ValueError: boom" in text


def test_under_journald_no_timestamp_and_a_priority_prefix(stream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = emit(stream, monkeypatch, journald=True)
    pid = os.getpid()  # kept: the journal knows the unit's main pid, not a forked worker's
    assert lines[0] == f"<6>{pid} qscan.ops.supervisor INFO starting daemon"
    assert f"<4>{pid} kafka.conn WARNING broker down" in lines
    assert f"<3>{pid} ingest.daemon ERROR worker failed" in lines


def test_json_lines(stream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [json.loads(line) for line in emit(stream, monkeypatch, fmt="json")]
    assert [r["logger"] for r in records] == ["qscan.ops.supervisor", "kafka.conn", "ingest.daemon"]
    first = records[0]
    assert first["level"] == "info" and first["message"] == "starting daemon" and first["pid"] == os.getpid()
    assert first["time"].endswith("Z")
    assert "ValueError: boom" in records[2]["exc"]
    journal = [json.loads(line) for line in emit(stream, monkeypatch, fmt="json", journald=True)]
    assert all("time" not in r for r in journal)


def test_quiet_and_verbose(stream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = "\n".join(emit(stream, monkeypatch, verbosity=-1))
    assert "starting daemon" not in quiet and "broker down" in quiet and "worker failed" in quiet
    loud = "\n".join(emit(stream, monkeypatch, verbosity=1))
    assert "argv ..." in loud and "SQLiteImpl" in loud


def test_quiet_and_verbose_together_are_refused() -> None:
    result = CliRunner().invoke(cli, ["-q", "-v", "schema"])
    assert result.exit_code == 2 and "contradict" in result.output


def test_db_upgrade_prints_its_result_and_nothing_from_alembic(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JOURNAL_STREAM", None)
    out = subprocess.run([sys.executable, "-m", "qscan", "-c", str(config), "db", "upgrade"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stderr == ""
    assert out.stdout.strip().endswith("schema upgraded (empty) -> " + out.stdout.strip().split()[-1])


def test_no_progress_bar_where_nobody_watches(tmp_path: Path) -> None:
    from compliance import db

    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    result = CliRunner().invoke(cli, ["-c", str(config), "quarantine", "expire", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "expiring quarantine" not in result.output  # the bar's label: not drawn into a pipe or cron mail


def test_on_a_terminal_the_bar_appears_with_the_first_step_of_work() -> None:
    import io

    from rich.console import Console

    from qscan.cli.progress import progress_bar

    def run(steps: int, fail: bool) -> str:
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, width=80)
        try:
            with progress_bar(console, disable=False) as bar:
                task = bar.add_task("exporting M", total=None)
                if fail:
                    raise RuntimeError("the SQL store is gone")
                for _ in range(steps):
                    bar.update(task, completed=1, total=steps)
        except RuntimeError:
            pass
        return out.getvalue()

    assert run(3, fail=True) == ""  # an error before any work: no "0/?" bar before it
    assert "exporting M" in run(3, fail=False) and "1/3" in run(3, fail=False)
