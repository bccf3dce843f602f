"""How long `qscan --help` and every command's `--help` take: `python -m bench.cli_help` (`make bench`).

Each help is a fresh `qscan` process, as a user at a terminal starts it; the figure is the median
wall time of several runs per command. Results go to bench/results/cli_help.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_MS = 300


def command_paths(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """``()`` for the root, then every group and command below it, depth first."""
    yield path
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from command_paths(cmd.commands[name], (*path, name))


def qscan_argv() -> list[str]:
    script = Path(sys.executable).parent / "qscan"
    return [str(script)] if script.exists() else [sys.executable, "-m", "qscan"]


def help_ms(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall ms and median CPU ms (the child's user + sys) of one run of ``argv``."""
    wall, cpu = [], []
    for _ in range(runs):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        wall.append((time.perf_counter() - t0) * 1000)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) * 1000)
    return round(statistics.median(wall), 1), round(statistics.median(cpu), 1)


def measure(runs: int = 5) -> dict[str, object]:
    from qscan.cli import cli

    base = qscan_argv()
    per = {" ".join(("qscan", *p)): help_ms([*base, *p, "--help"], runs) for p in command_paths(cli)}
    slowest = max(per, key=lambda k: per[k][0])
    return {"qscan_help_ms": per["qscan"][0], "qscan_help_cpu_ms": per["qscan"][1],
            "slowest_help_ms": per[slowest][0], "slowest_help": slowest,
            "slowest_help_cpu_ms": max(c for _, c in per.values()),
            "commands": len(per), "target_ms": TARGET_MS, "runs": runs,
            "load_average": [round(x, 1) for x in os.getloadavg()],  # wall times mean little above ~1
            "each_ms": {k: {"wall": w, "cpu": c} for k, (w, c) in per.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cli_help", description=__doc__)
    ap.add_argument("--runs", type=int, default=5, help="runs per command (median; default 5)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cli_help.json")
    args = ap.parse_args(argv)
    r = measure(args.runs)
    ok = "ok" if float(str(r["slowest_help_ms"])) <= TARGET_MS else "MISSED"
    print(f"qscan --help: {r['qscan_help_ms']} ms wall, {r['qscan_help_cpu_ms']} ms CPU; slowest of "
          f"{r['commands']} helps: {r['slowest_help_ms']} ms wall ({r['slowest_help']}), at most "
          f"{r['slowest_help_cpu_ms']} ms CPU; target <= {TARGET_MS} ms: {ok} "
          f"(load average {r['load_average']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
