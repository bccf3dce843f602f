"""The benchmark harness keeps working (tiny sizes; figures are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus import generate
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def test_corpus_is_deterministic_and_mixed() -> None:
    a = generate(100, big_mb=1, nested_depth=3)
    b = generate(100, big_mb=1, nested_depth=3)
    assert [m.data for m in a] == [m.data for m in b]
    kinds = [m.kind for m in a]
    assert kinds.count("plain") == 60 and kinds.count("alternative") == 20
    assert kinds.count("attachment") == 15 and kinds.count("blocked") == 5
    assert kinds[-2:] == ["huge", "nested"]


@pytest.mark.integration
def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    import shutil

    require("a C compiler (cc)", shutil.which("cc") is not None)
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--messages", "20", "--events", "50", "--concurrency", "2",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["end_to_end"]["2"]["msgs_per_s"] > 0 and r["end_to_end"]["2"]["non_zero"] == 0
    assert r["daemon_core"]["msgs_per_s"] > 0 and r["daemon_core"]["non_zero"] == 0
    assert r["floors"]["client_start_ms"] > 0
    assert r["consumers"]["archive_events_per_s"] > 0 and r["consumers"]["sqlite_events_per_s"] > 0
    assert "targets:" in proc.stdout
