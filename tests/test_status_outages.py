"""`qscan status` tells the truth at once when what the consumers and the relay need is down:
the SQL store (a real PostgreSQL, stopped), the Kafka broker (a real Tansu, stopped) and the
SMTP relay (a real aiosmtpd, stopped) with notices waiting - each with its exit code and reason,
without waiting for the lag threshold."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from compliance.db import upgrade
from ingest.event import to_json
from ingest.journal import Journal
from qscan.ops.status import BROKER_DOWN, SINK_DOWN, SMTP_DOWN
from qscan.testing.daemon import running_daemon
from qscan.testing.kafka_broker import Broker
from tests.test_status import qscan, status_json

pytestmark = pytest.mark.integration


def test_sql_store_down_is_reported_at_once(tmp_path: Path) -> None:
    from qscan.testing.postgres import available, start_server, stop_server
    from tests.conftest import require

    require("PostgreSQL server (Debian postgresql)", available())
    base = Path(tempfile.mkdtemp(prefix="qscan-pg-"))  # the server runs as postgres
    os.chmod(base, 0o700)
    server = start_server(base)
    stopped = False
    try:
        url = server.url(server.create_database())
        upgrade(url)
        with running_daemon(tmp_path, extra=f'[sql]\nurl = "{url}"\n') as h:
            code, doc = status_json(h.config, "--no-scanners")
            assert code == 0, doc["problems"]
            assert doc["sinks"]["sql"]["reachable"] and doc["sinks"]["sql"]["consumers"] == ["summaries"]
            stop_server(server)
            stopped = True
            # nothing is lagging yet (no mail): the store being down is reported all the same
            code, doc = status_json(h.config, "--no-scanners", "--probe-timeout", "2")
            assert code == SINK_DOWN, doc["problems"]
            [problem] = doc["problems"]
            assert problem["what"].startswith("summaries: the SQL store postgresql+psycopg://")
            assert "unreachable" in problem["what"] and "OperationalError" in problem["what"]
            r = qscan(h.config, "status", "--no-scanners", "--probe-timeout", "2")
            assert r.returncode == SINK_DOWN
            assert any(line.startswith("sql (summaries)") and "UNREACHABLE" in line
                       for line in r.stdout.splitlines()), r.stdout
    finally:
        if not stopped:
            stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


def test_broker_down_is_reported_at_once(broker: Broker, tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    extra = (f'[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\npartitions = 3\n'
             'request_timeout_ms = 3000\n')
    with running_daemon(tmp_path, extra=extra) as h:
        r = qscan(h.config, "kafka", "init")
        assert r.returncode == 0, r.stderr
        code, doc = status_json(h.config, "--no-scanners")
        assert code == 0, doc["problems"]
        assert doc["broker"]["reachable"] is True
        broker.stop()
        code, doc = status_json(h.config, "--no-scanners", "--probe-timeout", "3")
        assert code == BROKER_DOWN, doc["problems"]
        [problem] = doc["problems"]
        assert problem["what"].startswith(f"Kafka broker {broker.bootstrap} (topic qscan.events): ")
        r = qscan(h.config, "status", "--no-scanners", "--probe-timeout", "3")
        assert r.returncode == BROKER_DOWN
        assert any(line.startswith("kafka") and "UNREACHABLE" in line for line in r.stdout.splitlines()), r.stdout


def test_smtp_relay_down_with_notices_waiting(tmp_path: Path) -> None:
    from tests.test_notify_delivery import Relay as SmtpRelay
    from tests.test_notify_delivery import free_port, policy_event

    smtp = SmtpRelay(free_port()).start()
    upgrade(f"sqlite:///{tmp_path / 'qscan.db'}")
    extra = ('[consumers]\nenabled = ["summaries", "notify"]\n'
             '[notify]\nlocal_domains = ["example.org"]\nadmin = "qadmin@example.net"\n'
             f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_timeout = 2\n')
    try:
        with running_daemon(tmp_path, extra=extra) as h:
            code, doc = status_json(h.config, "--no-scanners")
            assert code == 0, doc["problems"]
            assert doc["smtp"]["reachable"] and doc["smtp"]["notices_waiting"] == 0
            smtp.stop()
            # down, but nothing waits: shown, not a problem
            code, doc = status_json(h.config, "--no-scanners", "--probe-timeout", "5")
            assert code == 0 and doc["smtp"]["reachable"] is False, doc
            ev = policy_event()
            with Journal(h.journal) as j:
                j.append(ev.event_id, ev.type, to_json(ev, with_raw=False), ev.raw_message)
            res = subprocess.run([sys.executable, "-m", "qscan", "-c", str(h.config), "consume", "notify",
                                  "--once"], capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stderr
            code, doc = status_json(h.config, "--no-scanners", "--probe-timeout", "5")
            waiting = doc["smtp"]["notices_waiting"]
            assert waiting and waiting >= 1
            assert code == SMTP_DOWN, doc["problems"]
            [problem] = [p for p in doc["problems"] if p["code"] == SMTP_DOWN]
            assert problem["what"].startswith(f"notify: SMTP relay 127.0.0.1:{smtp.port} is down (")
            assert problem["what"].endswith(f"with {waiting} notices waiting")
            r = qscan(h.config, "status", "--no-scanners", "--probe-timeout", "5")
            assert r.returncode == SMTP_DOWN
            # the row's detail wraps under it at the terminal's width: read the row as one line
            lines = r.stdout.splitlines()
            start = next(n for n, line in enumerate(lines) if line.startswith("smtp relay"))
            end = next(n for n in range(start + 1, len(lines)) if not lines[n].startswith(" "))
            row = " ".join(" ".join(lines[start:end]).split())
            assert row.startswith("smtp relay DOWN 127.0.0.1:"), r.stdout
            assert row.endswith(f"{waiting} notices waiting"), r.stdout
    finally:
        smtp.stop()
