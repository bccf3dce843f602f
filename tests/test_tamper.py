"""Randomized tampering: every kind an adversary with database and disk access has, each
applied many times to a fresh copy of a real store, on SQLite and on PostgreSQL.

``qscan verify`` must find every one and name the record it touched; the untouched store
(every event type, spamd's ``-0.0`` scores, 8-bit and Unicode headers) must have no
finding at all. The store is built once per database through the real journal, consumers
and compliance commands, then copied per trial (a file copy; on PostgreSQL a
``CREATE DATABASE ... TEMPLATE``). ``QSCAN_TAMPER_SEED`` and ``QSCAN_TAMPER_TRIALS`` change
the seed and the number of trials per kind; a failure prints the seed and trial to rerun.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.event import Action, Category, Finding, MessageScanned
from qscan.testing.standin import write_standin
from tests.compliance_site import Site
from tests.factories import make_event, make_queue_failed, raw_message
from tests.tamper import JOURNAL_TAMPERINGS, TAMPERINGS, Tampered, unnamed

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("QSCAN_TAMPER_SEED", "22"))
TRIALS = int(os.environ.get("QSCAN_TAMPER_TRIALS", "6"))

# 8-bit header bytes arrive as surrogate escapes (the MIME parser reads ASCII); the event
# model turns them into text every writer takes.
EIGHT_BIT = b"Re: Caf\xe9 \xc3\xa9t\xc3\xa9 \xff\xfe".decode("ascii", "surrogateescape")
SUBJECTS = ["plain", EIGHT_BIT, "Cafe\u0301 (decomposed)", "Caf\u00e9 (composed)",
            "\U0001f4e7 \u65e5\u672c\u8a9e \u202eevil", "tab\there", ""]


def store_events() -> list[Any]:
    """Every kind of message and event the summaries consumer chains or records."""
    old = datetime.now(UTC) - timedelta(days=400)
    evs: list[Any] = []
    for i, subject in enumerate(SUBJECTS):
        raw = (b"From: a@example.com\nSubject: " + subject.encode("utf-8", "surrogateescape")
               + b"\n\nbody\n")
        evs.append(make_event(
            recipients=[f"r{i}@example.org", "B\u00f6b@example.org"], subject=subject, raw=raw,
            spam_score=[-0.0, 0.0, 2.5, -1.25, 1e-7, None, 1000.0][i],
            crypto=[None, [], ["smime-signed"], ["pgp-encrypted", "pgp-signed"], None, [], None][i],
            attachments=[("r\u00e9sum\u00e9.PDF", "application/pdf", 1234)] if i % 2 else None,
            findings=[Finding(scanner="spamd", verdict=Category.CLEAN, name="spam",
                              score=-0.0, duration_ms=0.1 * i)],
            when=old if i < 3 else None))
    evs.append(make_event(action=Action.QUARANTINE, category=Category.VIRUS, subject="virus",
                          findings=[Finding(scanner="clamd", verdict=Category.VIRUS,
                                            name="Eicar-Signature", score=1.0)]))
    evs.append(make_event(action=Action.QUARANTINE, category=Category.SPAM, subject="spam",
                          spam_score=1000.0))
    evs.append(make_event(action=Action.QUARANTINE, category=Category.DLP, subject="cards",
                          dlp_findings=[{"rule": "cards", "detector": "payment_card",
                                         "confidence": "high", "count": 2,
                                         "evidence": "4111 **** **** 1111"}]))
    evs.append(make_event(action=Action.QUARANTINE, category=Category.POLICY, subject="policy"))
    evs.append(make_event(action=Action.REJECT, category=Category.POLICY, subject="rejected"))
    evs.append(make_event(action=Action.TEMPFAIL, category=Category.SPAM, subject="later"))
    evs.append(make_event(action=Action.DROP, category=Category.SPAM, subject="dropped"))
    evs.append(make_event(sender="", subject="bounce", raw=raw_message("bounce"), when=old))
    evs.append(make_queue_failed(evs[4], exit_code=53))
    return evs


def build_store(site: Site) -> None:
    from qscan.ops.anchors import AnchorWriter

    evs = store_events()
    site.add(*evs)
    anchors = AnchorWriter(site.cfg, site.journal)  # to the witness file and the journal
    anchors.write()
    quarantined = [e for e in evs if isinstance(e, MessageScanned)
                   and e.action == Action.QUARANTINE]
    ok = [
        site.cli("hold", "create", "Acme", "--custodian", "r0@example.org", "--reason", "notice"),
        site.cli("hold", "create", "Old", "--custodian", "r9@example.org", "--reason", "x"),
        site.cli("hold", "release", "Old", "--reason", "settled"),
        site.cli("export", "--matter", "Acme", "--out", str(site.root / "prod")),
    ]
    site.cfg.retention = replace(site.cfg.retention, default_days=365)
    ok.append(site.cli("retention", "apply"))  # the old ones but r0's (held)
    for result in ok:
        assert result.exit_code == 0, result.output
    from compliance import quarantine
    from qscan.wiring.compliance import actor

    with site.cli_context() as (engine, append):
        quarantine.delete(engine, site.store, append, quarantined[-1].event_id,
                          actor=actor(site.cfg), host=site.cfg.hostname, reason="spam")
    spam = next(e for e in quarantined if e.category == Category.SPAM)
    released = _quarantine_cli(site, "release", spam.event_id, "--reason", "false positive")
    assert released.exit_code == 0, released.output
    # four-eyes: a DLP release requested by one login and denied by another
    dlp = next(e for e in quarantined if e.category == Category.DLP)
    for login, args in (("alice", ("release", dlp.event_id, "--reason", "test data")),
                        ("bob", ("deny", dlp.event_id, "--reason", "real card numbers"))):
        os.environ["SUDO_USER"] = login  # root through sudo (compliance.identity)
        try:
            done = _quarantine_cli(site, *args)
        finally:
            del os.environ["SUDO_USER"]
        assert done.exit_code == 0, done.output
    site.consume()  # the summaries consumer meets the compliance events on the log
    anchors.write()  # the anchors cover every kind of event; the untouched store verifies
    site.consume()


def site_config(root: Path) -> str:
    """The trial sites' settings beyond compliance_site's: the anchors' witness file."""
    return f'\n[anchor]\nwitness_file = "{root / "witness.jsonl"}"\n'


def _quarantine_cli(site: Site, *args: str) -> Any:
    """``qscan quarantine ...`` (releases go through the stand-in qmail-queue)."""
    import click
    from click.testing import CliRunner

    from qscan.cli.quarantine import quarantine

    @click.group()
    @click.pass_context
    def main(ctx: click.Context) -> None:
        ctx.obj = {"config": lambda: site.cfg}

    main.add_command(quarantine)
    return CliRunner().invoke(main, ["quarantine", *args])


class Stores:
    """One built store per database kind; fresh copies of it per trial."""

    def __init__(self, base: Path, request: pytest.FixtureRequest) -> None:
        self.base = base
        self.request = request
        self.built: dict[str, tuple[Path, str]] = {}
        self.made: list[Site] = []
        self.n = 0

    def _template(self, kind: str) -> tuple[Path, str]:
        if kind not in self.built:
            root = self.base / f"template-{kind}" / "site"
            root.mkdir(parents=True)
            url = self._db(kind, root, template=None)
            standin = write_standin(root.parent / "bin" / "qmail-queue", root.parent / "queued")
            site = Site(url, root, f'qmail_queue = "{standin}"\n' + site_config(root))
            try:
                build_store(site)
            finally:
                site.close()
            self.built[kind] = (root, url)
        return self.built[kind]

    def _db(self, kind: str, root: Path, template: str | None) -> str:
        if kind == "sqlite":
            path = root / "qscan.db"
            if template is None:
                shutil.copy(self.request.getfixturevalue("sqlite_migrated_template"), path)
            return f"sqlite:///{path}"
        server = self.request.getfixturevalue("pg_server")
        name = server.create_database(
            template or self.request.getfixturevalue("pg_migrated_template"))
        return str(server.url(name))

    def fresh(self, kind: str) -> Site:
        root, url = self._template(kind)
        self.n += 1
        dest = self.base / f"trial-{self.n}" / "site"
        shutil.copytree(root, dest, symlinks=True)
        if kind == "sqlite":
            trial_url = f"sqlite:///{dest / 'qscan.db'}"
        else:
            trial_url = self._db(kind, dest, template=url.rsplit("/", 1)[1])
        site = Site(trial_url, dest, site_config(dest))
        self.made.append(site)
        return site

    def drop(self, site: Site) -> None:
        site.close()
        self.made.remove(site)
        if site.url.startswith("postgresql"):
            self.request.getfixturevalue("pg_server").drop_database(site.url.rsplit("/", 1)[1])
        shutil.rmtree(site.root.parent, ignore_errors=True)

    def close(self) -> None:
        for site in list(self.made):
            self.drop(site)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
           ) -> Iterator[Stores]:
    s = Stores(tmp_path_factory.mktemp("tamper"), request)
    try:
        yield s
    finally:
        s.close()


def _require(kind: str) -> None:
    if kind == "postgresql":
        from qscan.testing.postgres import available
        from tests.conftest import require

        require("PostgreSQL server (Debian postgresql)", available())


def _verify(site: Site) -> dict[str, Any]:
    result = site.cli("verify", "--json")
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.output
    return report


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_untouched_store_has_no_finding(stores: Stores, kind: str) -> None:
    _require(kind)
    site = stores.fresh(kind)
    try:
        report = _verify(site)
        assert report["problems"] == []
        assert report["entries"] >= 20 and report["log_events"] >= 20 and report["files"] >= 8
        # spamd's -0.0 went in; on SQLite it comes back 0.0
        (zero,) = site.sql("SELECT count(*) FROM messages WHERE spam_score = 0")
        assert zero[0] >= 2
        (tombstones,) = site.sql("SELECT count(*) FROM deletions")
        assert tombstones[0] >= 2
        (released,) = site.sql("SELECT count(*) FROM quarantine_releases")
        assert released[0] == 1
        assert site.sql("SELECT state FROM quarantine_release_requests") == [("denied",)]
        witness = (site.root / "witness.jsonl").read_text().splitlines()
        assert len(witness) == 2  # and as many chain.anchored events: all were compared
        assert any(n.startswith("4 anchors used") for n in report["notes"]), report["notes"]
    finally:
        stores.drop(site)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("tampering", sorted({**TAMPERINGS, **JOURNAL_TAMPERINGS}))
def test_every_tampering_is_found_and_named(stores: Stores, kind: str, tampering: str) -> None:
    _require(kind)
    tamper = {**TAMPERINGS, **JOURNAL_TAMPERINGS}[tampering]
    missed: list[str] = []
    for trial in range(TRIALS):
        rng = random.Random(f"{SEED}/{kind}/{tampering}/{trial}")
        site = stores.fresh(kind)
        try:
            done: Tampered = tamper(site, rng)
            problems = _verify(site)["problems"]
            if not problems:
                missed.append(f"trial {trial}: {done.what}: not detected")
            elif unnamed(problems, done):
                missed.append(f"trial {trial}: {done.what}: found {problems} but not named "
                              f"{unnamed(problems, done)}")
        finally:
            stores.drop(site)
    assert not missed, f"QSCAN_TAMPER_SEED={SEED}: " + "\n".join(missed)

