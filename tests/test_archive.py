"""Archive consumer: the envelope block, maildir safety, routing and replay."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.consumer import DECISIONS_FILE, POSITION_FILE, ArchiveSettings, ArchiveSink, message_name
from archive.copies import MaildirCopies, parse_decisions
from archive.envelope_block import archived_message, envelope_block
from archive.maildir import Maildir, check_name, deliver_batch
from compliance.copystore import CopyError
from ingest.event import Action, Category, ClientInfo, EnvelopeInfo, to_json
from ingest.journal import Journal
from ingest.log import ConsumerSettings, JournalReader, LogRecord, run_consumer
from tests.factories import make_event, make_queue_failed

WHEN = datetime(2026, 11, 25, 10, 0, 0, 654321, tzinfo=UTC)


def _event(**kw):
    kw.setdefault("when", WHEN)
    return make_event(**kw)


def _records(events, start=1):
    return [LogRecord(start + i, e) for i, e in enumerate(events)]


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under root (relative path -> bytes), checkpoint and decision
    record excluded."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in (POSITION_FILE, DECISIONS_FILE):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "archive", tmp_path / "quarantine"


@pytest.fixture
def sink(dirs):
    s = ArchiveSink(*dirs)
    yield s
    s.close()


# -- the envelope block ------------------------------------------------------


def test_block_exact():
    ev = _event(sender="sender@example.com", recipients=["rcpt1@example.org", "rcpt2@example.org"])
    ev = ev.model_copy(update={"client": ClientInfo(ip="192.0.2.10", host="host.example.com", relay=False)})
    assert envelope_block(ev) == (
        b"*** qscan Envelope Details Begin ***\n"
        b"X-Envelope-From: <sender@example.com>\n"
        b"X-Envelope-To: <rcpt1@example.org>\n"
        b"X-Envelope-To: <rcpt2@example.org>\n"
        b"X-qscan-Client: 192.0.2.10 host.example.com relay=no\n"
        b"X-qscan-Event-ID: " + ev.event_id.encode() + b"\n"
        b"X-qscan-Received: 2026-11-25T10:00:00Z\n"
        b"*** qscan Envelope Details End ***\n"
    )
    assert archived_message(ev) == ev.raw_message + envelope_block(ev)


def test_block_empty_sender_local_relay():
    ev = _event(sender="", recipients=["postmaster@example.org"], client_ip=None, relay=True)
    ev = ev.model_copy(update={"client": ClientInfo(ip=None, host=None, relay=True, local=True)})
    block = envelope_block(ev).decode()
    assert "X-Envelope-From: <>\n" in block
    assert "X-qscan-Client: local - relay=yes\n" in block


def test_block_time_converted_to_utc():
    from datetime import timedelta, timezone

    cet = timezone(timedelta(hours=1))
    ev = _event(when=datetime(2026, 11, 25, 11, 30, 59, 999999, tzinfo=cet))
    assert b"X-qscan-Received: 2026-11-25T10:30:59Z\n" in envelope_block(ev)


def test_block_crlf_message():
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    ev = _event(raw=raw, recipients=["r@example.org"])
    out = archived_message(ev)
    assert out.startswith(raw)
    block = out[len(raw) :]
    assert block.startswith(b"*** qscan Envelope Details Begin ***\r\n")
    assert block.endswith(b"*** qscan Envelope Details End ***\r\n")
    assert block.count(b"\n") == block.count(b"\r\n") == 7


def test_block_message_without_trailing_newline():
    raw = b"From: a@example.com\nSubject: x\n\nno newline at the end"
    ev = _event(raw=raw)
    out = archived_message(ev)
    assert out == raw + b"\n" + envelope_block(ev)
    crlf = b"From: a@example.com\r\n\r\nno newline"
    ev = _event(raw=crlf)
    assert archived_message(ev) == crlf + b"\r\n" + envelope_block(ev)


def test_block_header_injection():
    ev = _event(
        sender="evil@example.com>\r\nX-Injected: yes\r\n<",
        recipients=["a@example.org\nBcc: victim@example.net", "b@example.org\rX: y"],
        raw=b"Subject: x\n\nbody\n",
    )
    ev = ev.model_copy(update={"client": ClientInfo(ip="192.0.2.1\r\nX-Fake: 1", host="h\nX-Host: 2",
                                                    relay=False)})
    block = envelope_block(ev)
    lines = block.split(b"\n")[:-1]
    assert len(lines) == 8
    assert b"\r" not in block
    injected = (b"X-Injected", b"Bcc", b"X:", b"X-Fake", b"X-Host")
    assert not any(line.startswith(injected) for line in lines)
    assert lines[1] == b"X-Envelope-From: <evil@example.com>X-Injected: yes<>"
    assert lines[2] == b"X-Envelope-To: <a@example.orgBcc: victim@example.net>"
    assert lines[4] == b"X-qscan-Client: 192.0.2.1X-Fake:1 hX-Host:2 relay=no"


_field = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(
    st.sampled_from("\r\n\x00\x0b\x0c\x1c\x85\u2028\u2029 <>a@."), max_size=20
)


@settings(max_examples=300, deadline=None)
@given(sender=_field, recipients=st.lists(_field, min_size=1, max_size=5), crlf=st.booleans())
def test_block_structure_property(sender, recipients, crlf):
    raw = b"Subject: x\r\n\r\nbody\r\n" if crlf else b"Subject: x\n\nbody\n"
    ev = _event(raw=raw)
    ev = ev.model_copy(update={"envelope": EnvelopeInfo(sender=sender, recipients=recipients, raw=b"")})
    block = envelope_block(ev)
    eol = b"\r\n" if crlf else b"\n"
    assert block.endswith(eol)
    lines = block[: -len(eol)].split(eol)
    # no bare CR or LF anywhere inside a field
    for line in lines:
        assert b"\r" not in line and b"\n" not in line
        assert len(line.decode().splitlines()) == 1
    assert lines[0] == b"*** qscan Envelope Details Begin ***"
    assert lines[-1] == b"*** qscan Envelope Details End ***"
    assert len(lines) == 2 + 1 + len(recipients) + 3
    assert lines[1].startswith(b"X-Envelope-From: <") and lines[1].endswith(b">")
    for i in range(len(recipients)):
        assert lines[2 + i].startswith(b"X-Envelope-To: <")
    tail = lines[2 + len(recipients) : -1]
    names = [t.split(b":", 1)[0] for t in tail]
    assert names == [b"X-qscan-Client", b"X-qscan-Event-ID", b"X-qscan-Received"]
    assert sum(line.startswith(b"*** qscan") for line in lines) == 2


# -- maildir -----------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_maildir_permissions_and_layout(tmp_path):
    old = os.umask(0o022)
    try:
        md = Maildir(tmp_path / "a" / "b")
        assert md.deliver("1.x.qscan", b"data")
    finally:
        os.umask(old)
    for d in (tmp_path / "a", md.path, md.tmp, md.new, md.cur):
        assert _mode(d) == 0o700, d
    f = md.new / "1.x.qscan"
    assert _mode(f) == 0o600
    assert f.read_bytes() == b"data"
    assert list(md.tmp.iterdir()) == []


def test_maildir_idempotent_and_cur(tmp_path):
    md = Maildir(tmp_path / "m")
    assert md.deliver("1.a.qscan", b"one")
    assert not md.deliver("1.a.qscan", b"two")
    assert (md.new / "1.a.qscan").read_bytes() == b"one"
    # a mail client reads it: new/NAME -> cur/NAME:2,S
    os.rename(md.new / "1.a.qscan", md.cur / "1.a.qscan:2,S")
    assert md.exists("1.a.qscan")
    assert not md.deliver("1.a.qscan", b"three")
    assert not (md.new / "1.a.qscan").exists()
    assert md.remove("1.a.qscan")
    assert not md.exists("1.a.qscan")
    assert not md.remove("1.a.qscan")
    assert md.deliver("1.a.qscan", b"four")


def test_maildir_sees_client_moves_after_listing(tmp_path):
    md = Maildir(tmp_path / "m")
    md.deliver("1.a.qscan", b"x")
    assert not md.exists("3.c.qscan")  # lists cur/
    time.sleep(0.1)
    assert not md.exists("3.c.qscan")  # the listing is trusted now
    os.rename(md.new / "1.a.qscan", md.cur / "1.a.qscan:2,S")
    assert md.exists("1.a.qscan")


def test_maildir_stale_tmp_and_batch_duplicates(tmp_path):
    md = Maildir(tmp_path / "m")
    (md.tmp / "2.b.qscan").write_bytes(b"partial")  # left by a crash
    assert deliver_batch([(md, "2.b.qscan", b"full"), (md, "2.b.qscan", b"dup")]) == 1
    assert (md.new / "2.b.qscan").read_bytes() == b"full"
    assert list(md.tmp.iterdir()) == []


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a:2,S", "x\n", "a b"])
def test_maildir_rejects_unsafe_names(name):
    with pytest.raises(ValueError):
        check_name(name)


# -- the consumer ------------------------------------------------------------


def test_routing_and_permissions(sink, dirs):
    archive_dir, quarantine_dir = dirs
    events = [
        _event(action=Action.DELIVER),
        _event(action=Action.DROP),
        _event(action=Action.QUARANTINE, category=Category.VIRUS),
        _event(action=Action.QUARANTINE, category=Category.SPAM),
        _event(action=Action.QUARANTINE, category=Category.POLICY),
        _event(action=Action.QUARANTINE, category=Category.MALFORMED),
        _event(action=Action.QUARANTINE, category=Category.DLP),
        _event(action=Action.REJECT, category=Category.VIRUS),
        _event(action=Action.TEMPFAIL),
    ]
    sink.apply(_records(events), 9)
    files = _files(archive_dir)
    assert sorted(files) == sorted(f"new/{message_name(e)}" for e in events[:2])
    for e in events[:2]:
        assert files[f"new/{message_name(e)}"] == archived_message(e)
    q = _files(quarantine_dir)
    expected = {
        f"{folder}/new/{message_name(e)}"
        for folder, e in zip(
            ["viruses", "spam", "policy", "policy", "dlp"], events[2:7], strict=True
        )
    }
    assert set(q) == expected
    for d in [archive_dir, *quarantine_dir.iterdir()]:
        for sub in ("tmp", "new", "cur"):
            assert _mode(d / sub) == 0o700
    for p in [*archive_dir.rglob("*.qscan"), *quarantine_dir.rglob("*.qscan")]:
        assert _mode(p) == 0o600
    assert _mode(archive_dir / POSITION_FILE) == 0o600
    assert sink.position() == 9


def test_name_derived_from_event():
    ev = _event()
    assert message_name(ev) == f"{int(WHEN.timestamp())}.{ev.event_id}.qscan"


def test_filter(dirs):
    sink = ArchiveSink(*dirs, ArchiveSettings(filter=r"(support|sales)@example\.com"))
    events = [
        _event(sender="alice@example.net", recipients=["Support@Example.com"]),
        _event(sender="sales@example.com", recipients=["bob@example.org"]),
        _event(sender="alice@example.net", recipients=["x@example.org", "support@example.com"]),
        _event(sender="alice@example.net", recipients=["bob@example.org"]),
        _event(sender="", recipients=["nobody@example.org"]),
        _event(sender="x@example.net", recipients=["y@example.org"], action=Action.QUARANTINE,
               category=Category.SPAM),
    ]
    sink.apply(_records(events), 6)
    sink.close()
    assert set(_files(dirs[0])) == {f"new/{message_name(e)}" for e in events[:3]}
    assert set(_files(dirs[1])) == {f"spam/new/{message_name(events[5])}"}
    # each accepted message's decision is recorded with the settings it was made under
    store = MaildirCopies(*dirs)
    decisions = store.archive_decisions()
    assert {e: d.archived for e, d in decisions.items()} == {
        e.event_id: i < 3 for i, e in enumerate(events[:5])}
    (digest,) = {d.made[0][1] for d in decisions.values()}
    lines = (dirs[0] / DECISIONS_FILE).read_text().splitlines()
    assert lines[0] == f'S {digest} {{"enabled":true,"filter":"(support|sales)@example\\\\.com"}}'
    assert all(store.decision_trouble(d, "nobody@example.net", ["x@example.org"]) is not None
               for d in decisions.values() if d.archived)


def test_decision_record_is_appended_per_run_and_read_back(dirs):
    first = [_event(recipients=["a@example.org"])]
    sink = ArchiveSink(*dirs, ArchiveSettings(filter="a@"))
    sink.apply(_records(first), 1)
    sink.close()
    later = [_event(recipients=["a@example.org"])]
    sink = ArchiveSink(*dirs, ArchiveSettings(filter="b@"))  # settings changed: recorded again, old lines kept
    sink.apply(_records(later), 2)
    sink.close()
    text = (dirs[0] / DECISIONS_FILE).read_text()
    assert [line[0] for line in text.splitlines()] == ["S", "D", "S", "D"]
    store = MaildirCopies(*dirs)
    decisions = store.archive_decisions()
    assert decisions[first[0].event_id].archived and not decisions[later[0].event_id].archived
    for d in decisions.values():
        assert store.decision_trouble(d, "x@example.net", ["a@example.org"]) is None
    assert _mode(dirs[0] / DECISIONS_FILE) == 0o600


def test_one_messages_decision_is_the_whole_records_answer(dirs):
    """``archive_decision`` (audit show: one message, no parse of every line) gives what the
    whole record gives, replays under other settings and a second consumer's record included;
    a damaged line of that message is an error, as it is for the whole read."""
    events = [_event(recipients=["a@example.org"]), _event(recipients=["b@example.org"])]
    for key, pattern in ((None, "a@"), (None, "b@"), ("second", "a@|b@")):
        sink = ArchiveSink(*dirs, ArchiveSettings(filter=pattern), position_key=key)
        sink.apply(_records(events), 2)
        sink.close()
    store = MaildirCopies(*dirs)
    everything = store.archive_decisions()
    for e in events:
        assert store.archive_decision(e.event_id) == everything[e.event_id]
        assert store.archive_decision(e.event_id.upper()) == everything[e.event_id]
        assert len(everything[e.event_id].made) == 3
    assert store.archive_decision("01900000-0000-7000-8000-000000000000") is None
    record = dirs[0] / DECISIONS_FILE
    text = record.read_text()
    # an id that appears inside another line (not at its start) is not a decision of that message
    record.write_text(text + f"S x D {events[0].event_id} 1 y\n")
    with pytest.raises(CopyError):
        store.archive_decisions()
    assert store.archive_decision(events[0].event_id) == everything[events[0].event_id]
    record.write_text(text + f"D {events[0].event_id} 2 zz\n")
    with pytest.raises(CopyError, match="not a decision record"):
        store.archive_decision(events[0].event_id)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
                max_size=8))
def test_decision_record_parser_takes_any_text(lines: list[str]) -> None:
    """Whatever a record holds (written by someone else), parsing accepts it or says which
    line is not a record; it never raises anything else."""
    try:
        decisions, settings = parse_decisions(lines, "record")
    except CopyError as exc:
        assert "record line" in str(exc)
    else:
        assert all(isinstance(v, list) for v in decisions.values())
        assert all(isinstance(v, tuple) for v in settings.values())


def test_archive_disabled_still_quarantines(dirs):
    sink = ArchiveSink(*dirs, ArchiveSettings(enabled=False))
    events = [_event(), _event(action=Action.QUARANTINE, category=Category.VIRUS)]
    sink.apply(_records(events), 2)
    sink.close()
    assert _files(dirs[0]) == {}
    assert set(_files(dirs[1])) == {f"viruses/new/{message_name(events[1])}"}
    assert sink.position() == 2


def test_replay_is_idempotent(sink, dirs):
    events = [
        _event(recipients=["a@example.org", "b@example.org"]),
        _event(action=Action.QUARANTINE, category=Category.VIRUS),
        _event(sender=""),
        _event(action=Action.REJECT),
    ]
    records = _records(events)
    sink.apply(records[:2], 2)
    sink.apply(records[2:], 4)
    first = {**_files(dirs[0]), **{f"q/{k}": v for k, v in _files(dirs[1]).items()}}
    # a client reads one archived message in between
    name = message_name(events[0])
    os.rename(dirs[0] / "new" / name, dirs[0] / "cur" / f"{name}:2,S")
    sink.set_position(0)
    assert sink.position() == 0
    fresh = ArchiveSink(*dirs)  # replay also from a new process
    assert fresh.position() == 0
    fresh.apply(records, 4)
    fresh.apply(records, 4)
    fresh.close()
    again = {**_files(dirs[0]), **{f"q/{k}": v for k, v in _files(dirs[1]).items()}}
    first[f"cur/{name}:2,S"] = first.pop(f"new/{name}")
    assert again == first
    assert len(first) == 3


def test_queue_failed_removes_archived_copy(sink, dirs):
    kept = _event()
    failed = make_event()  # event time now: found via the UUIDv7 time
    failed_old = _event()  # event time far from its id's time: found by listing
    sink.apply(_records([kept, failed, failed_old]), 3)
    assert len(_files(dirs[0])) == 3
    os.rename(
        dirs[0] / "new" / message_name(failed_old),
        dirs[0] / "cur" / f"{message_name(failed_old)}:2,",
    )
    sink.apply(_records([make_queue_failed(failed), make_queue_failed(failed_old)], start=4), 5)
    assert set(_files(dirs[0])) == {f"new/{message_name(kept)}"}
    assert sink.position() == 5


def test_queue_failed_in_same_batch_and_replay(sink, dirs):
    ev = _event()
    records = _records([ev, make_queue_failed(ev)])
    sink.apply(records, 2)
    assert _files(dirs[0]) == {}
    sink.apply(records[:1], 1)  # scanned alone: written
    sink.apply(records[1:], 2)  # then compensated
    assert _files(dirs[0]) == {}


def test_queue_failed_for_unknown_event_is_harmless(sink, dirs):
    ev = _event()
    sink.apply(_records([make_queue_failed(_event())]), 1)
    sink.apply(_records([ev], start=2), 2)
    assert set(_files(dirs[0])) == {f"new/{message_name(ev)}"}


def test_checkpoint(sink, dirs):
    path = dirs[0] / POSITION_FILE
    assert sink.position() == 0
    assert not path.exists()
    sink.apply([], 0)
    assert path.read_bytes() == b"0\n"
    sink.apply(_records([_event()], start=17), 17)
    assert path.read_bytes() == b"17\n"
    assert not (dirs[0] / (POSITION_FILE + ".tmp")).exists()
    assert ArchiveSink(*dirs).position() == 17
    sink.set_position(3)
    assert path.read_bytes() == b"3\n"
    assert sink.position() == 3
    with pytest.raises(ValueError):
        sink.set_position(-1)


def test_checkpoint_not_moved_when_write_fails(sink, dirs, monkeypatch):
    sink.apply(_records([_event()]), 1)
    import archive.maildir as maildir_mod

    def boom(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(maildir_mod.os, "fsync", boom)
    with pytest.raises(OSError):
        sink.apply(_records([_event(), _event()], start=2), 3)
    monkeypatch.undo()
    assert (dirs[0] / POSITION_FILE).read_bytes() == b"1\n"
    assert list((dirs[0] / "tmp").iterdir()) == []
    assert len(list((dirs[0] / "new").iterdir())) == 1


def test_missing_raw_message_is_refused(sink):
    ev = _event().model_copy(update={"raw_message": b""})
    with pytest.raises(ValueError, match="with_raw"):
        sink.apply(_records([ev]), 1)
    assert sink.position() == 0


def test_sink_protocol_attributes(sink):
    assert sink.name == "archive"
    assert sink.needs_raw is True


def test_through_journal_and_run_consumer(dirs, tmp_path):
    journal = Journal(tmp_path / "journal.db")
    events = [_event(), _event(action=Action.QUARANTINE, category=Category.SPAM), _event()]
    for e in events:
        journal.append(e.event_id, e.type, to_json(e, with_raw=False), e.raw_message)
    qf = make_queue_failed(events[2])
    journal.append(qf.event_id, qf.type, to_json(qf), None)
    sink = ArchiveSink(*dirs)
    assert run_consumer(JournalReader(journal), sink, ConsumerSettings(batch=2), once=True) == 4
    sink.close()
    assert _files(dirs[0]) == {f"new/{message_name(events[0])}": archived_message(events[0])}
    assert _files(dirs[1]) == {f"spam/new/{message_name(events[1])}": archived_message(events[1])}
    assert sink.position() == journal.head() == 4
    assert journal.get_position("archive") == 4
    journal.close()
