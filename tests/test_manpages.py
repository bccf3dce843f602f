"""Man pages and shell completion come from the click tree, so they say what the CLI does."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.cli.manpages import pages
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def test_committed_man_pages_match_the_cli() -> None:
    """`make man` was run after the last CLI change (the wheel installs man/*.1)."""
    wanted = pages()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "man").glob("*.1")}
    assert sorted(committed) == sorted(wanted), "run `make man`"
    stale = [name for name, text in wanted.items() if committed[name] != text]
    first = "".join(difflib.unified_diff(committed[stale[0]].splitlines(True),
                                         wanted[stale[0]].splitlines(True))) if stale else ""
    assert not stale, f"run `make man`: {stale}\n{first}"
    assert {"qscan.1", "qscan-db-upgrade.1", "qscan-run.1", "qscan-completion.1"} <= set(wanted)


def test_a_page_renders_with_nroff() -> None:
    nroff = shutil.which("nroff")
    require("nroff (groff-base)", nroff is not None)
    assert nroff is not None
    out = subprocess.run([nroff, "-man", "-Tutf8", "-ww", str(ROOT / "man" / "qscan-db-upgrade.1")],
                         capture_output=True, text=True, check=True)
    text = re.sub(r".\x08", "", out.stdout)  # overstruck bold and underline -> plain text
    assert "qscan db upgrade [OPTIONS]" in text and "--revision" in text and "qscan-db(1)" in text
    assert out.stderr == ""  # no roff warnings


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0 and "_QSCAN_COMPLETE" in result.output


def test_completion_completes_commands_and_choices() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_QSCAN_COMPLETE": "bash_complete"}

    def complete(words: str) -> list[str]:
        e = {**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        out = subprocess.run([sys.executable, "-c", "from qscan.cli import main; main()"], env=e,
                             capture_output=True, text=True, check=True).stdout
        return [line.split(",", 1)[1] for line in out.splitlines()]

    assert "daemon" in complete("qscan da") and "db" not in complete("qscan da")
    assert complete("qscan consume ") == ["archive", "summaries", "notify", "index"]
    bash = subprocess.run(["bash", "-c", 'eval "$(qscan completion bash)" && complete -p qscan'],
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                          capture_output=True, text=True)
    assert bash.returncode == 0 and "qscan" in bash.stdout, bash.stderr
