"""The two qscan-queue programs, for the tests, the demo and the benchmarks.

``native_client()`` is the installed ``qscan-queue`` (``make install`` compiles
ingest/native/qscan_queue.c into the venv with ingest/native/build.sh). Run from a checkout
whose venv holds an older or a Python ``qscan-queue`` (a second worktree sharing one venv), it
is a build of this checkout's source with the same script, cached by the source's hash.
``sanitized_client()`` is the same source built with AddressSanitizer and UBSan.
``python_client()`` is the reference client (``qscan-queue-py``, ingest/queue_client.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NATIVE = Path(str(resources.files("ingest") / "native"))  # package data: an installed wheel has it
SOURCE = NATIVE / "qscan_queue.c"
BUILD = NATIVE / "build.sh"
VENV_BIN = Path(sys.executable).parent
SANITIZE = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g")


def _is_native(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


_CACHE: list[Path] = []


def _cache_dir() -> Path:
    """Where builds are kept: ours alone (we run what is in it), passable by qmaild."""
    if _CACHE:
        return _CACHE[0]
    path = Path(tempfile.gettempdir()) / f"qscan-client-{os.geteuid()}"
    path.mkdir(mode=0o755, exist_ok=True)
    st = path.lstat()
    if path.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        path = Path(tempfile.mkdtemp(prefix="qscan-client-"))  # someone else's: never run from it
    path.chmod(0o755)  # qmaild (tests/notqmail.py) must reach the client built here
    _CACHE.append(path)
    return path


def build_client(out: Path, *extra: str) -> Path:
    """Compile the native client into ``out`` (ingest/native/build.sh; ``extra`` CFLAGS)."""
    done = subprocess.run(["sh", str(BUILD), str(out), *extra], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {SOURCE} failed:\n{done.stderr}")
    return out


def _built(tag: str, *extra: str) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + BUILD.read_bytes() + " ".join(extra).encode()).hexdigest()
    out = _cache_dir() / f"qscan-queue-{tag}-{digest[:16]}"
    if not out.is_file():
        build_client(out, *extra)
    return out


def native_client() -> str:
    """The native qscan-queue: the installed one when it is this checkout's build."""
    installed = VENV_BIN / "qscan-queue"
    if _is_native(installed) and installed.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(installed)
    return str(_built("native"))


def sanitized_client() -> str:
    """The native client under AddressSanitizer + UBSan (any finding aborts it)."""
    return str(_built("asan", *SANITIZE))


def python_client() -> str:
    """The reference client, ``qscan-queue-py``; from a venv that lacks it, a script running
    this checkout's ``ingest.queue_client``."""
    installed = VENV_BIN / "qscan-queue-py"
    if installed.is_file():
        return str(installed)
    script = _cache_dir() / f"qscan-queue-py-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"
    text = (f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            "from ingest.queue_client import main\nmain()\n")
    if not script.is_file() or script.read_text() != text:
        tmp = script.with_suffix(f".{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(script)
    return str(script)
