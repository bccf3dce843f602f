"""Daemon CPU per message, by kind of message: what one worker spends on parsing, the part
walk, the scanners and building the event (``Processor._scan``: everything between the
request and the journal append, without the journal and qmail-queue).

``python -m bench.scan_cpu [--count 600] [--passes 3] [--scanners size,internal,dlp]``

Runs ``bench.corpus.generate(count)`` through a warm processor (the first pass warms it
and is not counted) and prints process CPU milliseconds per message for each kind:
plain, alternative (text + HTML), pdf (one PDF-like attachment), archive (a zip of a CSV
and a text file), blocked (an .exe, .scr or .vbs), blocked-zip (an .exe in a zip), and the
two outliers (a 25 MB attachment, a 20-level nested zip). The figure of a kind is the
median over the passes of its mean: the machine drifts, compare runs made side by side. The
worker's memory of libmagic answers is emptied before each pass (the corpus repeats no
payload; a pass over the same messages again would find them all remembered).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.corpus import BenchMessage, generate
from ingest.envelope import parse_envelope
from ingest.journal import Journal
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, Request
from qscan.config import Config
from qscan.wiring.pipeline import make_scanners
from scanners.mime import filetype

DLP_RULES = """
[[rule]]
id = "cards-outbound"
detectors = ["payment_card", "iban"]
direction = "outbound"
min_count = 2
action = "quarantine"

[[rule]]
id = "ibans-monitor"
detectors = ["iban"]
min_confidence = "high"
action = "monitor"
"""


def kind_of(m: BenchMessage) -> str:
    if m.kind == "attachment":
        return "archive" if b"application/zip" in m.data else "pdf"
    if m.kind == "blocked" and b"application/zip" in m.data:
        return "blocked-zip"
    return m.kind


def processor(scanners: list[str], workdir: Path) -> Processor:
    settings: dict[str, Any] = {"scanners": {"enabled": scanners}}
    if "dlp" in scanners:
        rules = workdir / "dlp.toml"
        rules.write_text(DLP_RULES)
        settings["dlp"] = {"rules": str(rules)}
    cfg = Config.model_validate(settings)
    journal = Journal(workdir / "journal.db")  # opened, never written: _scan stops before it
    opts = ProcessorOptions(hostname="bench.example",
                            settings=ProcessorSettings(qmail_queue=Path("/bin/true")))
    return Processor(opts, journal, make_scanners(cfg))


def measure(proc: Processor, corpus: list[BenchMessage], passes: int) -> dict[str, float]:
    requests = []
    for m in corpus:
        req = Request(message=m.data, envelope=m.envelope, attrs=dict(m.env), size=len(m.data),
                      sha256=hashlib.sha256(m.data).hexdigest(), received=time.time())
        requests.append((kind_of(m), req, parse_envelope(m.envelope)))
    per_pass: dict[str, list[float]] = defaultdict(list)
    for n in range(passes + 1):
        spent: dict[str, list[float]] = defaultdict(list)
        filetype._MAGIC.answers.clear()  # each pass meets the corpus for the first time, as a worker does
        for kind, req, env in requests:
            t0 = time.process_time()
            proc._scan(req, env)
            spent[kind].append(time.process_time() - t0)
        if n == 0:
            continue  # warm-up
        for kind, times in spent.items():
            per_pass[kind].append(1000 * sum(times) / len(times))
        per_pass["all but outliers"].append(1000 * sum(
            t for k, ts in spent.items() if k not in ("huge", "nested") for t in ts) / sum(
            len(ts) for k, ts in spent.items() if k not in ("huge", "nested")))
    return {kind: statistics.median(v) for kind, v in per_pass.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--scanners", default="size,internal,dlp")
    args = ap.parse_args(argv)
    corpus = generate(args.count)
    counts: dict[str, int] = defaultdict(int)
    for m in corpus:
        counts[kind_of(m)] += 1
    with tempfile.TemporaryDirectory() as tmp:
        proc = processor(args.scanners.split(","), Path(tmp))
        figures = measure(proc, corpus, args.passes)
    print(f"scanners: {args.scanners}; {args.count} messages + 2 outliers, {args.passes} passes")
    print(f"{'kind':<18}{'messages':>9}{'CPU ms/msg':>12}")
    for kind in ("plain", "alternative", "pdf", "archive", "blocked", "blocked-zip", "huge", "nested",
                 "all but outliers"):
        if kind in figures:
            n = counts[kind] if kind in counts else sum(
                c for k, c in counts.items() if k not in ("huge", "nested"))
            print(f"{kind:<18}{n:>9}{figures[kind]:>12.3f}")


if __name__ == "__main__":
    main()
