"""Real-world mail nobody here wrote, through a real daemon and the real qscan-queue client.

Every message of ``../shared/corpora/mikel-mail`` (the Ruby mail library's 105 fixtures, MIT,
see its LICENSE: RFC 2822 and RFC 6532 mail, odd charsets, broken headers, files that are only
a header block or empty) and of CPython's email test data must end delivered or quarantined with
a reason: never a temporary failure (the sender would retry the same bytes forever), never a
crashed worker or connection handler. One test per message, so a failure names its file.

The helpers here (corpus locations, journal lookups, the daemon log's failure lines) are shared
with tests/test_fuzz_daemon.py.
"""

from __future__ import annotations

import email
import glob
import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from qscan.testing.daemon import Harness, running_daemon
from tests.conftest import require
from tests.notqmail import shared_dir

pytestmark = pytest.mark.integration
MIKEL = shared_dir() / "corpora" / "mikel-mail"
# Lines the daemon logs when a message did not get its defined outcome (ingest/daemon.py).
FAILURE_LINES = re.compile(r"connection handler failed|worker crashed|worker \d+ exited with")
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def mikel_files() -> list[Path]:
    if not MIKEL.is_dir():
        return []
    return sorted(p for p in MIKEL.rglob("*") if p.is_file() and p.name != "LICENSE")


def cpython_email_data() -> list[Path]:
    """CPython's email test messages: this interpreter's test package, else a system Python's."""
    here = Path(email.__file__).resolve().parent.parent / "test" / "test_email" / "data"
    dirs = [here, *map(Path, sorted(glob.glob("/usr/lib/python3*/test/test_email/data")))]
    for d in dirs:
        files = sorted(d.glob("msg_*.txt"))
        if files:
            return files
    return []


def corpus() -> list[Path]:
    """Every message the real-mail and fuzz tests start from."""
    return mikel_files() + cpython_email_data()


def scanned_events(journal: Path) -> list[MessageScanned]:
    out: list[MessageScanned] = []
    with Journal(journal, readonly=True) as j:
        after = 0
        while batch := j.read(after, 5000, with_raw=False):
            out.extend(e for e in (from_json(x.body, type_=x.type) for x in batch) if isinstance(e, MessageScanned))
            after = batch[-1].seq
    return out


def log_failures(text: str) -> list[str]:
    """The daemon log's records that say a message or a worker failed, each with its traceback."""
    out: list[str] = []
    record: list[str] | None = None
    for line in text.splitlines():
        if LOG_RECORD.match(line):
            record = None
            if FAILURE_LINES.search(line):
                record = [line]
                out.append("")
        if record is not None:
            if line is not record[0]:
                record.append(line)
            out[-1] = "\n".join(record)
    return out


def failure_cause(failure: str) -> str:
    """A failure's last line: the exception and its message (positions left out, so that one cause
    is counted once), or the log line itself."""
    last = failure.strip().splitlines()[-1].strip()
    return re.sub(r"(character '[^']*'|characters) in position [\d-]+", "character(s) in position N", last)


def _cases() -> Sequence[object]:
    mikel = [pytest.param(p, id="mikel/" + str(p.relative_to(MIKEL))) for p in mikel_files()]
    cpython = [pytest.param(p, id="cpython/" + p.name) for p in cpython_email_data()]
    # An absent corpus must not turn into an empty, silently skipped parametrization.
    return (mikel or [pytest.param(None, id="mikel-mail-missing")]) + (
        cpython or [pytest.param(None, id="cpython-email-data-missing")])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_daemon(tmp_path_factory.mktemp("realmail")) as h:
        yield h


def test_the_corpora_are_complete() -> None:
    require(f"the mikel-mail corpus ({MIKEL})", MIKEL.is_dir())
    assert len(mikel_files()) >= 104  # 104 messages + LICENSE: the 105 files of the corpus
    require("CPython's email test data (the interpreter's test package)", bool(cpython_email_data()))


@pytest.mark.parametrize("path", _cases())
def test_real_message_is_delivered_or_quarantined(daemon: Harness, path: Path | None) -> None:
    require("the mail corpora (../shared/corpora, CPython's test package)", path is not None)
    assert path is not None
    log = daemon.root / "daemon.log"
    log_start = log.stat().st_size
    sender = f"real-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}@example.com"
    res = daemon.send(path.read_bytes(), sender=sender.encode())
    failures = log_failures(log.read_bytes()[log_start:].decode("utf-8", "replace"))
    if failures:
        pytest.fail(f"qscan-queue exit {res.code}; the daemon logged:\n" + "\n".join(failures), pytrace=False)
    assert res.code == 0, f"qscan-queue exit {res.code} {res.fd6!r}"
    events = [e for e in scanned_events(daemon.journal) if e.envelope.sender == sender]
    assert len(events) == 1, events
    ev = events[0]
    assert ev.action in ("deliver", "quarantine"), (ev.action, ev.reason)
    assert ev.reason, ev
