"""Generated headers: folded, sanitised, never carrying CR/LF from mail."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.headers import diagnostics_value, fold, line_ending
from scanners.text import one_line as safe


def test_line_ending() -> None:
    assert line_ending(b"A: b\nc") == b"\n"
    assert line_ending(b"A: b\r\nc") == b"\r\n"
    assert line_ending(b"") == b"\n"


def test_fold_keeps_lines_short() -> None:
    out = fold("X-Test", " ".join(["word"] * 50))
    lines = out.split(b"\n")[:-1]
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b"\t") for line in lines[1:])


@given(st.text(max_size=300), st.text(max_size=100), st.text(max_size=50))
def test_diagnostics_never_carry_control_characters(sender: str, host: str, helo: str) -> None:
    value = diagnostics_value(
        client_ip="192.0.2.1", client_host=host, helo=helo, hostname="mx", sender=sender, uid=1,
        product="qscan", versions=[("size", "1")], verdict="Clear", relay=False, spam=None,
        elapsed=0.1, when=0,
    )
    assert not any(ord(c) < 32 or ord(c) == 127 for c in value)
    raw = fold("X-Qmail-Scanner-Diagnostics", value)
    body = raw[:-1].replace(b"\n\t", b"")
    assert b"\n" not in body and b"\r" not in body


@given(st.text())
def test_safe(value: str) -> None:
    out = safe(value, 50)
    assert len(out) <= 50 and "\n" not in out and "\r" not in out
