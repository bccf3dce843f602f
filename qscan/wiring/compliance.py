"""The compliance commands' view of the rest of the system, built from the config.

compliance/ knows SQL; the stored copies (archive/), the journal (ingest/) and
the settings (qscan.config) are handed to it from here: where copies live,
which messages the archive keeps, how an event is appended to the log, where
a raw message can still be read from the journal, and who is acting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from archive.copies import MaildirCopies, archive_judge, archive_predicate
from compliance.copystore import CopyError, MessageFacts
from compliance.verify import expected_location
from ingest.event import AnyEvent, to_json, utc
from ingest.journal import Journal
from qscan.config import Config


def copy_store(cfg: Config) -> MaildirCopies:
    return MaildirCopies(cfg.archive_maildir, cfg.quarantine_dir)


def todays_rule(cfg: Config) -> Callable[[str, list[str]], bool]:
    """Today's ``[archive]`` settings as a rule (sender, recipients): for messages handled
    before archive decisions were recorded."""
    return archive_predicate(cfg.archive)


def archived(cfg: Config) -> Callable[[str, str, list[str]], bool]:
    """Whether a message should have an archive copy (event id, sender, recipients): the
    decision the archive consumer recorded for it, else today's settings
    (archive.copies.archive_judge). Raises ``CopyError`` when the record is unreadable."""
    return archive_judge(copy_store(cfg).archive_decisions(), todays_rule(cfg))


def actor(cfg: Config) -> str:
    """login@host: who runs this command (compliance.identity: the real uid's account, or
    sudo's caller when root runs it through sudo; never $USER or $LOGNAME)."""
    from compliance.identity import actor as login_at

    return login_at(cfg.hostname)


@contextmanager
def log_appender(cfg: Config) -> Iterator[Callable[[AnyEvent], None]]:
    """Append compliance events to this host's journal (durable before it returns)."""
    journal = Journal(cfg.journal_path)
    try:
        def append(ev: AnyEvent) -> None:
            journal.append(ev.event_id, ev.type, to_json(ev))

        yield append
    finally:
        journal.close()


@contextmanager
def journal_raw(cfg: Config) -> Iterator[Callable[[str], bytes | None]]:
    """A raw message from the journal, while it still holds the event (else None)."""
    if not cfg.journal_path.exists():
        yield lambda event_id: None
        return
    journal = Journal(cfg.journal_path, readonly=True)
    try:
        def raw(event_id: str) -> bytes | None:
            entry = journal.get(event_id, with_raw=True)
            return entry.raw if entry is not None else None

        yield raw
    finally:
        journal.close()


def _facts(cfg: Config, info: dict[str, Any], *, recorded: bool = True
           ) -> tuple[MessageFacts, bool, str | None]:
    """A message's facts (``compliance.audit.details``) for the copy store, whether the archive
    should keep it, and why that could only be judged by today's settings (else None).
    ``recorded=False`` judges by today's settings straight away, without searching the archive's
    decision record (one line per message ever archived: ~0.02 s per million lines to search)."""
    m = info["message"]
    rcpts = [r["address"] for r in info["recipients"]]
    folder = info["quarantine"]["folder"] if info["quarantine"] else None
    keep, unreadable = todays_rule(cfg)(m["sender"], rcpts), None
    if recorded:
        try:  # this message's lines of the record only (archive_judge's rule for one message)
            decision = copy_store(cfg).archive_decision(m["event_id"])
        except CopyError as exc:  # judged by today's settings, and said so
            unreadable = str(exc)
        else:
            if decision is not None:
                keep = decision.archived
    where = expected_location(m["action"], m["category"], m["queue_status"], folder, keep)
    facts = MessageFacts(m["event_id"], utc(m["received_at"]), m["sender"], rcpts,
                         m["raw_sha256"], where)
    return facts, keep, unreadable


def stored_message(cfg: Config, info: dict[str, Any]) -> tuple[bytes | None, str]:
    """A message's bytes as handed to qmail-queue, from its checked stored copy or the journal
    (``compliance.export.fetch_message``, as exports read them), and where they came from;
    (None, why) when there are none - and always for a lawfully deleted message. The copy is
    found by its name in every maildir; whether a missing one was expected ("missing" or "not
    stored") is judged by today's archive settings, not the decision record (the console's
    message view must stay fast on a site of millions)."""
    from compliance.export import fetch_message

    if info["deletion"]:
        return None, "deleted"
    facts, keep, _ = _facts(cfg, info, recorded=False)
    with journal_raw(cfg) as raw:
        return fetch_message(copy_store(cfg), raw, facts, keep)


def copy_locations(cfg: Config, info: dict[str, Any]) -> list[str]:
    """Where a message's stored copy is, or why there is none (``qscan audit show``)."""
    m = info["message"]
    facts, _, unreadable = _facts(cfg, info)
    where = facts.location
    out = [f"{c.location}: {c.path}" for c in copy_store(cfg).locate(facts)]
    if info["deletion"]:
        out.append(f"deleted lawfully ({info['deletion']['reason']})")
    elif not out:
        out.append(f"MISSING: expected in {where} (run `qscan verify`)" if where else
                   f"none kept ({m['action']}"
                   f"{', archive filter' if m['action'] in ('deliver', 'drop') else ''})")
    if unreadable:
        out.append(f"archive decisions unreadable ({unreadable}): judged by today's settings")
    with journal_raw(cfg) as raw:
        if raw(m["event_id"]) is not None:
            out.append(f"journal: {cfg.journal_path} still holds the event and the raw message")
    return out
