"""Command-line antivirus: a small scanner script the tests write, run without a shell."""

from __future__ import annotations

import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.mime import walk_parts
from qscan.testing.servers import EICAR
from scanners.base import ScanContext
from scanners.cmdline import CmdlineScanner, CmdlineSettings
from scanners.mime.parse import parse
from scanners.result import Disposition, Verdict

pytestmark = pytest.mark.integration

# A stand-in for a commercial engine's CLI: scans a file or a directory, prints one line per
# infected file, exits 1 when it found something, 2 on trouble; records what it was given.
FAKE_AV = '''\
import os, sys, time
if sys.argv[1] == "--version":
    print("FakeAV 2.1 (engine 7)")
    sys.exit(0)
log, target = sys.argv[1], sys.argv[2]
files = [os.path.join(target, n) for n in sorted(os.listdir(target))] if os.path.isdir(target) else [target]
with open(log, "a") as f:
    f.write(" ".join(os.path.basename(p) for p in files) + "\\n")
found = 0
for path in files:
    data = open(path, "rb").read()
    if b"HANG" in data:
        time.sleep(30)
    if b"CRASH" in data:
        print("fatal: cannot open engine database", file=sys.stderr)
        sys.exit(2)
    if b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in data:
        print(f"{path}: Eicar-Test-Signature FOUND")
        found += 1
print(f"scanned {len(files)} files")
sys.exit(1 if found else 0)
'''


@pytest.fixture
def fake_av(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "fakeav.py"
    script.write_text(FAKE_AV)
    return script, tmp_path / "calls.log"


def scanner(fake: tuple[Path, Path], **kw: object) -> CmdlineScanner:
    script, log = fake
    opts = {"argv": (sys.executable, str(script), str(log), "{path}"), "name": "fakeav", "timeout": 10.0, **kw}
    return CmdlineScanner(CmdlineSettings(**opts))  # type: ignore[arg-type]


def context(data: bytes, filename: str = "file.bin") -> ScanContext:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.org", "file"
    msg.set_content("see attached\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    raw = msg.as_bytes()
    parsed = parse(raw)
    _, parts, _ = walk_parts(parsed)
    return ScanContext(raw=raw, message=parsed, parts=parts, sender="a@example.com", recipients=["b@example.org"],
                       client_ip="192.0.2.1", relay=False, size=len(raw), max_size=10**8)


def test_hit_in_directory_mode_reads_the_virus_name(fake_av: tuple[Path, Path]) -> None:
    [r] = scanner(fake_av).scan(context(EICAR, "eicar.com"))
    assert (r.scanner, r.verdict, r.name, r.detail) == ("fakeav", Verdict.VIRUS, "Eicar-Test-Signature", "message")
    assert r.disposition == Disposition.QUARANTINE
    assert fake_av[1].read_text().split() == ["part-1-1", "part-2-2"]  # one run, names qscan made up


def test_hit_in_file_mode_names_the_part(fake_av: tuple[Path, Path]) -> None:
    [r] = scanner(fake_av, target="file", action="reject").scan(context(EICAR))
    assert (r.verdict, r.detail, r.disposition) == (Verdict.VIRUS, "part 2", Disposition.REJECT)
    assert r.reply == "Dmessage contains a virus (Eicar-Test-Signature) (#5.7.1)"


def test_clean_is_recorded_with_the_version(fake_av: tuple[Path, Path]) -> None:
    script, _ = fake_av
    s = scanner(fake_av, redundant=True, version_argv=(sys.executable, str(script), "--version"))
    [r] = s.scan(context(b"just a document"))
    assert (r.verdict, r.error, r.detail) == (Verdict.CLEAN, None, "3 files scanned")
    assert s.version == "FakeAV 2.1 (engine 7)" == r.version


def test_error_exit_applies_the_failure_policy(fake_av: tuple[Path, Path]) -> None:
    [r] = scanner(fake_av).scan(context(b"CRASH"))
    assert r.error == "exit code 2: fatal: cannot open engine database"
    assert r.disposition == Disposition.TEMPFAIL and r.verdict == Verdict.CLEAN
    [r] = scanner(fake_av, failure_policy="pass").scan(context(b"CRASH"))
    assert r.error and r.disposition == Disposition.NONE
    [r] = scanner(fake_av, exit_codes={0: "clean", 1: "virus", 2: "clean"}).scan(context(b"CRASH"))
    assert r.error is None  # the exit-code map decides what a code means


def test_timeout_kills_the_scanner(fake_av: tuple[Path, Path]) -> None:
    t0 = time.monotonic()
    [r] = scanner(fake_av, timeout=0.5).scan(context(b"HANG"))
    assert time.monotonic() - t0 < 5 and r.error and "timed out" in r.error


def test_never_a_shell(fake_av: tuple[Path, Path], tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    evil = f"$(touch {canary});touch {canary}`touch {canary}`.exe"
    [r] = scanner(fake_av).scan(context(EICAR, evil))
    assert r.verdict == Verdict.VIRUS and not canary.exists()
    assert "touch" not in fake_av[1].read_text()  # the attachment name never became a path
    [r] = CmdlineScanner(CmdlineSettings(argv=("/nonexistent/av", "{path}"))).scan(context(b"x"))
    assert r.error and "cannot run" in r.error and r.disposition == Disposition.TEMPFAIL
