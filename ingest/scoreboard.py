"""The daemon's scoreboard: which worker is busy, shared across the pre-fork by one mmap.

Why a scoreboard (Apache's word for it): `qscan status` and the metrics endpoint
must know which workers are busy without asking them, and without putting
anything slow on the message path. The master maps an anonymous shared page
before it forks; each worker writes its own slot (two ``struct.pack_into`` calls
per message, well under a microsecond) and the master reads every slot when it
rewrites the status file once a second. A torn read of a slot being written is
harmless: the next read a second later is right.

The status file is JSON, written atomically (tmp + rename) next to the socket:
``/run/qscan/qscan.sock`` -> ``/run/qscan/qscan.status.json``.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

# pid, state, since (epoch seconds), messages handled by this worker
_SLOT = struct.Struct("<iidq")
_EVENT_ID = 36  # a UUID's text
IDLE, BUSY = 0, 1
STATES = {IDLE: "idle", BUSY: "busy"}
FORMAT = 1  # version of the status file's layout


def status_path(socket_path: Path) -> Path:
    """Where the daemon listening on ``socket_path`` writes its status file."""
    return socket_path.with_name(socket_path.stem + ".status.json")


class Scoreboard:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, max(1, slots) * _SLOT.size)  # MAP_SHARED|MAP_ANONYMOUS
        # Per slot: the delivery its worker has journaled and not yet handed to qscan-queue
        # (an event id, or zeros). A worker that dies with one set never handed the message
        # over: the master records message.queue_failed for it (docs/protocol.md).
        self._pending = mmap.mmap(-1, max(1, slots) * _EVENT_ID)

    # -- master side ---------------------------------------------------------
    def claim(self) -> int | None:
        """Reserve a free slot for the worker about to be forked (None: all taken, which the
        master's own count of children rules out). The worker fills its pid in after fork."""
        for i in range(self.slots):
            if _SLOT.unpack_from(self._map, i * _SLOT.size)[0] == 0:
                _SLOT.pack_into(self._map, i * _SLOT.size, -1, IDLE, time.time(), 0)
                return i
        return None

    def assign(self, slot: int, pid: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, pid, IDLE, time.time(), 0)

    def release(self, slot: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, 0, IDLE, 0.0, 0)
        self.set_pending(slot, "")

    def pending(self, slot: int) -> str | None:
        """The event id of a delivery journaled by this slot's worker and not handed over."""
        raw = self._pending[slot * _EVENT_ID:(slot + 1) * _EVENT_ID].rstrip(b"\0")
        return raw.decode("ascii", "replace") or None

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.slots):
            pid, state, since, handled = _SLOT.unpack_from(self._map, i * _SLOT.size)
            if pid > 0:
                out.append({"pid": pid, "state": STATES.get(state, "idle"), "since": round(since, 3),
                            "handled": handled})
        return out

    # -- worker side (the hot path: keep it to pack_into) ---------------------
    def set_busy(self, slot: int, handled: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, os.getpid(), BUSY, time.time(), handled)

    def set_idle(self, slot: int, handled: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, os.getpid(), IDLE, time.time(), handled)

    def set_pending(self, slot: int, event_id: str) -> None:
        """Before the journal append of a delivery: its id; once the client has it: ''."""
        self._pending[slot * _EVENT_ID:(slot + 1) * _EVENT_ID] = event_id.encode("ascii")[:_EVENT_ID].ljust(
            _EVENT_ID, b"\0")


_HELD = struct.Struct("<ii")  # uid, connections held


class HeldTable:
    """How many slow connections the master holds per uid, for the workers to read.

    The master alone writes (a uid's count in its own slot, found by a linear probe from
    ``uid % size``); a worker reads it at accept so that a uid at its cap is refused at once,
    without costing the worker even the first-bytes wait. A torn read costs one wrong answer
    to one connection; a full table just stops publishing new uids (the master still caps)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._map = mmap.mmap(-1, size * _HELD.size)
        for i in range(size):
            _HELD.pack_into(self._map, i * _HELD.size, -1, 0)

    def _find(self, uid: int, insert: bool) -> int | None:
        start = uid % self.size
        for k in range(self.size):
            i = (start + k) % self.size
            owner = _HELD.unpack_from(self._map, i * _HELD.size)[0]
            if owner == uid:
                return i
            if owner == -1:
                return i if insert else None
        return None

    def set(self, uid: int, count: int) -> None:
        i = self._find(uid, insert=True)
        if i is not None:
            _HELD.pack_into(self._map, i * _HELD.size, uid, count)

    def get(self, uid: int) -> int:
        i = self._find(uid, insert=False)
        return 0 if i is None else _HELD.unpack_from(self._map, i * _HELD.size)[1]


def status_document(board: Scoreboard, *, socket_path: Path, started: float,
                    configured_workers: int) -> dict[str, Any]:
    workers = board.snapshot()
    busy = sum(1 for w in workers if w["state"] == "busy")
    return {
        "format": FORMAT,
        "pid": os.getpid(),
        "socket": str(socket_path),
        "started": round(started, 3),
        "updated": round(time.time(), 3),
        "configured_workers": configured_workers,
        "workers": workers,
        "busy": busy,
        "idle": len(workers) - busy,
        "in_flight": busy,  # a worker handles one message at a time
    }


def write_status(path: Path, document: dict[str, Any]) -> None:
    """Atomic: readers see the old file or the new one, never half of either."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=1))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
