"""Where the one-line summaries go: syslog (facility mail by default), a file, or nowhere."""

from __future__ import annotations

import os
import syslog
from pathlib import Path
from typing import Protocol

from ingest.private import FILE_MODE, make_private_dirs, tighten

FACILITIES = {
    "mail": syslog.LOG_MAIL,
    **{f"local{i}": getattr(syslog, f"LOG_LOCAL{i}") for i in range(8)},
}


class SummaryLog(Protocol):
    def write(self, line: str) -> None: ...


class NullLog:
    def write(self, line: str) -> None:
        pass


class SyslogLog:
    def __init__(self, facility: str = "mail") -> None:
        syslog.openlog("qscan", syslog.LOG_PID | syslog.LOG_NDELAY, FACILITIES[facility])

    def write(self, line: str) -> None:
        syslog.syslog(syslog.LOG_INFO, line)


class FileLog:
    """O_APPEND and one write() per line: lines from many workers never interleave."""

    def __init__(self, path: Path) -> None:
        make_private_dirs(path.parent)
        # Addresses and subjects: private (0600), as everything qscan writes (ingest/private.py)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        tighten(path)

    def write(self, line: str) -> None:
        os.write(self.fd, line.encode("utf-8", "replace") + b"\n")


def open_summary_log(target: str, path: Path | None = None, facility: str = "mail") -> SummaryLog:
    if target == "syslog":
        return SyslogLog(facility)
    if target == "file":
        assert path is not None
        return FileLog(path)
    return NullLog()
