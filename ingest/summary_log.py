"""Where the one-line summaries go: syslog (facility mail by default), a file, or nowhere."""

from __future__ import annotations

import os
import syslog
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ingest.private import FILE_MODE, make_private_dirs, tighten
from scanners.settings import SECTION, setting

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
    def __init__(self, facility: str) -> None:  # summary_log.facility
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


@dataclass(frozen=True, slots=True)
class SummaryLogSettings:
    __pydantic_config__ = SECTION
    target: Literal["syslog", "file", "none"] = setting(
        "syslog", "where the one-line summary of each message goes")
    path: Path | None = setting(
        None, "file for target='file' (default: DATA_DIR/summary.log)", example="@DATA_DIR@/summary.log")
    facility: Literal[
        "mail", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"
    ] = setting("mail")


def open_summary_log(settings: SummaryLogSettings, path: Path) -> SummaryLog:
    """The log [summary_log] names; ``path``: its file, resolved against the data directory."""
    if settings.target == "syslog":
        return SyslogLog(settings.facility)
    if settings.target == "file":
        return FileLog(path)
    return NullLog()
