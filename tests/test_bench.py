"""The benchmark harness keeps working (tiny sizes; figures are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus import generate
from bench.run import floor_maildir, start_ms
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


def test_start_ms_reports_the_childs_cpu_not_ours() -> None:
    # the child burns ~60 ms of CPU; the parent only waits
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.06: pass"
    wall, cpu = start_ms([sys.executable, "-S", "-c", burn], runs=3)
    assert cpu >= 55 and wall >= cpu * 0.9


def test_maildir_floor_delivers_and_cleans_up(tmp_path: Path) -> None:
    corpus = generate(20, big_mb=1, nested_depth=2)[:-2]  # steady messages only
    assert floor_maildir(corpus, tmp_path) > 0
    assert list(tmp_path.iterdir()) == []  # its maildir was temporary


@pytest.mark.integration
def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    import shutil

    from qscan.testing.servers import binary

    require("a C compiler (cc)", shutil.which("cc") is not None)
    require("rspamd (the bench's side-by-side anchor)", binary("rspamd") is not None)
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
    # where the CPU went: the daemon, the harness's senders, the whole machine
    core = r["daemon_core"]
    assert core["daemon_cpu_ms_per_msg"] > 0 and core["driver_cpu_ms_per_msg"] > 0
    assert core["machine_cpu_ms_per_msg"] >= core["daemon_cpu_ms_per_msg"] * 0.5
    f = r["floors"]
    assert f["client_start_ms"] > 0 and f["client_start_cpu_ms"] > 0 and f["python_S_start_cpu_ms"] > 0
    assert f["maildir_files_per_s"] > 0
    ceiling = r["machine"]["cpus"] * 1000 / f["client_start_cpu_ms"]
    assert f["e2e_ceiling_msgs_per_s"] == pytest.approx(ceiling, rel=0.01)
    # the daemon's memory is sampled during the end-to-end run too (it used to read 0.0)
    assert r["end_to_end"]["2"]["pss_mb"] > 0
    assert "x ceiling" in proc.stdout
    archive_row = next(line for line in proc.stdout.splitlines() if "archive events per s" in line)
    assert "x floor" in archive_row
    assert r["consumers"]["archive_events_per_s"] > 0 and r["consumers"]["sqlite_events_per_s"] > 0
    assert "targets:" in proc.stdout
    # rspamd ran on the same corpus at the same concurrency, and qscan's rate reads as a ratio to it
    rspamd = r["anchors"]["rspamd"]["2"]
    assert rspamd["msgs_per_s"] > 0 and rspamd["failed"] == 0 and rspamd["server_cpu_ms_per_msg"] > 0
    assert r["vs_anchors"]["rspamd"]["2"] == pytest.approx(
        r["end_to_end"]["2"]["msgs_per_s"] / rspamd["msgs_per_s"], abs=0.01)
    assert "qscan end to end" in next(line for line in proc.stdout.splitlines() if "rspamd c=2 msgs/s" in line)


def test_report_judges_targets_against_the_runs_floors(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.run import report

    r = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    r["end_to_end"]["4"]["p50_ms"] = 36.0
    r["floors"]["client_start_ms"] = 13.3
    report(r)
    out = capsys.readouterr().out
    assert "end-to-end p50 floor (one client start)" in out
    line = next(x for x in out.splitlines() if "p50 floor" in x)
    assert "impossible here" in line and "36.0" in line
    # a machine whose client starts in under 10 ms is held to the target itself
    r["floors"]["client_start_ms"] = 6.0
    report(r)
    line = next(x for x in capsys.readouterr().out.splitlines() if "p50 floor" in x)
    assert "MISSED" in line


def test_web_console_bench_runs(tmp_path: Path) -> None:
    from bench.web_console import main

    out = tmp_path / "web.json"
    main(["--rows", "400", "--skip", "postgresql", "--out", str(out)])  # figures are not asserted
    result = json.loads(out.read_text())
    searches = result["sqlite"]["search"]
    assert {r["as"] for r in searches} == {"aud", "usr"} and len(result["sqlite"]["message"]) == 3
    assert any(r["search"] == "page 6 (keyset)" for r in searches)
