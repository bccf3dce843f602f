"""Shared fixtures. Tests import the project from the installed checkout."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# SQL tests run on SQLite and on a real PostgreSQL server (tests/pg.py).
# Kafka tests run against a real Kafka-protocol broker (Tansu; qscan/testing/kafka_broker.py).
from tests.kafka_broker import broker  # noqa: E402, F401
from tests.pg import (  # noqa: E402, F401
    db_kind,
    db_url,
    fresh_db,
    migrated_url,
    pg_migrated_template,
    pg_server,
    sqlite_migrated_template,
)

# The console's browser tests share one chromium per module (tests/web_browser.py).
from tests.web_browser import browser  # noqa: E402, F401


def require(what: str, available: bool) -> None:
    """A test that needs a real component: skip on a developer box, fail in CI (CI=true).

    `make test` installs every component (scripts/debian-packages.txt), so in CI a missing
    one is a broken install, never a reason to pass quietly.
    """
    import os

    import pytest

    if available:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available (make test installs it)")
