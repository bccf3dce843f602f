"""A command that needs an extra the install lacks says which one, in one line (exit 78, which
`qscan run` reads as "leave it stopped"), never a traceback. The missing library is made missing
for real in the child (``sys.modules[name] = None`` makes its import fail as an absent one does);
tests/test_wheel.py meets the real thing in a base install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qscan.extras import MODULES, hint, missing_extra

ROOT = Path(__file__).resolve().parent.parent
WITHOUT = "import sys\nfor m in sys.argv[1].split(','): sys.modules[m] = None\nsys.argv[1:2] = []\n" \
          "from qscan.cli import main\nsys.argv[0] = 'qscan'\nmain()\n"


def qscan_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT, modules, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


@pytest.mark.parametrize("command", [["relay", "--once"], ["kafka", "init"], ["consume", "archive", "--source", "kafka", "--once"]])
def test_kafka_commands_without_kafka(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[log.kafka]\nbootstrap_servers = ["127.0.0.1:9"]\n')
    out = qscan_without("kafka", "-c", str(config), *command)
    assert out.returncode == 78, out.stderr
    assert out.stderr.splitlines() == ["qscan: " + hint("kafka")]
    assert "pip install 'qscan[kafka]'" in out.stderr


def test_postgres_url_without_psycopg(tmp_path: Path) -> None:
    config = tmp_path / "qscan.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[sql]\nurl = "postgresql+psycopg://qscan@127.0.0.1:9/qscan"\n')
    for args in (["db", "upgrade"], ["audit", "search"]):
        out = qscan_without("psycopg", "-c", str(config), *args)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.splitlines()) == 1 and "pip install 'qscan[postgres]'" in out.stderr, out.stderr


def test_missing_extra_follows_the_exception_chain() -> None:
    try:
        try:
            import psycopg_c_not_here  # type: ignore[import-not-found]  # noqa: F401
        except ModuleNotFoundError as inner:
            inner.name = "psycopg_c"
            raise RuntimeError("no driver") from inner
    except RuntimeError as exc:
        assert missing_extra(exc) == "postgres"
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert set(MODULES.values()) == {"kafka", "postgres", "signing", "web"}
