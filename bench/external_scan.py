"""Throughput with clamd + spamd enabled, and what qscan adds on top of them.

Standalone: ``.venv/bin/python bench/external_scan.py [--copies N] [--concurrency 4] [--json FILE]``.

Starts its own clamd (the test signature database: two signatures, so clamd's own cost
here is far below a production database's) and spamd (SpamAssassin's shipped rules,
local tests only) exactly as the tests do, builds a mixed corpus (the demo corpus plus
generated plain, attachment, zip, GTUBE and EICAR mail), and measures at the given
concurrency:

  raw     the same work sent straight to the servers (INSTREAM of every decoded part,
          SYMBOLS of the message) over minimal sockets: what clamd+spamd cost by themselves
  qscan   the real path: a qscan-queue process per message into a pre-forked daemon with
          scanners.enabled = ["size", "clamd", "spamd"], journal fsync, stand-in qmail-queue

and reports messages/s for both, per-message latencies, and the difference (qscan's
overhead: client start-up, framing, MIME parsing, verdict, headers, journal, qmail-queue).
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.event import MessageScanned, from_json  # noqa: E402
from ingest.journal import Journal  # noqa: E402
from ingest.mime import walk_parts  # noqa: E402
from qscan.testing.corpus import load_corpus  # noqa: E402
from qscan.testing.daemon import running_daemon  # noqa: E402
from qscan.testing.servers import EICAR, GTUBE, Server, clamd_server, spamd_server  # noqa: E402
from scanners.mime.parse import parse  # noqa: E402

T = TypeVar("T")
SPAM_MAX = 512 * 1024  # spamd.max_size default: bigger mail is not spam-scanned by qscan either


def _message(subject: str, body: str, attachments: Sequence[tuple[bytes, str, str]] = ()) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.com", "bob@example.org", subject
    msg["Message-ID"] = f"<{zlib.crc32((subject + body).encode()):08x}@example.com>"
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    for data, name, mtype in attachments:
        maintype, subtype = mtype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def corpus(copies: int) -> list[tuple[str, bytes]]:
    """The demo corpus plus ``copies`` rounds of generated mail (all distinct bytes)."""
    out = [(m.name, m.data) for m in load_corpus()]
    text = "Hello Bob,\n\nThe figures for the quarter are attached. " * 20
    for i in range(copies):
        pdf = b"%PDF-1.4\n" + bytes(range(256)) * 400 + str(i).encode()  # ~100 KB
        csv_zip = _zip("data.csv", b"a,b,c\n" * 20000 + str(i).encode())  # 120 KB unpacked
        out += [
            (f"plain-{i}", _message(f"Quarterly figures {i}", text + f"\nRegards {i}\n")),
            (f"pdf-{i}", _message(f"Report {i}", text, [(pdf, f"report-{i}.pdf", "application/pdf")])),
            (f"zip-{i}", _message(f"Archive {i}", text, [(csv_zip, f"data-{i}.zip", "application/zip")])),
            (f"spam-{i}", _message(f"Cheap offer {i}", f"{GTUBE.decode()}\nbuy now {i}\n")),
            (f"eicar-{i}", _message(f"Invoice {i}", f"see attached {i}\n",
                                    [(_zip("invoice.com", EICAR), f"invoice-{i}.zip", "application/zip")])),
        ]
    return out


def _recv_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def raw_clamd(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(b"zINSTREAM\0")
        for i in range(0, len(data), 65536):
            chunk = data[i : i + 65536]
            s.sendall(struct.pack(">I", len(chunk)) + chunk)
        s.sendall(b"\0\0\0\0")
        return _recv_until(s, lambda b: b.endswith(b"\0"))


def raw_spamd(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(data) + data)
        return _recv_until(s, lambda b: False)


Corpus = list[tuple[str, bytes]]


def run_raw(messages: Corpus, clamd: Server, spamd: Server, concurrency: int) -> dict[str, Any]:
    prepared = []
    for _, raw in messages:  # parsing is qscan's work, not the servers': done before the clock starts
        _, parts, _ = walk_parts(parse(raw))
        prepared.append((raw, [p.payload for p in parts if p.payload]))

    def one(item: tuple[bytes, list[bytes]]) -> float:
        raw, payloads = item
        t0 = time.perf_counter()
        for payload in payloads:
            raw_clamd(clamd.socket or "", payload)
        if len(raw) <= SPAM_MAX:
            raw_spamd(spamd.port, raw)
        return time.perf_counter() - t0

    return _timed(one, prepared, concurrency)


def run_qscan(messages: Corpus, clamd: Server, spamd: Server, concurrency: int) -> dict[str, Any]:
    extra = (f'[scanners]\nenabled = ["size", "clamd", "spamd"]\n[clamd]\nsocket = "{clamd.socket}"\n'
             f'[spamd]\nport = {spamd.port}\n')
    with tempfile.TemporaryDirectory(prefix="qsbench-ext") as d, \
            running_daemon(Path(d), extra=extra, workers=concurrency) as h:
        for _, raw in messages[:concurrency * 2]:  # warm every worker (spamd version probe, imports)
            h.send(raw)

        def one(raw: bytes) -> float:
            t0 = time.perf_counter()
            result = h.send(raw)
            if result.code != 0:
                raise RuntimeError(f"qscan-queue exited {result.code}: {result}")
            return time.perf_counter() - t0

        figures = _timed(one, [raw for _, raw in messages], concurrency)
        with Journal(h.journal) as journal:
            events = [e for e in (from_json(x.body) for x in journal.read(0, 100_000, with_raw=False))
                      if isinstance(e, MessageScanned)][concurrency * 2 :]  # the measured ones
        # where the time goes inside the daemon (the event's own timings)
        for key in ("parse_ms", "scan_ms", "total_ms"):
            mean = statistics.fmean(getattr(e.timings, key) for e in events)
            figures[f"daemon_{key}_mean"] = round(mean, 1)
        figures["categories"] = dict(Counter(str(e.category) for e in events))
        return figures


def _timed(fn: Callable[[T], float], items: list[T], concurrency: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(fn, items))
    wall = time.perf_counter() - t0
    return {
        "messages": len(items),
        "wall_s": round(wall, 3),
        "messages_per_s": round(len(items) / wall, 1),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "latency_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=15, help="rounds of 5 generated messages (default 15)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    messages = corpus(args.copies)
    with clamd_server(stream_max="30M") as clamd, spamd_server(children=args.concurrency) as spamd:
        run_raw(messages[: args.concurrency * 4], clamd, spamd, args.concurrency)  # warm every spamd child
        # raw before and after the qscan run: the servers' drift shows, the mean is the reference
        raw_runs = [run_raw(messages, clamd, spamd, args.concurrency)]
        qscan = run_qscan(messages, clamd, spamd, args.concurrency)
        raw_runs.append(run_raw(messages, clamd, spamd, args.concurrency))
    raw = {k: round((raw_runs[0][k] + raw_runs[1][k]) / 2, 1) for k in raw_runs[0]}
    overhead = round(qscan["latency_mean_ms"] - raw["latency_mean_ms"], 1)
    result = {
        "corpus_messages": len(messages),
        "corpus_bytes": sum(len(m) for _, m in messages),
        "concurrency": args.concurrency,
        "raw_clamd_spamd": raw,
        "raw_runs": raw_runs,
        "qscan_clamd_spamd": qscan,
        "qscan_overhead_ms_per_message": overhead,
        "qscan_throughput_vs_raw": round(qscan["messages_per_s"] / raw["messages_per_s"], 3),
    }
    size_mb = result["corpus_bytes"] / 1e6
    print(f"corpus: {len(messages)} messages, {size_mb:.1f} MB, concurrency {args.concurrency}")
    for label, r in (("raw before", raw_runs[0]), ("raw after", raw_runs[1]), ("raw clamd+spamd", raw),
                     ("qscan end to end", qscan)):
        print(f"{label:18} {r['messages_per_s']:7.1f} msg/s   latency mean {r['latency_mean_ms']:7.1f} ms"
              f"   p50 {r['latency_p50_ms']:7.1f} ms   p95 {r['latency_p95_ms']:7.1f} ms")
    print(f"qscan overhead: {overhead} ms per message (mean latency), "
          f"throughput {result['qscan_throughput_vs_raw']:.0%} of raw")
    print(f"inside the daemon (means): parse {qscan['daemon_parse_ms_mean']} ms, scanners "
          f"{qscan['daemon_scan_ms_mean']} ms, whole scan stage {qscan['daemon_total_ms_mean']} ms;")
    print(f"the rest of the {qscan['latency_mean_ms']} ms is qscan-queue start-up, framing, "
          "journal fsync and the (stand-in) qmail-queue")
    print(f"categories: {qscan['categories']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
