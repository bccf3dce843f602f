"""Internal scanner throughput per worker, and peak memory on a hostile 25 MB message.

Standalone: ``.venv/bin/python bench/internal_scan.py [--seconds 5] [--json FILE]``.

throughput  one process (= one daemon worker) scanning a mixed corpus in a loop: the demo
            corpus (25 everyday messages) plus generated mail with zip, nested zip, tar.gz,
            TNEF, uuencode and hostile MIME. Reports messages/s for the internal scanner
            alone (what `scanners.enabled = ["internal"]` adds to a worker) and for parse +
            part walk + scan (the worker's whole content-handling cost before the journal).
memory      a fresh process builds a 25 MB message whose attachment is a 20-level nested
            zip (plus ~18 MB of incompressible filler), parses it and scans it, with the
            default limits (max_depth 10: the depth limit is hit) and with max_depth 25 (all
            20 levels unpacked). Reports peak RSS (ru_maxrss) once the message is built, after
            the worker's parse + part walk, and after the scan (what the scan added to the
            peak), and Python's traced allocation peak during the scan alone.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import io
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.mime import walk_parts  # noqa: E402
from qscan.testing.corpus import default_corpus_dir  # noqa: E402
from scanners.base import ScanContext  # noqa: E402
from scanners.internal.policy import InternalSettings  # noqa: E402
from scanners.internal.scanner import InternalScanner  # noqa: E402
from scanners.mime.parse import parse  # noqa: E402

HEAD = (b"From: bench@example.com\nTo: rcpt@example.org\nSubject: bench\nMessage-ID: <b@example.com>\n"
        b"Date: Wed, 25 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _nested_zip(levels: int, inner: bytes) -> bytes:
    data = _zip({"payload.bin": inner})
    for level in range(levels - 1, 0, -1):
        data = _zip({f"level-{level + 1}.zip": data})
    return data


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _mail(*parts: tuple[str, str, bytes]) -> bytes:
    out = HEAD + b'Content-Type: multipart/mixed; boundary="=_bench"\n\n'
    out += b"--=_bench\nContent-Type: text/plain; charset=utf-8\n\nPlease see the attachments.\n"
    for name, ctype, data in parts:
        out += (f'--=_bench\nContent-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
                f'Content-Disposition: attachment; filename="{name}"\n\n').encode()
        out += base64.encodebytes(data)
    return out + b"--=_bench--\n"


def mixed_corpus() -> list[tuple[str, bytes]]:
    rnd = random.Random(4)
    text = b"".join(b"line %d of a quarterly report with some numbers %d\n" % (i, i * 7) for i in range(400))
    corpus = [(p.name, p.read_bytes()) for p in sorted(default_corpus_dir().glob("*.eml"))]
    corpus += [
        ("zip-docs", _mail(("docs.zip", "application/zip", _zip({"a.txt": text, "b.csv": text[:3000]})))),
        ("zip-nested-3", _mail(("nested.zip", "application/zip", _nested_zip(3, text)))),
        ("tar-gz", _mail(("logs.tar.gz", "application/gzip", _tar_gz({"x.log": text, "y.log": text})))),
        ("gz", _mail(("report.txt.gz", "application/gzip", gzip.compress(text)))),
        ("pdf-200k", _mail(("scan.pdf", "application/pdf", b"%PDF-1.4\n" + rnd.randbytes(200_000)))),
        ("double-ext", _mail(("invoice.pdf.exe", "application/octet-stream", b"MZ" + rnd.randbytes(4000)))),
        ("uuencode", HEAD + b"Content-Type: text/plain\n\nbody\nbegin 644 a.bin\n"
         + b"".join(binascii.b2a_uu(rnd.randbytes(45)) for _ in range(40)) + b"`\nend\n"),
        ("repeated-header", HEAD + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
         b"Content-Type: text/plain\nContent-Type: text/html\n\nx\n--b--\n"),
    ]
    return corpus


def _ctx(raw: bytes) -> ScanContext:
    msg = parse(raw)
    _meta, parts, _defects = walk_parts(msg)
    return ScanContext(raw=raw, message=msg, parts=parts, sender="bench@example.com",
                       recipients=["rcpt@example.org"], client_ip="192.0.2.10", relay=False,
                       size=len(raw), max_size=50 * 1024 * 1024)


def throughput(seconds: float) -> dict[str, Any]:
    corpus = mixed_corpus()
    scanner = InternalScanner()
    contexts = [_ctx(raw) for _name, raw in corpus]
    for c in contexts:  # warm: libmagic database, libarchive, RE2
        scanner.scan(c)
        c.found_parts.clear()
    # internal scanner alone
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        for c in contexts:
            scanner.scan(c)
            c.found_parts.clear()
            n += 1
    scan_only = n / (time.perf_counter() - start)
    # parse + walk + scan
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        for _name, raw in corpus:
            scanner.scan(_ctx(raw))
            n += 1
    with_parse = n / (time.perf_counter() - start)
    # the no-attachment plain-text hot path
    plain = _ctx(dict(corpus)["01-plain.eml"])
    t0 = time.perf_counter()
    for _ in range(2000):
        scanner.scan(plain)
    plain_us = (time.perf_counter() - t0) / 2000 * 1e6
    per_msg = {}
    for (name, _raw), c in zip(corpus, contexts, strict=True):
        t0 = time.perf_counter()
        for _ in range(5):
            scanner.scan(c)
            c.found_parts.clear()
        per_msg[name] = round((time.perf_counter() - t0) / 5 * 1000, 3)
    return {
        "corpus_messages": len(corpus),
        "corpus_bytes": sum(len(r) for _n, r in corpus),
        "internal_scan_msgs_per_s": round(scan_only, 1),
        "parse_walk_scan_msgs_per_s": round(with_parse, 1),
        "plain_text_scan_us": round(plain_us, 1),
        "slowest_ms": dict(sorted(per_msg.items(), key=lambda kv: -kv[1])[:5]),
    }


def _memory_child(max_depth: int) -> None:
    """Runs in a fresh process: prints one JSON line."""
    rnd = random.Random(25)
    nested = _nested_zip(20, rnd.randbytes(512 * 1024))
    filler = rnd.randbytes(18 * 1024 * 1024)
    raw = _mail(("deep.zip", "application/zip", nested), ("filler.bin", "application/octet-stream", filler))
    del filler
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    ctx = _ctx(raw)
    parse_s = time.perf_counter() - t0
    parse_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scanner = InternalScanner(InternalSettings(max_depth=max_depth))
    tracemalloc.start()
    t0 = time.perf_counter()
    results = scanner.scan(ctx)
    scan_s = time.perf_counter() - t0
    _cur, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "max_depth": max_depth,
        "message_bytes": len(raw),
        "members_listed": len([p for p in ctx.found_parts if "!/" in p.path]),
        "findings": [r.name for r in results],
        "parse_walk_s": round(parse_s, 3),
        "scan_s": round(scan_s, 3),
        "rss_message_built_mib": round(base_rss / 1024, 1),
        "peak_rss_after_parse_mib": round(parse_rss / 1024, 1),
        "peak_rss_after_scan_mib": round(peak_rss / 1024, 1),
        "scan_added_to_peak_mib": round((peak_rss - parse_rss) / 1024, 1),
        "scan_traced_peak_mib": round(traced_peak / 1024 / 1024, 1),
    }))


def memory(max_depth: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(max_depth)], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="time spent on the throughput loops")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        _memory_child(args.memory_child)
        return
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "throughput": throughput(args.seconds),
        "memory_default_limits": memory(10),
        "memory_all_20_levels": memory(25),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
