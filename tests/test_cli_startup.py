"""`qscan --help` (every command's) starts without the heavy libraries a command needs when it runs.

The start-up time itself is a benchmark figure (`make bench`, bench/cli_help.py), not a timed test;
what keeps it low is checked here: which modules printing help loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported when a command runs, never to print help: together they cost over a second.
HEAVY = ("sqlalchemy", "alembic", "pydantic", "matplotlib", "rich", "kafka", "psycopg", "jinja2", "babel")

WALK = """
import json, sys
import click
from qscan.cli import cli

def walk(cmd, path):
    yield path
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], path + [name])

paths = list(walk(cli, []))
for path in paths:
    try:
        cli.main(path + ["--help"], prog_name="qscan", standalone_mode=False)
    except SystemExit:
        pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print(json.dumps({"paths": len(paths), "loaded": loaded}))
"""


def test_no_help_imports_the_heavy_libraries() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", WALK, ",".join(HEAVY)], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["paths"] > 40  # every command and group was asked for its help
    assert result["loaded"] == []
