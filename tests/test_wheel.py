"""The wheel a user installs works anywhere: built from the project, installed into a fresh venv
outside the checkout, it migrates a database, runs the demo and takes a message through the
QMAILQUEUE client, reading its migrations, templates, catalogs and corpus from the installed
package (importlib.resources), never from beside a source tree.

The wheel is built offline (``--no-build-isolation``: the test extra installs the build backend);
its dependencies come from the package index, as a user's would (about 40 s with pip's cache).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from qscan.testing.corpus import load_corpus
from qscan.testing.injector import inject

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

# What the installed package must carry (a pattern per kind, matched against the wheel's names).
PACKAGE_DATA = {
    "migrations": "compliance/migrations/versions/0001_initial.py",
    "alembic environment": "compliance/migrations/env.py",
    "migration template": "compliance/migrations/script.py.mako",
    "notification templates": "compliance/notify/templates/virus/",
    "compiled catalogs": "compliance/notify/locale/de/LC_MESSAGES/messages.mo",
    "demo corpus manifest": "qscan/demo/corpus/manifest.json",
    "demo DLP rules": "qscan/demo/dlp.toml",
    "man page": "share/man/man1/qscan.1",
    "console templates": "qscan/web/templates/base.html",
    "console stylesheet": "qscan/web/static/console.css",
}
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                              ".hypothesis", "demo-data", "work")


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into the checkout, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "QSCAN_CONFIG")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, f"{argv}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def queue_client(bindir: Path) -> Path:
    """The QMAILQUEUE client the wheel installs (the Python one is qscan-queue-py once the native
    qscan-queue is built by `make install`)."""
    for name in ("qscan-queue-py", "qscan-queue"):
        if (bindir / name).exists():
            return bindir / name
    raise AssertionError(f"no qscan-queue client in {bindir}: {sorted(p.name for p in bindir.iterdir())}")


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    src, dist, venv, site = tmp_path / "src", tmp_path / "dist", tmp_path / "venv", tmp_path / "site"
    shutil.copytree(ROOT, src, ignore=SKIP)  # the build writes build/ and *.egg-info: not into the checkout
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src],
        cwd=tmp_path)
    (wheel,) = dist.glob("qscan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for what, name in PACKAGE_DATA.items():
        assert any(n == name or n.endswith("/" + name) or n.startswith(name) for n in names), what
    assert not [n for n in names if n.startswith(("tests/", "bench/", "alembic/", "demo/"))]

    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    env = clean_env(venv)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=tmp_path, env=env, timeout=900)
    site.mkdir()
    where = run([venv / "bin" / "python", "-c", "import compliance, ingest, qscan; "
                 "print(qscan.__file__, compliance.__file__, ingest.__file__)"], cwd=site, env=env).stdout
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where

    config = site / "qscan.toml"
    config.write_text(f'data_dir = "{site / "data"}"\n')
    qscan = venv / "bin" / "qscan"
    up = run([qscan, "-c", config, "db", "upgrade"], cwd=site, env=env)
    assert "INFO" not in up.stdout + up.stderr  # alembic's chatter stays out of an interactive command
    current = run([qscan, "-c", config, "db", "current"], cwd=site, env=env).stdout
    assert "head" in current or "0008" in current, current

    # the base install has no Kafka client: a command that needs it says which extra, in one line
    kafka = site / "kafka.toml"
    kafka.write_text(f'data_dir = "{site / "data"}"\n[log.kafka]\nbootstrap_servers = ["127.0.0.1:9"]\n')
    relay = subprocess.run([str(qscan), "-c", str(kafka), "relay", "--once"], cwd=site, env=env,
                           capture_output=True, text=True, timeout=120)
    assert relay.returncode == 78 and relay.stderr.splitlines() == [
        "qscan: Kafka (log.kafka, --source kafka) needs the kafka extra: pip install 'qscan[kafka]'"], relay.stderr

    demo = site / "demo"
    shown = run([qscan, "demo", "--data-dir", demo], cwd=site, env=env).stdout
    assert "27/27 accepted" in shown and "deliver=25, quarantine=2" in shown, shown[-3000:]
    assert "stopped qscan run" in shown
    assert "hits 1-3 of 3:" in shown  # the demo's discovery search, from the installed wheel

    # one more message through the installed client, into a daemon started from the venv
    client = queue_client(venv / "bin")
    daemon = subprocess.Popen([str(qscan), "-c", str(demo / "qscan.toml"), "run", "--no-upgrade"], cwd=site,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        sock = demo / "qscan.sock"
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        queued = len(list((demo / "queued").glob("*.msg")))
        message = load_corpus()[0]
        result = inject(str(client), message.data, message.envelope,
                        {"PATH": env["PATH"], "QSCAN_SOCKET": str(sock),
                         # the client runs qmail-queue itself: the demo's stand-in
                         "QSCAN_QMAIL_QUEUE": str(demo / "bin" / "qmail-queue"), **message.env})
        assert result.code == 0, result
        assert len(list((demo / "queued").glob("*.msg"))) == queued + 1
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)
