"""A small qscan site for the compliance tests: journal, both consumers, SQL, maildirs, CLI.

Events go through the real journal and the real archive and summaries consumers,
so what verify, retention and export see is exactly what production writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from archive.consumer import ArchiveSink, message_name
from archive.copies import MaildirCopies
from compliance import db
from compliance.summaries import SummarySink
from ingest.event import MessageScanned, to_json
from ingest.journal import Journal
from ingest.log import JournalReader, run_consumer
from qscan.cli.compliance import export, hold, retention, verify
from qscan.cli.db import audit
from qscan.config import Config, parse_config


class Site:
    def __init__(self, url: str, root: Path, extra_config: str = "") -> None:
        self.root = root
        self.url = url
        self.cfg: Config = parse_config(
            f'data_dir = "{root}"\n[sql]\nurl = "{url}"\n[daemon]\nhostname = "admin.example.com"\n'
            + extra_config, root / "qscan.toml")
        self.journal = Journal(self.cfg.journal_path)
        self.engine: Engine = db.make_engine(url)
        self.store = MaildirCopies(self.cfg.archive_maildir, self.cfg.quarantine_dir)

    def add(self, *events: Any, consume: bool = True) -> None:
        for ev in events:
            raw = ev.raw_message if isinstance(ev, MessageScanned) and ev.raw_message else None
            self.journal.append(ev.event_id, ev.type, to_json(ev, with_raw=False), raw)
        if consume:
            self.consume()

    def consume(self) -> None:
        reader = JournalReader(self.journal)
        archive = ArchiveSink(self.cfg.archive_maildir, self.cfg.quarantine_dir,
                              self.cfg.archive, fsync_workers=1)
        try:
            run_consumer(reader, archive, once=True)
        finally:
            archive.close()
        summaries = SummarySink(self.url)
        try:
            run_consumer(reader, summaries, once=True)
        finally:
            summaries.close()

    def copy_path(self, ev: MessageScanned, folder: str | None = None) -> Path:
        base = self.cfg.quarantine_dir / folder if folder else self.cfg.archive_maildir
        return base / "new" / message_name(ev)

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else result.rowcount

    def cli(self, *args: str) -> Result:
        cfg = self.cfg

        # the real CLI's help names: click caches each command's help option the first time
        # it is built, so a bare group here would leave `--help` alone on these commands for
        # every later test in the process (test_manpages then sees stale pages)
        @click.group(context_settings={"help_option_names": ["-h", "--help"]})
        @click.pass_context
        def main(ctx: click.Context) -> None:
            ctx.obj = {"config": lambda: cfg}

        for command in (verify, retention, hold, export, audit):
            main.add_command(command)
        return CliRunner().invoke(main, list(args))

    @contextmanager
    def cli_context(self) -> Iterator[tuple[Engine, Callable[[Any], None]]]:
        """The engine and a log appender, as the compliance commands get them."""
        from qscan.wiring.compliance import log_appender

        with log_appender(self.cfg) as append:
            yield self.engine, append

    def verify_kinds(self, *args: str) -> list[str]:
        import json

        result = self.cli("verify", "--json", *args)
        report = json.loads(result.stdout)
        assert result.exit_code == (0 if report["ok"] else 1), result.output
        return sorted(p["kind"] for p in report["problems"])

    def close(self) -> None:
        self.journal.close()
        self.engine.dispose()


def open_site(url: str, root: Path, extra_config: str = "") -> Iterator[Site]:
    """For a test module's ``site`` fixture: ``yield from open_site(migrated_url, tmp_path)``."""
    s = Site(url, root / "site", extra_config)
    try:
        yield s
    finally:
        s.close()
