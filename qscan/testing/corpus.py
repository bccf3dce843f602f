"""The demo corpus: realistic mail with envelopes, for demos, benchmarks and tests.

The messages live in ``qscan/demo/corpus/`` (written by ``qscan/demo/make_corpus.py``), package data
found through ``importlib.resources``,
with a ``manifest.json`` holding what the files cannot: the envelope and the
qmail-smtpd environment each message arrives with. Messages too big to commit
are described in the manifest and generated here, deterministically, so every
run of a benchmark feeds exactly the same bytes.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from ingest.envelope import build_envelope

MANIFEST = "manifest.json"
LARGE_SEED = 20261125


@dataclass
class CorpusMessage:
    name: str
    data: bytes
    sender: str
    recipients: list[str]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def envelope(self) -> bytes:
        """What qmail would hand qscan-queue on fd 1 for this message."""
        return build_envelope(self.sender.encode(), [r.encode() for r in self.recipients])


def demo_dir() -> Path:
    """The demo data shipped inside the qscan package (``qscan/demo/``: ``corpus/``, ``dlp.toml``)."""
    ref = files("qscan") / "demo"
    if not isinstance(ref, Path):  # a zipped install: the daemon and the demo need real files
        raise RuntimeError(f"qscan's demo data is not a directory ({ref}): install qscan unzipped")
    return ref


def default_corpus_dir() -> Path:
    return demo_dir() / "corpus"


def load_corpus(directory: Path | None = None) -> list[CorpusMessage]:
    """Every manifest entry, in manifest order, generated ones included."""
    directory = Path(directory) if directory is not None else default_corpus_dir()
    entries: list[dict[str, Any]] = json.loads((directory / MANIFEST).read_text("utf-8"))
    messages = []
    for entry in entries:
        name = entry["file"]
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"manifest file name must be a plain file name: {name!r}")
        generate = entry.get("generate")
        if generate is None:
            data = (directory / name).read_bytes()
        elif generate == "large":
            data = large_message(int(entry["size"]), entry["sender"], entry["recipients"])
        else:
            raise ValueError(f"{name}: unknown generator {generate!r}")
        messages.append(
            CorpusMessage(
                name=name,
                data=data,
                sender=entry["sender"],
                recipients=list(entry["recipients"]),
                env={k: str(v) for k, v in entry.get("env", {}).items()},
                description=entry.get("description", ""),
            )
        )
    return messages


def _b64_size(n: int) -> int:
    """Length of ``base64.encodebytes`` output for ``n`` bytes (76-char lines, LF each)."""
    chars = 4 * ((n + 2) // 3)
    return chars + (chars + 75) // 76


def large_message(size: int, sender: str, recipients: list[str]) -> bytes:
    """A multipart/mixed message of about ``size`` bytes (a few bytes under, at most).

    The attachment is pseudo-random so it neither compresses nor matches any
    signature: scanners and storage see the worst case, not a run of zeros.
    """
    boundary = f"=_qscan_demo_large_{size}"
    head = (
        f"From: {sender or 'MAILER-DAEMON@example.com'}\n"
        f"To: {', '.join(recipients)}\n"
        f"Subject: Large attachment ({size} bytes)\n"
        "Date: Wed, 25 Nov 2026 10:59:00 +0000\n"
        f"Message-ID: <demo-large-{size}.20261125@example.com>\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="us-ascii"\n'
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "The attached file is pseudo-random data for size and throughput tests.\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="data.bin"\n'
        "\n"
    ).encode()
    tail = f"--{boundary}--\n".encode()
    room = size - len(head) - len(tail)
    if room < 100:
        raise ValueError(f"size {size} is too small for a generated message")
    n = room * 3 * 76 // (4 * 77)
    while _b64_size(n + 1) <= room:
        n += 1
    while _b64_size(n) > room:
        n -= 1
    payload = random.Random(LARGE_SEED).randbytes(n)
    return head + base64.encodebytes(payload) + tail
