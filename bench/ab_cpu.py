"""Daemon CPU per message, two source trees side by side, pass by pass: a before/after
figure the VM's drift (±15 % between runs minutes apart) does not swamp.

``python -m bench.ab_cpu OLD_TREE [NEW_TREE] [--count 600] [--rounds 8] [--scanners size,internal]``

Starts one warm worker per tree (a child process whose PYTHONPATH is the tree, built as
``bench.scan_cpu`` builds its processor), then alternates: one pass of the corpus through the
old tree's ``Processor._scan``, one through the new one's, ``--rounds`` times (the order
flips each round). Prints, per kind of message, the median CPU ms per message of each tree
and the median of the per-round ratios new/old. libmagic's memory (when the tree has one) is
emptied before each pass, as in ``bench.scan_cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import hashlib, json, sys, tempfile, time
from collections import defaultdict
from pathlib import Path
from bench.corpus import generate
from bench.scan_cpu import kind_of, processor
from ingest.envelope import parse_envelope
from ingest.processor import Request
from scanners.mime import filetype

count, scanners = int(sys.argv[1]), sys.argv[2].split(",")
corpus = generate(count)
tmp = tempfile.mkdtemp()
proc = processor(scanners, Path(tmp))
reqs = [(kind_of(m), Request(message=m.data, envelope=m.envelope, attrs=dict(m.env), size=len(m.data),
         sha256=hashlib.sha256(m.data).hexdigest(), received=time.time()), parse_envelope(m.envelope))
        for m in corpus]
def one_pass():
    answers = getattr(filetype._MAGIC, "answers", None)
    if answers is not None:
        answers.clear()
    spent = defaultdict(list)
    for kind, req, env in reqs:
        t0 = time.process_time()
        proc._scan(req, env)
        spent[kind].append(time.process_time() - t0)
    out = {k: 1000 * sum(v) / len(v) for k, v in spent.items()}
    steady = [t for k, v in spent.items() if k not in ("huge", "nested") for t in v]
    out["all but outliers"] = 1000 * sum(steady) / len(steady)
    return out
one_pass()  # warm
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(one_pass()), flush=True)
'''

KINDS = ("plain", "alternative", "pdf", "archive", "blocked", "blocked-zip", "huge", "nested",
         "all but outliers")


def worker(tree: Path, count: int, scanners: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(count), scanners], cwd=tree, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tree)), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        sys.exit(f"{tree}: the worker did not start")
    return p


def one(p: subprocess.Popen[str]) -> dict[str, float]:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--scanners", default="size,internal")
    args = ap.parse_args(argv)
    old, new = worker(args.old.resolve(), args.count, args.scanners), worker(
        args.new.resolve(), args.count, args.scanners)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    try:
        for r in range(args.rounds):
            order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
            for name, p in order:
                runs[name].append(one(p))
    finally:
        for p in (old, new):
            if p.stdin is not None:
                p.stdin.close()
            p.wait()
    print(f"scanners {args.scanners}; {args.count} messages; {args.rounds} rounds, passes alternating")
    print(f"{'kind':<18}{'old ms':>9}{'new ms':>9}{'new/old':>9}")
    for kind in KINDS:
        if kind not in runs["old"][0]:
            continue
        o = statistics.median(x[kind] for x in runs["old"])
        n = statistics.median(x[kind] for x in runs["new"])
        ratio = statistics.median(b[kind] / a[kind] for a, b in zip(runs["old"], runs["new"], strict=True))
        print(f"{kind:<18}{o:>9.3f}{n:>9.3f}{ratio:>9.3f}")


if __name__ == "__main__":
    main()
