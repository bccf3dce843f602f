"""The demo corpus: complete, parseable, deterministic and true to its manifest."""

from __future__ import annotations

import email
import ipaddress
import json
import subprocess
import sys
from email import policy

import pytest

from ingest.envelope import parse_envelope
from qscan.testing.corpus import CorpusMessage, default_corpus_dir, large_message, load_corpus

FIVE_MB = 5 * 1024 * 1024
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
DOC_DOMAINS = ("example.com", "example.org", "example.net")


@pytest.fixture(scope="module")
def corpus() -> list[CorpusMessage]:
    return load_corpus()


def test_manifest_entries_all_load(corpus):
    manifest = json.loads((default_corpus_dir() / "manifest.json").read_text("utf-8"))
    assert [m.name for m in corpus] == [e["file"] for e in manifest]
    assert len(corpus) >= 20
    for entry in manifest:
        assert all(isinstance(v, str) for v in entry["env"].values()), entry["file"]
        assert entry["description"]


def test_variety(corpus):
    assert any(m.sender == "" for m in corpus)
    assert any(len(m.recipients) >= 3 for m in corpus)
    large = [m for m in corpus if abs(len(m.data) - FIVE_MB) <= FIVE_MB * 0.02]
    assert large, "no ~5 MB message"
    assert any("RELAYCLIENT" in m.env for m in corpus)
    assert any("TCPREMOTEIP" not in m.env for m in corpus)
    assert any("SMTPAUTHUSER" in m.env for m in corpus)
    assert any("support@example.com" in m.recipients for m in corpus)
    assert any(m.sender == "sales@example.com" for m in corpus)
    assert any(b"\r\n" in m.data for m in corpus)
    assert any(b'filename="invoice.pdf.exe"' in m.data for m in corpus)


def test_line_endings(corpus):
    for m in corpus:
        if m.name.endswith("-crlf.eml"):
            assert m.data.count(b"\n") == m.data.count(b"\r\n")
        else:
            assert b"\r" not in m.data, m.name


def test_every_message_parses(corpus):
    for m in corpus:
        msg = email.message_from_bytes(m.data, policy=policy.default)
        for part in msg.walk():
            for _name, value in part.items():
                str(value)
            if not part.is_multipart():
                part.get_content()
        assert msg["From"] is not None, m.name


def test_documentation_addresses_only(corpus):
    for m in corpus:
        for key in ("TCPREMOTEIP", "TCPLOCALIP"):
            if key in m.env:
                ip = ipaddress.ip_address(m.env[key])
                assert any(ip in net for net in DOC_NETS), (m.name, ip)
        for addr in [m.sender, *m.recipients]:
            assert addr == "" or addr.rsplit("@", 1)[1].endswith(DOC_DOMAINS), (m.name, addr)


def test_generation_is_deterministic(corpus):
    again = load_corpus()
    assert [m.data for m in again] == [m.data for m in corpus]
    assert large_message(100_000, "a@example.net", ["b@example.org"]) == large_message(
        100_000, "a@example.net", ["b@example.org"]
    )


def test_large_message_shape():
    data = large_message(FIVE_MB, "eve@example.net", ["bob@example.org"])
    assert FIVE_MB * 0.98 <= len(data) <= FIVE_MB
    assert b"\r" not in data
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    body = data.split(b"\n\n")[-1]
    lines = body.split(b"\n")
    assert max(len(line) for line in lines) == 76
    with pytest.raises(ValueError):
        large_message(10, "a@example.net", ["b@example.org"])


def test_envelopes_round_trip(corpus):
    for m in corpus:
        env = parse_envelope(m.envelope)
        assert env.sender == m.sender.encode()
        assert env.recipients == [r.encode() for r in m.recipients]


def test_every_eml_file_is_in_the_manifest(corpus):
    on_disk = {p.name for p in default_corpus_dir().glob("*.eml")}
    assert on_disk <= {m.name for m in corpus}


def test_committed_files_match_the_script(tmp_path):
    script = default_corpus_dir().parent / "make_corpus.py"
    cmd = [sys.executable, str(script), "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True)
    committed = default_corpus_dir()
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == sorted(p.name for p in committed.iterdir() if not p.name.startswith("."))
    for name in produced:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
