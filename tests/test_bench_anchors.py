"""The benchmark's side-by-side anchors: ratios, report lines, generated configurations.

No figures are asserted (no timed tests): only what the harness computes and writes from them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.anchors import amavisd_config, pct, ratios, rows, rspamd_headers, smtp_data
from bench.corpus import BenchMessage
from bench.run import TARGETS, report, update_docs
from ingest.envelope import build_envelope


def fig(rate: float) -> dict[str, float]:
    return {"msgs_per_s": rate, "p50_ms": 4.1, "p95_ms": 9.0, "p99_ms": 37.7,
            "server_cpu_ms_per_msg": 2.0, "driver_cpu_ms_per_msg": 0.5, "failed": 0}


def ours(rate: float) -> dict[str, float]:
    return {"msgs_per_s": rate, "p50_ms": 5.5, "p95_ms": 20.0, "p99_ms": 38.9, "cpu_ms_per_msg": 3.1,
            "daemon_cpu_ms_per_msg": 2.4, "pss_mb": 200.0}


def result() -> dict[str, Any]:
    return {
        "machine": {"cpus": 2, "model": "test cpu", "python": "3.11", "kernel": "6", "date": "2026-12-07"},
        "end_to_end": {"1": ours(50.0), "4": ours(541.0)},
        "anchors": {"rspamd": {"1": fig(200.0), "4": fig(493.0)}, "amavisd": {"4": fig(64.0)}},
    }


def test_ratio_is_qscan_over_the_anchor_per_concurrency() -> None:
    assert ratios(result()) == {"rspamd": {"1": 0.25, "4": 1.1}, "amavisd": {"4": 8.45}}


def test_ratio_needs_both_sides_of_the_same_concurrency() -> None:
    r = result()
    r["anchors"]["amavisd"] = {"8": fig(60.0)}  # qscan did not run at 8
    r["anchors"]["rspamd"]["1"] = fig(0.0)  # nothing to divide by
    assert ratios(r) == {"rspamd": {"4": 1.1}}
    del r["end_to_end"]
    assert ratios(r) == {}
    assert ratios({"end_to_end": {"4": {"msgs_per_s": 1.0}}}) == {}


def test_report_prints_each_anchor_and_the_ratio_to_it(capsys: pytest.CaptureFixture[str]) -> None:
    r = result()
    r["vs_anchors"] = ratios(r)
    lines = rows(r)
    rspamd4 = next(line for line in lines if line[0] == "rspamd c=4 msgs/s")
    assert rspamd4[1] == "493.0" and rspamd4[2] == "qscan end to end 1.10x (541.0 msgs/s)"
    amavisd4 = next(line for line in lines if line[0] == "amavisd c=4 msgs/s")
    assert amavisd4[2] == "qscan end to end 8.45x (541.0 msgs/s)"
    report(r)
    out = capsys.readouterr().out
    assert re.search(r"vs_anchors\.rspamd\.4\s+1\.1 >= 1\.2\s+MISSED", out)
    assert re.search(r"vs_anchors\.amavisd\.4\s+8\.45 >= 10\s+MISSED", out)
    assert "server CPU 2.0 ms/msg" in out


def test_failures_are_shown_beside_the_latencies() -> None:
    r = result()
    r["anchors"]["rspamd"]["4"]["failed"] = 3
    latency = next(line for line in rows(r) if line[0] == "rspamd c=4 p50/p95/p99 ms")
    assert latency[1] == "4.1 / 9.0 / 37.7" and latency[2].endswith(", 3 failed")


def test_docs_table_carries_the_ratios_and_their_targets(tmp_path: Path) -> None:
    from bench.run import BEGIN, END

    doc = tmp_path / "performance.md"
    doc.write_text(f"# head\n\n{BEGIN}\nold\n{END}\n\ntail\n")
    r = result()
    r["vs_anchors"] = ratios(r)
    update_docs(doc, r)
    text = doc.read_text()
    assert "| `vs_anchors.rspamd.4` | 1.1 | >= 1.2 |" in text
    assert "| `vs_anchors.amavisd.4` | 8.45 | >= 10 |" in text
    assert "| `anchors.rspamd.4.msgs_per_s` | 493.0 |  |" in text
    assert text.startswith("# head") and text.endswith("tail\n") and "old" not in text
    assert ("vs_anchors", "rspamd", "4") in TARGETS and ("vs_anchors", "amavisd", "4") in TARGETS


def test_percentile_is_nearest_rank() -> None:
    assert pct([], 50) == 0.0
    assert pct([3.0, 1.0, 2.0], 50) == 2.0
    assert pct([float(i) for i in range(101)], 99) == 99.0


def test_rspamd_is_told_the_envelope_and_the_client() -> None:
    m = BenchMessage("plain", b"Subject: x\n\nhi\n",
                     build_envelope(b"a@sender.example", [b"b@example.org", b"c@example.org"]),
                     {"TCPREMOTEIP": "198.51.100.7", "TCPREMOTEHOST": "mail.example.net"})
    headers, rcpts = rspamd_headers(m)
    assert headers == {"From": "a@sender.example", "Content-Length": str(len(m.data)),
                       "IP": "198.51.100.7", "Hostname": "mail.example.net"}
    assert rcpts == ["b@example.org", "c@example.org"]
    bounce = BenchMessage("plain", b"\n", build_envelope(b"", [b"b@example.org"]), {})
    assert rspamd_headers(bounce)[0] == {"From": "", "Content-Length": "1"}


def test_amavisd_config_checks_banned_names_and_headers_only(tmp_path: Path) -> None:
    conf = amavisd_config(tmp_path / "home", 10024, 10025, "amavis", "amavis", servers=4)
    settings = dict(re.findall(r"^(\$\w+|@\w+) = (.*);$", conf, re.M))
    assert settings["$max_servers"] == "4"
    assert settings["$inet_socket_bind"] == "'127.0.0.1'" and settings["$inet_socket_port"] == "10024"
    assert settings["$forward_method"] == "'smtp:[127.0.0.1]:10025'"
    assert settings["$notify_method"] == settings["$forward_method"]
    # no antivirus, no SpamAssassin; banned-file and bad-header checks on
    assert settings["@bypass_virus_checks_maps"] == "(1)" and settings["@bypass_spam_checks_maps"] == "(1)"
    assert settings["@av_scanners"] == "()" and settings["@av_scanners_backup"] == "()"
    assert settings["@bypass_banned_checks_maps"] == "(0)" and settings["@bypass_header_checks_maps"] == "(0)"
    # everything it writes stays in its temp home; nothing goes to syslog or a shared database
    home = str(tmp_path / "home")
    for key in ("$MYHOME", "$TEMPBASE", "$db_home", "$pid_file", "$lock_file", "$LOGFILE"):
        assert settings[key].strip("'").startswith(home), key
    assert settings["$DO_SYSLOG"] == "0" and settings["$enable_db"] == "0"
    assert "new_RE(" in conf and r"qr'.\.(exe|vbs|pif|scr|bat|cmd|com|cpl)$'i" in conf
    assert r"qr'\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}?$'i" in conf
    assert conf.rstrip().endswith("1;")


def test_amavisd_config_refuses_what_perl_quoting_would_break(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="home"):
        amavisd_config(tmp_path / "it's", 1, 2, "amavis", "amavis")
    with pytest.raises(ValueError, match="user"):
        amavisd_config(tmp_path, 1, 2, "a\\b", "amavis")


def test_committed_results_still_report(capsys: pytest.CaptureFixture[str]) -> None:
    r = json.loads((Path(__file__).resolve().parent.parent / "bench" / "results" / "latest.json").read_text())
    report(r)  # a results file with or without anchors prints
    assert "targets:" in capsys.readouterr().out


def test_smtp_data_has_crlf_line_ends_only() -> None:
    assert smtp_data(b"Subject: x\n\nline\r\nlast\n") == b"Subject: x\r\n\r\nline\r\nlast\r\n"
    assert smtp_data(b"") == b""
