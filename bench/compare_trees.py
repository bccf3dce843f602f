"""Two source trees, the same messages, the same events: the check that a speed-up changed
nothing the daemon records.

``python -m bench.compare_trees OLD_TREE [NEW_TREE] [--count 600] [--scanners size,internal,dlp]``

Runs every message through ``Processor._scan`` of each tree (a child process per tree, its
PYTHONPATH the tree) and compares the events: every field but the per-run ones (event id,
time, timings, durations, the elapsed time in the diagnostics header and so the
hash of the message handed on), the message handed on,
and the inventory's items (path, detected type, size, SHA-256). Messages: the bench corpus
(``bench.corpus.generate``), the mail in ``../shared/corpora`` (when there) and the hostile
and clean cases of ``tests/internal_corpus.py``. An old tree is a checkout or ``git archive``
of the commit before the change. Exits 1 and names the first differences when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import hashlib, json, pickle, sys, tempfile, time
from pathlib import Path
from bench.corpus import generate
from bench.scan_cpu import processor
from ingest.envelope import build_envelope, parse_envelope
from ingest.processor import Request
import scanners.inventory as inventory

count, scanners, shared, saved = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], Path(sys.argv[4])
if saved.exists():  # the same bytes for both trees (some test cases are built at random)
    msgs = pickle.loads(saved.read_bytes())
else:
    msgs = [(f"bench/{i}", m.data, m.envelope, dict(m.env)) for i, m in enumerate(generate(count))]
    env = build_envelope(b"alice@example.com", [b"bob@example.org"])
    if shared and Path(shared).is_dir():
        for p in sorted(Path(shared).rglob("*")):
            if p.is_file() and p.suffix not in (".md", ".txt", ".py"):
                msgs.append((f"shared/{p.relative_to(shared)}", p.read_bytes(), env, {}))
    try:
        from tests.internal_corpus import CLEAN_CASES, FORMAT_CASES
        msgs += [(f"format/{k}", v[0], env, {}) for k, v in sorted(FORMAT_CASES.items())]
        msgs += [(f"clean/{k}", v, env, {}) for k, v in sorted(CLEAN_CASES.items())]
    except Exception as exc:
        print(f"no test corpus: {exc}", file=sys.stderr)

    import base64, random  # damaged transfer encodings: what the decoders fall back on
    rng = random.Random(7)
    for i in range(60):
        body = base64.encodebytes(rng.randbytes(rng.randrange(1, 3000)))
        cte = rng.choice([b"base64", b"quoted-printable", b"Base64", b"x-uuencode"])
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(body) + 1)
            body = body[:at] + rng.choice([b"=", b"\r", b"*", b"\xff", b"", b"A"]) + body[at + 1:]
        msgs.append((f"damaged/{i}", b"Subject: d\nMIME-Version: 1.0\nContent-Type: multipart/mixed; "
                     b'boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: '
                     b'application/octet-stream; name="x.bin"\nContent-Transfer-Encoding: ' + cte
                     + b"\n\n" + body + b"\n--b--\n", env, {}))
    saved.write_bytes(pickle.dumps(msgs))

seen = []
orig = inventory.build
def build(*a, **k):
    inv = orig(*a, **k)
    seen.append(inv)
    return inv
inventory.build = build
import ingest.processor as processor_module
if getattr(processor_module, "build", None) is orig:
    processor_module.build = build

import re
ELAPSED, ELAPSED_B = re.compile(r"Processed in [0-9.]+ secs"), re.compile(rb"Processed in [0-9.]+ secs")
POINTER = re.compile(r"archive_p=[0-9]+")  # libarchive's error text names its handle's address
VOLATILE = {"event_id", "time", "timings", "duration_ms", "queue_id"}
def clean(o):
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items() if k not in VOLATILE}
    if isinstance(o, list):
        return [clean(v) for v in o]
    return o

with tempfile.TemporaryDirectory() as tmp:
    proc = processor(scanners, Path(tmp))
    for name, data, envelope, attrs in msgs:
        seen.clear()
        req = Request(message=data, envelope=envelope, attrs=attrs, size=len(data),
                      sha256=hashlib.sha256(data).hexdigest(), received=1_800_000_000.0)
        event, new_raw = proc._scan(req, parse_envelope(envelope))
        doc = clean(json.loads(POINTER.sub("", event.model_dump_json(exclude={"raw_message"}))))
        doc["added_headers"] = [ELAPSED.sub("", h) for h in doc.get("added_headers", [])]
        doc.pop("raw_sha256", None)  # hashes the elapsed time too: the message is compared without it
        doc["new_raw"] = hashlib.sha256(ELAPSED_B.sub(b"", new_raw)).hexdigest()
        doc["inventory"] = [[(i.path, i.source, i.declared_type, i.detected_type, i.size, i.sha256,
                              i.complete, list(i.names)) for i in inv.items] + [list(inv.defects)]
                            for inv in seen]
        print(json.dumps([name, doc], sort_keys=True, default=str))
'''


def run(tree: Path, count: int, scanners: str, shared: Path, saved: Path
        ) -> list[tuple[str, dict[str, object]]]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([sys.executable, "-c", CHILD, str(count), scanners, str(shared), str(saved)],
                              cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{tree}: {done.stderr[-3000:]}")
    out = done.stdout
    return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--scanners", default="size,internal,dlp")
    ap.add_argument("--shared", type=Path, default=None,
                    help="mail to add (default: the first shared/corpora beside the tree or above it)")
    args = ap.parse_args(argv)
    if args.shared is None:
        up = Path(__file__).resolve().parents
        args.shared = next((p / "shared" / "corpora" for p in up[1:4] if (p / "shared" / "corpora").is_dir()),
                           Path("/nonexistent"))
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "messages.pickle"
        old = run(args.old.resolve(), args.count, args.scanners, args.shared, saved)
        new = run(args.new.resolve(), args.count, args.scanners, args.shared, saved)
    if [n for n, _ in old] != [n for n, _ in new]:
        print("the trees ran different message lists")
        return 1
    diffs = [(n, a, b) for (n, a), (_, b) in zip(old, new, strict=True) if a != b]
    print(f"{len(old)} messages, scanners {args.scanners}: {len(diffs)} events differ")
    for name, a, b in diffs[:5]:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        print(f"  {name}: {', '.join(keys)}")
        for k in keys[:3]:
            print(f"    old {k}: {json.dumps(a.get(k))[:300]}\n    new {k}: {json.dumps(b.get(k))[:300]}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
