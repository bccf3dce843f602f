"""Where every qscan process logs: stderr, as text or JSON lines, quiet about libraries.

``setup()`` is called once by the CLI's root group (``-q``, ``-v``, ``--log-format``):

* ``text``: ``2026-11-25T10:00:00Z 1234 qscan.ops.supervisor INFO starting daemon``. Under
  systemd (``JOURNAL_STREAM`` names stderr) the journal stamps the time itself, so the line is
  ``<6>1234 qscan.ops.supervisor INFO starting daemon``: no second timestamp, and the ``<N>``
  syslog prefix gives journald the priority (``journalctl -p warning`` works). The pid stays: the
  journal knows only the unit's main process, not which forked worker wrote the line.
* ``json``: one object per line, ``{"time", "level", "logger", "pid", "message"}`` (``"exc"``
  with a traceback); ``time`` is left out under journald too.

Libraries (alembic, kafka, urllib3, ...) speak at WARNING and above only, unless ``-v``: an
interactive ``qscan db upgrade`` prints no alembic INFO lines. ``-q`` lowers qscan's own loggers
to warnings as well.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TextIO

OWN = ("qscan", "ingest", "scanners", "compliance", "archive", "__main__")
FORMATS = ("text", "json")
# syslog priorities journald reads from a "<N>" line prefix
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def under_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the journal's stream socket (systemd sets JOURNAL_STREAM=dev:ino)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class LibraryFilter(logging.Filter):
    """Drops records below ``floor`` from loggers that are not qscan's own."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.floor or record.name.split(".", 1)[0] in OWN


class TextFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.process} {record.name} {record.levelname} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.journald:
            return f"<{PRIORITY.get(record.levelno, 6)}>{line}"
        return time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime(record.created)) + line


class JsonFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {}
        if not self.journald:
            out["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
                f".{int(record.msecs):03d}Z"
        out |= {"level": record.levelname.lower(), "logger": record.name, "pid": record.process,
                "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(*, verbosity: int = 0, fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger once: ``verbosity`` -1 (``-q``), 0, 1 (``-v``)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    stream = stream if stream is not None else sys.stderr
    journald = under_journald(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(journald) if fmt == "json" else TextFormatter(journald))
    handler.addFilter(LibraryFilter(logging.INFO if verbosity > 0 else logging.WARNING))
    handler.set_name("qscan")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "qscan"]:  # ours only (pytest keeps its own)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO)
    return handler
