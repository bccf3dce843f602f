"""The scale-out path end to end: three hosts (three daemons, each with its own journal and
relay) feed one 3-partition topic; a consumer group of two projects it into PostgreSQL. One
consumer is killed mid-batch and the broker restarts without its data: every event is in SQL
exactly once, every host's chain verifies, and a tampering on any host is named."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ingest.journal import Journal
from ingest.kafka_log import KafkaSettings, Relay, init_topic
from ingest.log import Stop
from qscan.testing.daemon import Harness, running_daemon
from qscan.testing.kafka_broker import Broker
from qscan.testing.postgres import PgServer

pytestmark = pytest.mark.integration

HOSTS = ("mx1.example.com", "mx2.example.com", "mx3.example.com")
PER_HOST = 40


def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def qscan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qscan", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=180)


def test_three_hosts_one_topic_a_group_of_two_a_kill_and_a_broker_restart(
        broker: Broker, pg_server: PgServer, pg_migrated_template: str, tmp_path: Path) -> None:
    url = pg_server.url(pg_server.create_database(pg_migrated_template))
    s = KafkaSettings(bootstrap_servers=[broker.bootstrap], partitions=3, request_timeout_ms=5000)
    init_topic(s)
    extra = (f'[sql]\nurl = "{url}"\n[log.kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\n'
             'partitions = 3\nrequest_timeout_ms = 5000\n[consumers]\nsource = "kafka"\nbatch = 5\n'
             'enabled = ["summaries"]\n')
    stop = Stop()
    with ExitStack() as stack:
        hosts: list[Harness] = [stack.enter_context(running_daemon(tmp_path / h, extra=extra, hostname=h))
                                for h in HOSTS]
        relays = [Relay(stack.enter_context(Journal(h.journal)), s, name, check_interval=1.0, max_backoff=1.0)
                  for h, name in zip(hosts, HOSTS, strict=True)]
        threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in relays]
        for t in threads:
            t.start()

        def mail(h: Harness, host: str, start: int, n: int) -> None:
            for i in range(start, start + n):
                assert h.send(f"Subject: {host} {i}\n\nbody {i}\n".encode()).code == 0

        senders = [threading.Thread(target=mail, args=(h, name, 0, PER_HOST // 2))
                   for h, name in zip(hosts, HOSTS, strict=True)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)

        # the consumer group: two `qscan consume summaries` processes on the first host's config
        argv = [sys.executable, "-m", "qscan", "-c", str(hosts[0].config), "consume", "summaries"]
        group = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"consumer{i}.log").open("w"))
                 for i in range(2)]
        stack.callback(lambda: [p.kill() for p in group if p.poll() is None])
        deadline = time.monotonic() + 60
        while count(url, "SELECT count(*) FROM messages") < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        group[0].send_signal(signal.SIGKILL)  # mid-batch: batches of 5, no goodbye
        group[0].wait()
        assert 0 < count(url, "SELECT count(*) FROM messages") < len(HOSTS) * PER_HOST

        broker.stop()  # memory storage: the topic and every record are gone
        time.sleep(1)
        broker.start()
        # the killed member comes back, as `qscan run`'s supervisor restarts it
        group.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=(tmp_path / "consumer2.log").open("w")))
        senders = [threading.Thread(target=mail, args=(h, name, PER_HOST // 2, PER_HOST // 2))
                   for h, name in zip(hosts, HOSTS, strict=True)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)

        total = len(HOSTS) * PER_HOST
        # generous: on a loaded host a group rebalance after the restart can take a minute or more
        deadline = time.monotonic() + 300
        while count(url, "SELECT count(DISTINCT event_id) FROM messages") < total and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.requested = True
        for t in threads:
            t.join(30)
        for p in group[1:]:
            p.send_signal(signal.SIGTERM)
            p.wait(30)

        # every event exactly once, from every host (else: what is missing, and what the group said)
        found = count(url, "SELECT count(*) FROM messages")
        if found != total:
            with ExitStack() as journals:
                sent = {(name, e.event_id) for h, name in zip(hosts, HOSTS, strict=True)
                        for e in journals.enter_context(Journal(h.journal, readonly=True))
                        .read(0, 10_000, with_raw=False)}
            engine = create_engine(url)
            with engine.connect() as conn:
                have = {r[0] for r in conn.execute(text("SELECT event_id FROM messages"))}
            engine.dispose()
            logs = "\n".join(f"--- consumer{i}.log\n" + "\n".join(
                line for line in (tmp_path / f"consumer{i}.log").read_text().splitlines()
                if "qscan" in line or "ingest" in line or "compliance" in line)[-4000:] for i in range(3))
            pytest.fail(f"{found} of {total} events in SQL; missing: "
                        f"{sorted(p for p in sent if p[1] not in have)}\n{logs}")
        assert count(url, "SELECT count(DISTINCT event_id) FROM messages") == total
        for name in HOSTS:
            assert count(url, f"SELECT count(*) FROM messages WHERE host = '{name}'") == PER_HOST
        # each relay noticed on its own that the topic lost its records; one of them created it again
        assert all(r.resent > 0 for r in relays) and sum(r.created for r in relays) >= 1

        # every host's verify: its chain and its journal against SQL
        for h in hosts:
            r = qscan(h.config, "verify", "--no-files")
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"{PER_HOST} journal events checked" in r.stderr, r.stderr
            assert all(f"{name}#{PER_HOST}" in r.stderr for name in HOSTS), r.stderr

        # a tampering on any host is named, from any host's verify
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                victims = [conn.execute(text("SELECT event_id FROM messages WHERE host = :h "
                                             "ORDER BY chain_seq LIMIT 1 OFFSET 7"), {"h": name}).scalar_one()
                           for name in HOSTS]
                conn.execute(text("UPDATE messages SET subject = 'nothing to see' WHERE event_id IN "
                                  "(:a, :b, :c)"), dict(zip("abc", victims, strict=True)))
        finally:
            engine.dispose()
        r = qscan(hosts[1].config, "verify", "--no-files")
        assert r.returncode == 1, r.stdout + r.stderr
        for name, victim in zip(HOSTS, victims, strict=True):
            assert any(line.startswith(f"altered-row: messages {name}#8 {victim}")
                       for line in r.stdout.splitlines()), r.stdout
