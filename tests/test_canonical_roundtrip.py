"""The canonical encoding survives both databases: random events projected into SQLite and
PostgreSQL read back to the same canonical bytes, the same chain hashes, and a clean verify.

What a database may do to a value on the way (SQLite returns a REAL ``-0.0`` as ``0.0``,
naive datetimes and integral floats as stored; PostgreSQL returns aware datetimes in the
session zone) must not show in the hash, and neither database may alter text (composed
or decomposed Unicode, 8-bit header bytes as the event model decodes them).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance import canonical
from compliance.db import make_engine
from compliance.summaries import SummarySink
from compliance.verify import _stream, verify_chain, verify_log
from ingest.event import Action, Category, Finding
from ingest.log import LogRecord
from tests.factories import make_event

pytestmark = pytest.mark.integration

floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 0.0, 5e-324, -2.2250738585072014e-308, 1e308, 0.1, 1 / 3, 2.0**53 + 2])
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1),
                       timezones=st.none() | st.just(UTC) | offsets)
# Text as mail brings it: any code point (8-bit header bytes come as surrogate escapes,
# which the event model decodes), composed and decomposed forms, controls.
mail_text = st.text(max_size=40) | st.binary(max_size=30).map(
    lambda b: b.decode("ascii", "surrogateescape")) | st.sampled_from(
    ["Cafe\u0301", "Caf\u00e9", "\ufb01le", "\u0130stanbul", "a\u0000b\r\nc", "\U0001f4e7"])
# Fields that never hold raw mail bytes (scanner names, DLP rules, envelope addresses,
# which arrive as bytes without NUL) are valid text.
valid_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                            blacklist_characters="\x00"), max_size=30)
addresses = st.builds(lambda local, dom: f"{local}@{dom}",
                      valid_text.filter(lambda s: "@" not in s), valid_text)


@st.composite
def events(draw: st.DrawFn) -> Any:
    findings = [Finding(scanner=draw(valid_text) or "s", verdict=draw(st.sampled_from(Category)),
                        name=draw(mail_text), score=draw(floats), detail=draw(mail_text),
                        duration_ms=draw(floats))
                for _ in range(draw(st.integers(0, 2)))]
    action = draw(st.sampled_from(Action))
    return make_event(
        sender=draw(addresses), recipients=draw(st.lists(addresses, min_size=1, max_size=3)),
        subject=draw(mail_text), action=action,
        category=draw(st.sampled_from(Category)) if action != Action.DELIVER else Category.CLEAN,
        reason=draw(mail_text), client_ip=draw(st.none() | mail_text), findings=findings,
        attachments=[(draw(mail_text) or "f", "application/pdf", draw(st.integers(0, 2**40)))],
        when=draw(moments), raw=b"Subject: x\n\nbody\n", spam_score=draw(st.none() | floats),
        crypto=draw(st.none() | st.lists(st.sampled_from(["smime-signed", "pgp-encrypted"]))),
        dlp_findings=[{"rule": draw(valid_text), "count": draw(st.integers(-5, 2**40)),
                       "evidence": draw(valid_text)}],
    )


@pytest.fixture
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """A migrated SQLite and a migrated PostgreSQL database."""
    from qscan.testing.postgres import available
    from tests.conftest import require

    require("PostgreSQL server (Debian postgresql)", available())
    path = tmp_path / "qscan.db"
    shutil.copy(request.getfixturevalue("sqlite_migrated_template"), path)
    server = request.getfixturevalue("pg_server")
    name = server.create_database(request.getfixturevalue("pg_migrated_template"))
    try:
        yield [f"sqlite:///{path}", server.url(name)]
    finally:
        server.drop_database(name)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(batch=st.lists(events(), min_size=1, max_size=4))
def test_random_rows_hash_alike_on_both_databases(both: list[str], batch: list[Any]) -> None:
    host = f"h{uuid.uuid4().hex}.example"  # a chain of its own per example, same databases
    batch = [ev.model_copy(update={"host": host}) for ev in batch]
    encodings: list[list[tuple[int, bytes, str | None]]] = []
    for url in both:
        sink = SummarySink(url)
        try:
            position = sink.position()
            records = [LogRecord(position + i, ev) for i, ev in enumerate(batch, 1)]
            sink.apply(records, position + len(batch))
        finally:
            sink.close()
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                read_back = [(e.seq, canonical.encode("message", host, e.seq, e.row, e.children),
                              e.chain_hash) for e in _stream(conn, "message", host)]
            encodings.append(read_back)
            report = verify_chain(engine, hosts=[host])
            assert report.problems == [], (url, report.problems)
            log = verify_log(engine, [records], position=records[-1].position)
            assert log.problems == [], (url, log.problems)
        finally:
            engine.dispose()
    sqlite_rows, pg_rows = encodings
    assert len(sqlite_rows) == len(batch)
    assert sqlite_rows == pg_rows
