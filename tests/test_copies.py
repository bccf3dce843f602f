"""Stored copies: the envelope block taken apart again, and the maildir copy store."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.consumer import ArchiveSettings, ArchiveSink, message_name
from archive.copies import (
    MaildirCopies,
    archive_predicate,
    check_copy,
    copy_name,
    event_id_of,
    message_of,
    same_address,
    split_copy,
)
from archive.envelope_block import archived_message
from compliance.copystore import CopyError, MessageFacts
from ingest.event import Action, Category
from ingest.log import LogRecord
from ingest.summary_line import clean
from tests.factories import make_event

addresses = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


def facts_of(ev, location: str | None = "archive") -> MessageFacts:  # type: ignore[no-untyped-def]
    return MessageFacts(ev.event_id, ev.time, ev.envelope.sender, list(ev.envelope.recipients),
                        hashlib.sha256(ev.raw_message).hexdigest(),
                        location)


@given(raw=st.binary(max_size=300), crlf=st.booleans(), sender=addresses,
       rcpts=st.lists(addresses, min_size=1, max_size=3))
def test_split_recovers_the_message_and_envelope(raw: bytes, crlf: bool, sender: str,
                                                 rcpts: list[str]) -> None:
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    ev = make_event(sender=sender, recipients=rcpts, raw=raw)
    data = archived_message(ev)
    parsed = split_copy(data)
    assert raw in parsed.candidates
    assert message_of(data, hashlib.sha256(raw).hexdigest()) == raw
    assert parsed.event_id == ev.event_id
    assert len(parsed.envelope_to) == len(rcpts)
    assert check_copy(data, facts_of(ev)) is None
    # and with the addresses as the summaries consumer stored them (cleaned, bounded)
    stored = facts_of(ev)
    stored = MessageFacts(stored.event_id, stored.received_at, clean(sender, 320),
                          [clean(r, 320) for r in rcpts], stored.raw_sha256, "archive")
    assert check_copy(data, stored) is None


@given(raw=st.binary(max_size=200))
def test_a_fake_block_inside_the_message_is_not_ours(raw: bytes) -> None:
    other = make_event(raw=b"x")
    fake = archived_message(other)
    ev = make_event(raw=fake + raw)
    parsed = split_copy(archived_message(ev))
    assert parsed.event_id == ev.event_id
    assert fake + raw in parsed.candidates


@pytest.mark.parametrize("data", [b"", b"no block at all\n", b"*** qscan Envelope Details Begin ***\n",
                                  b"x\n*** qscan Envelope Details Begin ***\nBogus: 1\n"
                                  b"*** qscan Envelope Details End ***\n"])
def test_broken_copies(data: bytes) -> None:
    with pytest.raises(CopyError):
        split_copy(data)


def test_check_copy_names_each_alteration() -> None:
    ev = make_event(recipients=["bob@example.org", "carol@example.net"])
    good = archived_message(ev)
    facts = facts_of(ev)
    assert check_copy(good, facts) is None
    assert "hash" in (check_copy(good.replace(b"Hi there", b"Hi THERE"), facts) or "")
    assert "recipients" in (check_copy(good.replace(b"<carol@example.net>", b"<eve@example.net>"),
                                       facts) or "")
    assert "sender" in (check_copy(good.replace(b"X-Envelope-From: <alice", b"X-Envelope-From: <eve"),
                                   facts) or "")
    assert "names event" in (check_copy(good, MessageFacts(
        "00000000-0000-7000-8000-000000000000", ev.time, "alice@example.com", facts.recipients,
        facts.raw_sha256, "archive")) or "")
    later = MessageFacts(ev.event_id, datetime(2030, 1, 1, tzinfo=UTC), facts.sender,
                         facts.recipients, facts.raw_sha256, "archive")
    assert "received" in (check_copy(good, later) or "")
    with pytest.raises(CopyError):
        message_of(good, "0" * 64)


def test_addresses_compare_through_both_cleanings() -> None:
    assert same_address("a@example.com", "a@example.com")
    assert same_address("ab@example.com", "a b@example.com")  # SQL turned a control into a space
    long = "x" * 400 + "@example.com"
    assert same_address(long, long[:317] + "...")
    assert not same_address("a@example.com", "b@example.com")


def test_names_match_the_archive_consumer() -> None:
    ev = make_event()
    assert copy_name(ev.event_id, ev.time) == message_name(ev)
    assert event_id_of(message_name(ev)) == ev.event_id
    assert event_id_of(message_name(ev) + ":2,S") == ev.event_id
    assert event_id_of("README") == ""


def test_archive_predicate() -> None:
    assert archive_predicate(ArchiveSettings())("a@x", ["b@y"])
    assert not archive_predicate(ArchiveSettings(enabled=False))("a@x", ["b@y"])
    keep_sales = archive_predicate(ArchiveSettings(filter=r"sales@example\.com"))
    assert keep_sales("x@y", ["SALES@Example.COM"]) and not keep_sales("x@y", ["bob@example.com"])


def test_maildir_store(tmp_path: Path) -> None:
    archive, quarantine = tmp_path / "archive", tmp_path / "quarantine"
    sink = ArchiveSink(archive, quarantine, fsync_workers=1)
    kept = make_event()
    virus = make_event(action=Action.QUARANTINE, category=Category.VIRUS)
    sink.apply([LogRecord(1, kept), LogRecord(2, virus)], 2)
    sink.close()
    store = MaildirCopies(archive, quarantine)
    moved = archive / "cur" / (message_name(kept) + ":2,S")  # a mail client read it
    (archive / "new" / message_name(kept)).rename(moved)
    (archive / "new" / "stray").write_bytes(b"hello")
    found = sorted((c.event_id, c.location, c.path.name) for c in store.scan())
    assert found == sorted([(kept.event_id, "archive", moved.name), ("", "archive", "stray"),
                            (virus.event_id, "quarantine/viruses", message_name(virus))])
    (copy,) = store.locate(facts_of(kept))
    assert copy.path == moved and store.check(copy, facts_of(kept)) is None
    assert store.read_message(copy, facts_of(kept)) == kept.raw_message
    (vcopy,) = store.locate(facts_of(virus))
    assert vcopy.location == "quarantine/viruses"
    assert store.remove(copy) and not store.remove(copy)
    assert store.locate(facts_of(kept)) == []
