"""Progress bars on the long commands that had none (replay, verify, retention apply): drawn
when stderr is a terminal, never into a pipe, cron mail or the journal (#23)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from compliance import db
from tests.factories import make_event
from tests.test_notify_delivery import journal_with

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    db.upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    journal_with(tmp_path / "journal.db", [make_event(subject=f"m{i}") for i in range(30)]).close()
    return config


def run(config: Path, *args: str, tty: bool) -> tuple[int, str]:
    """stdout to a pipe; stderr to a pseudo-terminal (``tty``) or a pipe. Returns (exit, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    env.pop("JOURNAL_STREAM", None)
    argv = [sys.executable, "-m", "qscan", "-c", str(config), *args]
    if not tty:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.stdout is not None
    proc.stdout.read()
    return proc.wait(timeout=60), seen.decode("utf-8", "replace")


COMMANDS = [
    (("replay", "summaries", "--yes"), "replaying summaries"),
    (("verify", "--no-files"), "verify:"),
]


@pytest.mark.parametrize(("args", "label"), COMMANDS)
def test_bar_on_a_terminal(site: Path, args: tuple[str, ...], label: str) -> None:
    _, stderr = run(site, *args, tty=True)
    assert label in stderr


@pytest.mark.parametrize(("args", "label"), [*COMMANDS, (("retention", "apply", "--dry-run"), "retention:")])
def test_no_bar_into_a_pipe_or_with_quiet(site: Path, args: tuple[str, ...], label: str) -> None:
    _, stderr = run(site, *args, tty=False)
    assert label not in stderr and "\u2501" not in stderr
    _, on_a_terminal_but_quiet = run(site, "-q", *args, tty=True)
    assert label not in on_a_terminal_but_quiet
