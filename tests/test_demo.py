"""The demo command a new user runs (`make demo`) works end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_make_demo(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    out = subprocess.run(
        ["make", "-C", str(ROOT), "demo", f"DEMO_DIR={data}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "27/27 accepted" in text
    # the internal scanner quarantines 20-invoice-exe.eml (invoice.pdf.exe, category policy);
    # inline DLP (qscan/demo/dlp.toml) quarantines 26-outbound-card-numbers.eml (three card numbers)
    assert "audit table" in text and "deliver=25, quarantine=2" in text
    assert f"archive maildir:   {data / 'archive'} (25 messages in new/)" in text
    assert len(list((data / "quarantine" / "policy" / "new").iterdir())) == 1
    (dlp_copy,) = (data / "quarantine" / "dlp" / "new").iterdir()
    assert b"Customer list for the migration" in dlp_copy.read_bytes()
    assert "4556 7375 8689 9855" not in (data / "summary.log").read_text()  # masked, never in logs
    assert "stopped qscan run" in text
    assert "web console:       qscan -c" in text and "sign in as demo, password " in text  # the test extra has [web]
    assert len(list((data / "queued").glob("*.msg"))) == 25
    # one archived message carries the envelope block at its bottom
    archived = sorted((data / "archive" / "new").iterdir())
    assert archived
    tail = archived[0].read_bytes()[-600:]
    assert b"*** qscan Envelope Details Begin ***" in tail and tail.endswith(b"*** qscan Envelope Details End ***\n")
    # everything it started has stopped: the socket is gone
    assert not (data / "qscan.sock").exists()
