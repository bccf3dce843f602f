"""daemon.recycle_after_bytes: a worker that handled a big message is replaced right after it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.journal import Journal
from qscan.config import ConfigError, parse_config
from qscan.testing.daemon import Harness, running_daemon
from qscan.wiring.pipeline import daemon_options

LIMIT = 64 * 1024
SMALL = b"From: a@example.com\nSubject: small\n\nbody\n"


def big_message() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    return b"From: a@example.com\nSubject: big\n\n" + line * (2 * LIMIT // len(line))


def workers(h: Harness) -> set[str]:
    assert h.proc is not None
    return set(Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split())


def one_worker(h: Harness) -> set[str]:
    """The daemon's single worker, once forked (the socket can answer before it is)."""
    deadline = time.monotonic() + 10
    while len(now := workers(h)) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(now) == 1
    return now


def recycle_lines(h: Harness) -> list[str]:
    return [ln for ln in (h.root / "daemon.log").read_text().splitlines() if "recycled after" in ln]


@pytest.mark.integration
def test_big_message_is_answered_then_its_worker_replaced(tmp_path: Path) -> None:
    with running_daemon(tmp_path, workers=1, daemon_extra=f"recycle_after_bytes = {LIMIT}") as h:
        first = one_worker(h)
        assert h.send(SMALL).code == 0
        assert h.send(SMALL).code == 0
        time.sleep(0.5)  # a recycle would happen right after the answer
        assert workers(h) == first  # small messages keep the warm worker
        assert recycle_lines(h) == []

        big = big_message()
        assert len(big) >= LIMIT
        res = h.send(big)
        assert res.code == 0  # answered normally: queued and journaled before the worker left
        assert h.recorded()[-1][0].endswith(big)
        with Journal(h.journal) as j:
            assert j.count() == 3
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = workers(h)
            if len(now) == 1 and not now & first:
                break
            time.sleep(0.05)
        assert len(now) == 1 and not now & first  # the master forked a fresh one
        (line,) = recycle_lines(h)
        assert f"recycled after a {len(big)}-byte message" in line and " INFO " in line

        assert h.send(SMALL).code == 0  # the fresh worker takes mail
        assert len(h.recorded()) == 4


@pytest.mark.integration
def test_zero_disables(tmp_path: Path) -> None:
    with running_daemon(tmp_path, workers=1, daemon_extra="recycle_after_bytes = 0") as h:
        first = one_worker(h)
        assert h.send(big_message()).code == 0
        time.sleep(0.5)
        assert workers(h) == first
        assert recycle_lines(h) == []


def test_config_default_validation_and_wiring(tmp_path: Path) -> None:
    cfg = parse_config("", tmp_path / "q.toml")
    assert cfg.daemon.recycle_after_bytes == 8 * 1024 * 1024
    assert daemon_options(cfg).recycle_after_bytes == 8 * 1024 * 1024
    cfg = parse_config("[daemon]\nrecycle_after_bytes = 0\n", tmp_path / "q.toml")
    assert daemon_options(cfg).recycle_after_bytes == 0
    with pytest.raises(ConfigError) as exc:
        parse_config("[daemon]\nrecycle_after_bytes = -1\n", tmp_path / "q.toml")
    assert "q.toml:2: key 'daemon.recycle_after_bytes': Input should be greater than or equal to 0" in str(
        exc.value
    )
