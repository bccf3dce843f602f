"""`qscan policy check | explain | import` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qscan.cli import cli
from qscan.testing.corpus import default_corpus_dir
from tests.internal_corpus import TEXT_PART, attachment, multipart, pe_bytes, zip_bytes

ROOT = Path(__file__).resolve().parent.parent
GOOD = """\
[[rule]]
id = "tag-zip"
action = "tag"
tag_header = "X-Has-Zip: yes"
filename = ["*.zip"]

[[rule]]
id = "no-scr"
description = "screen savers are not accepted"
action = "reject"
filename = ["*.scr"]
"""
BAD = """\
[[rule]]
id = "all-exe"
action = "quarantine"
filename = ["*.exe"]

[[rule]]
id = "some-exe"
action = "reject"
filename = ["*.exe"]
recipient_domain = ["example.org"]

[[rule]]
id = "lookbehind"
action = "quarantine"
filename_regex = ['(?<!x)\\.exe$']
"""


def setup(tmp_path: Path, rules: str = GOOD) -> Path:
    (tmp_path / "policy.toml").write_text(rules)
    cfg = tmp_path / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[internal]\nrules = "policy.toml"\n')
    return cfg


def test_check_ok(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    res = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "check"])
    assert res.exit_code == 0, res.output
    assert "policy.toml: OK (2 rules)" in res.output


def test_check_reports_problems_and_fails(tmp_path: Path) -> None:
    setup(tmp_path)
    (tmp_path / "bad.toml").write_text(BAD)
    res = CliRunner().invoke(cli, ["-c", "/nonexistent.toml", "policy", "check", str(tmp_path / "bad.toml")])
    assert res.exit_code == 1
    assert "rule #2 (some-exe): error: unreachable: rule 'all-exe'" in res.output
    assert "rule #3 (lookbehind): error: filename_regex: bad regex" in res.output


def test_explain_shows_parts_findings_and_the_deciding_rule(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    msg = tmp_path / "m.eml"
    msg.write_bytes(multipart(
        TEXT_PART,
        attachment("bundle.zip", zip_bytes({"fun.scr": pe_bytes(), "readme.txt": b"hi\n"}), b"application/zip"),
        attachment("invoice.pdf.exe", b"MZ"),
    ))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "explain", str(msg), "--client-ip", "192.0.2.9"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "2/bundle.zip!/fun.scr" in out and "2/bundle.zip!/readme.txt" in out
    assert "double-extension" in out and "3: invoice.pdf.exe: .pdf before .exe" in out
    assert "tag:       rule 'tag-zip' adds 'X-Has-Zip: yes'" in out
    assert "decided by: rule 'no-scr': reject (policy) — screen savers are not accepted" in out
    assert "verdict:   category=policy action=reject reason=no-scr reply='Dscreen savers are not accepted" in out

    res = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "explain", str(msg), "--json",
                                   "--sender", "x@example.net", "--recipient", "y@example.org", "--relay"])
    data = json.loads(res.output)
    assert data["envelope"] == {"sender": "x@example.net", "recipients": ["y@example.org"], "client_ip": None,
                                "direction": "outbound"}
    assert data["decided_by"]["rule"] == "no-scr" and data["action"] == "reject"
    assert {"2/bundle.zip!/fun.scr", "3"} <= {p["path"] for p in data["parts"]}
    # the screen saver's name and content are banned by default, and so is the .exe: recorded
    # beside the double extension, the site's rule decides first
    assert {f["check"] for f in data["findings"]} == {"double-extension", "banned-extension",
                                                      "executable-content"}


def test_explain_demo_invoice_with_defaults_and_alternative_rules(tmp_path: Path) -> None:
    demo = default_corpus_dir() / "20-invoice-exe.eml"
    res = CliRunner().invoke(cli, ["-c", str(tmp_path / "none.toml"), "policy", "explain", str(demo)])
    assert res.exit_code == 0, res.output
    assert "decided by: built-in check rule 'double-extension': quarantine (policy)" in res.output
    allow = tmp_path / "allow.toml"
    allow.write_text('[[rule]]\nid = "billing"\naction = "allow"\nsender = ["billing@example.net"]\n')
    res = CliRunner().invoke(cli, ["-c", str(tmp_path / "none.toml"), "policy", "explain", str(demo),
                                   "--rules", str(allow)])
    assert "decided by: rule 'billing': allow" in res.output
    assert "verdict:   category=clean action=deliver" in res.output


def test_import_writes_rules_that_check_clean(tmp_path: Path) -> None:
    events = tmp_path / "quarantine-events.txt"
    events.write_text(".vbs\tSIZE=-1\tPolicy: no VBS\nILOVEYOU\tSubject:\tLove Letter\nnonsense\n")
    out = tmp_path / "imported.toml"
    runner = CliRunner()
    res = runner.invoke(cli, ["-c", "/nonexistent.toml", "policy", "import", str(events), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 rule(s) imported, 1 line(s) skipped" in res.output
    res = runner.invoke(cli, ["-c", "/nonexistent.toml", "policy", "check", str(out)])
    assert res.exit_code == 0 and "OK (2 rules)" in res.output
    res = runner.invoke(cli, ["-c", "/nonexistent.toml", "policy", "import", str(events)])
    assert 'filename = [\n    "*.vbs",\n]' in res.output or 'filename = ["*.vbs"]' in res.output


def test_daemon_refuses_to_start_with_a_broken_rules_file(tmp_path: Path) -> None:
    cfg = setup(tmp_path, BAD.replace("(?<!x)", "(?<!x"))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "daemon"])
    assert res.exit_code == 2
    assert "key 'internal.rules': the rules file" in res.output and "rule #3 (lookbehind)" in res.output
