"""Notifications without a network: who is told, the header-block parser, rendering in every
language, the composed message's headers, and the catalogs' completeness."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.notify import catalogs
from compliance.notify.audience import Audience, Kind, Notice, NotifyPolicy, kind_of, language_for, plan
from compliance.notify.compose import Identity, compose, original_message_id
from compliance.notify.delivery import SmtpTransport
from compliance.notify.marks import MailMarks, MarkKey, MarkKeyError, header_block, read_marks
from compliance.notify.render import Renderer, clean
from compliance.notify.settings import LANGUAGES, NotifySettings
from ingest.event import Action, Category, Finding, MessageScanned
from tests.factories import make_event

POLICY = NotifyPolicy(
    sender="psender", local_domains=("example.org", ".example.de"), admin="qadmin@example.net",
    compliance_officer="dpo@example.net", languages={"example.de": "de", "example.it": "it"},
    own_addresses=("postmaster@mx1.example.com",),
    forging_viruses=("*netsky*", "*mydoom*", "*@mm*"), never_notify=("postmaster", "mailer-daemon", "*-request"),
)
KEY = MarkKey(bytes(range(32)))
IDENTITY = Identity("postmaster@mx1.example.com", "Mail scanner", "", "mx1.example.com", KEY)
EN_INTRO = {  # the English first sentence of each (kind, audience) text
    ("virus", "sender"): "The message you sent was not delivered because it contains a virus.",
    ("virus", "recipient"): "A message addressed to you was not delivered because it contains a virus.",
    ("policy", "sender"): "The message you sent was not delivered because it breaks the mail policy.",
    ("spam", "recipient"): "A message addressed to you was classified as spam",
    ("dlp", "sender"): "The message you sent was held because it appears to contain sensitive data",
    ("reject", "recipient"): "A message addressed to you was rejected and was not delivered.",
}


def virus_event(name: str = "Worm.Netsky.B", **kw: object):  # type: ignore[no-untyped-def]
    return make_event(action=Action.QUARANTINE, category=Category.VIRUS, reason="virus",
                      findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name=name)], **kw)


def policy_event(**kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("attachments", [("invoice.pdf.exe", "application/octet-stream", 100)])
    return make_event(action=Action.QUARANTINE, category=Category.POLICY, reason="policy",
                      findings=[Finding(scanner="internal", verdict=Category.POLICY, name="double-extension")],
                      **kw)


def who(p) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {n.address: n.audience.value for n in p.notices}


def test_kind_of_each_action() -> None:
    assert kind_of(virus_event()) == Kind.VIRUS
    assert kind_of(policy_event()) == Kind.POLICY
    assert kind_of(make_event(action=Action.QUARANTINE, category=Category.MALFORMED)) == Kind.POLICY
    assert kind_of(make_event(action=Action.QUARANTINE, category=Category.SPAM)) == Kind.SPAM
    assert kind_of(make_event(action=Action.REJECT, category=Category.VIRUS)) == Kind.REJECT
    assert kind_of(make_event()) is None
    assert kind_of(make_event(action=Action.TEMPFAIL, category=Category.VIRUS)) is None
    assert kind_of(make_event(dlp_findings=[{"rule": "cards", "count": 2}])) == Kind.DLP


def test_virus_tells_admin_and_local_recipients_never_the_sender() -> None:
    ev = virus_event(name="Eicar-Test-Signature", sender="alice@example.com",
                     recipients=["bob@example.org", "carl@sub.example.de", "dave@remote.test", "eve@example.de"])
    p = plan(ev, MailMarks(), POLICY)
    assert who(p) == {"qadmin@example.net": "admin", "bob@example.org": "recipient",
                      "carl@sub.example.de": "recipient"}
    assert ("dave@remote.test", "not in a local domain") in p.skipped
    assert ("eve@example.de", "not in a local domain") in p.skipped  # '.example.de' is subdomains only
    assert any(w == "alice@example.com" and "psender" in why for w, why in p.skipped)
    assert {n.address: n.language for n in p.notices}["carl@sub.example.de"] == "de"


def test_policy_block_tells_the_sender() -> None:
    p = plan(policy_event(sender="alice@example.com"), MailMarks(), POLICY)
    assert who(p)["alice@example.com"] == "sender"


@pytest.mark.parametrize(("sender", "marks", "why"), [
    ("", MailMarks(), "null sender"),
    ("#@[]", MailMarks(), "null sender"),
    ("MAILER-DAEMON@example.com", MailMarks(), "postmaster-style"),
    ("Postmaster@example.com", MailMarks(), "postmaster-style"),
    ("users-request@lists.example.com", MailMarks(), "postmaster-style"),
    ("alice@example.com", MailMarks(list_headers=("List-Id",)), "mailing-list"),
    ("alice@example.com", MailMarks(precedence="bulk"), "bulk"),
    ("alice@example.com", MailMarks(precedence="junk"), "bulk"),
    ("alice@example.com", MailMarks(auto_submitted="auto-replied"), "automatic"),
    ("alice@example.com", MailMarks(auto_submitted=""), "automatic"),
    ("alice@example.com", None, "headers unavailable"),
    ("postmaster@mx1.example.com", MailMarks(), "postmaster-style"),
    ("-oQ/tmp@example.com", MailMarks(), "not a usable address"),
    ("a b@example.com", MailMarks(), "not a usable address"),
])
def test_senders_never_told(sender: str, marks: MailMarks | None, why: str) -> None:
    p = plan(policy_event(sender=sender), marks, POLICY)
    assert "sender" not in who(p).values()
    assert any(why in reason for _, reason in p.skipped), p.skipped


def test_auto_submitted_no_is_a_person() -> None:
    p = plan(policy_event(sender="alice@example.com"), MailMarks(auto_submitted="no"), POLICY)
    assert who(p)["alice@example.com"] == "sender"


def test_sender_all_still_silent_for_forging_viruses() -> None:
    everyone = NotifyPolicy(**{**POLICY.__dict__, "sender": "all"})
    for name in ("W32.Netsky.P@mm", "Worm.Mydoom.M", "W32/Bagle@MM"):
        p = plan(virus_event(name=name, sender="alice@example.com"), MailMarks(), everyone)
        assert "alice@example.com" not in who(p)
        assert any("forge" in why for _, why in p.skipped)
    p = plan(virus_event(name="Eicar-Test-Signature", sender="alice@example.com"), MailMarks(), everyone)
    assert who(p)["alice@example.com"] == "sender"
    none = NotifyPolicy(**{**POLICY.__dict__, "sender": "none"})
    assert "alice@example.com" not in who(plan(policy_event(sender="alice@example.com"), MailMarks(), none))


def test_dlp_delivered_tells_only_the_officer() -> None:
    ev = make_event(sender="alice@example.org", recipients=["x@remote.test"],
                    dlp_findings=[{"rule": "cards", "count": 3}])
    p = plan(ev, MailMarks(), POLICY)
    assert who(p) == {"dpo@example.net": "officer"}


def test_one_notice_per_address_most_informed_role_wins() -> None:
    ev = policy_event(sender="qadmin@example.net", recipients=["QAdmin@EXAMPLE.NET", "bob@example.org"])
    p = plan(ev, MailMarks(), NotifyPolicy(**{**POLICY.__dict__, "local_domains": ("example.net", "example.org")}))
    assert who(p) == {"qadmin@example.net": "admin", "bob@example.org": "recipient"}


def test_a_notification_about_a_notification_is_never_sent() -> None:
    p = plan(policy_event(), MailMarks(notification=True), POLICY)
    assert p.notices == []


def marks_of(ev: MessageScanned, block: bytes, key: MarkKey = KEY) -> MailMarks:
    return read_marks(block, lambda v: key.verify(v, ev.envelope.recipients))


def genuine_notice(about: MessageScanned, to: str, kind: Kind = Kind.VIRUS,
                   audience: Audience = Audience.RECIPIENT, identity: Identity = IDENTITY) -> bytes:
    """A notice as our own sender code makes it (compose), header block only."""
    notice = Notice(to, audience, kind, "en")
    _, data = compose(RENDERER.render(about, notice), notice, event_id=about.event_id,
                      identity=identity, when=about.time)
    return header_block(data)


def test_a_forged_notification_header_silences_nobody() -> None:
    """Anyone can write the header: without a valid signature it is ordinary mail."""
    ev = make_event(sender="alice@example.com", recipients=["bob@example.org"], action=Action.QUARANTINE,
                    category=Category.VIRUS, reason="virus", dlp_findings=[{"rule": "cards", "count": 1}],
                    findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar-Test-Signature")])
    real = " ".join(str(message_from_bytes(genuine_notice(ev, "bob@example.org"))["X-qscan-Notification"])
                    .split())
    assert marks_of(ev, f"X-qscan-Notification: {real}\n".encode()).notification
    mac = real.split("mac=")[1][:64]
    forged = [
        "virus/recipient",  # the old, unsigned form
        f"virus/recipient; event={ev.event_id}",
        real.replace(mac, "0" * 64),  # a made-up MAC
        real.replace("virus/recipient", "virus/admin"),  # signed fields changed
        real.replace(ev.event_id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        "",
    ]
    for value in forged:
        marks = marks_of(ev, f"From: x@example.com\nX-qscan-Notification: {value}\n".encode())
        assert marks.forged_mark and not marks.notification, value
        p = plan(ev, marks, POLICY)
        assert who(p) == {"qadmin@example.net": "admin", "dpo@example.net": "officer",
                          "bob@example.org": "recipient"}, value
    # A mark signed with another site's key is not ours either.
    other = genuine_notice(ev, "bob@example.org", identity=Identity(
        "postmaster@mx9.example.com", "x", "", "mx9.example.com", MarkKey.generate()))
    assert marks_of(ev, other).forged_mark
    # No key to check with: no mark is trusted.
    assert read_marks(genuine_notice(ev, "bob@example.org")).forged_mark


def test_a_genuine_mark_still_stops_loops_but_only_for_its_own_recipient() -> None:
    first = virus_event(recipients=["bob@example.org"])
    notice = genuine_notice(first, "bob@example.org")
    # Our notice to bob is itself quarantined on its way to bob: nobody is told of it.
    again = make_event(sender="", recipients=["bob@example.org"], action=Action.QUARANTINE,
                       category=Category.POLICY, reason="policy")
    marks = marks_of(again, notice)
    assert marks.notification and not marks.forged_mark
    assert plan(again, marks, POLICY).notices == []
    admin = genuine_notice(first, "qadmin@example.net", audience=Audience.ADMIN)
    to_admin = make_event(recipients=["QAdmin@example.net"], action=Action.REJECT, category=Category.POLICY)
    assert marks_of(to_admin, admin).notification
    # The same genuine mark copied onto mail to somebody else (a sender's notice goes outside,
    # so its mark is public) silences nothing.
    elsewhere = make_event(sender="mallory@example.com", recipients=["carl@example.org"],
                           action=Action.QUARANTINE, category=Category.VIRUS, reason="virus",
                           findings=[Finding(scanner="clamd", verdict=Category.VIRUS, name="Eicar")])
    marks = marks_of(elsewhere, notice)
    assert marks.forged_mark and not marks.notification
    assert who(plan(elsewhere, marks, POLICY)) == {"qadmin@example.net": "admin", "carl@example.org": "recipient"}


def test_mark_key_file_is_made_once_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "data" / "notify.key"
    key = MarkKey.load(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) == 64
    again = MarkKey.load(path)  # the same key on the next start (and on every host sharing the file)
    value = key.sign("virus", "admin", "e1", "a@example.org")
    assert again.verify(value, ["a@example.org"]) and not MarkKey.generate().verify(value, ["a@example.org"])
    secret = path.read_text().strip()
    assert repr(key) == "MarkKey(<secret>)"
    assert secret not in repr(Identity("p@example.com", "x", "", "example.com", key))
    path.chmod(0o644)
    with pytest.raises(MarkKeyError, match="chmod 600"):
        MarkKey.load(path)
    path.write_text("not hex\n")
    path.chmod(0o600)
    with pytest.raises(MarkKeyError, match="not a notification mark key"):
        MarkKey.load(path)
    with pytest.raises(MarkKeyError, match="no notification mark key"):
        MarkKey.load(tmp_path / "missing.key", create=False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=40), max_size=3))
def test_mark_verify_takes_any_text(value: str, recipients: list[str]) -> None:
    assert KEY.verify(value, recipients) is False


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_change_to_a_genuine_mark_breaks_it(data: st.DataObject) -> None:
    value = KEY.sign("dlp", "officer", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "dpo@example.net")
    assert KEY.verify(value, ["dpo@example.net"])
    assert KEY.verify(" ".join(value.split(" ")).replace("; ", ";\r\n "), ["DPO@example.net"])  # folded
    i = data.draw(st.integers(0, len(value) - 1))
    c = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != value[i] and not ch.isspace()))
    assert not KEY.verify(value[:i] + c + value[i + 1:], ["dpo@example.net"])


def test_old_events_tell_nobody() -> None:
    now = datetime.now(UTC)
    old = virus_event(recipients=["bob@example.org"], when=now - timedelta(days=3))
    p = plan(old, MailMarks(), POLICY, now)
    assert p.notices == [] and "older than notify.max_age" in p.skipped[0][1]
    fresh = virus_event(recipients=["bob@example.org"], when=now - timedelta(days=1))
    assert who(plan(fresh, MailMarks(), POLICY, now)) == {"qadmin@example.net": "admin",
                                                          "bob@example.org": "recipient"}
    assert who(plan(old, MailMarks(), POLICY))  # no clock given: age is not judged
    unlimited = NotifyPolicy(**{**POLICY.__dict__, "max_age": 0})
    assert who(plan(old, MailMarks(), unlimited, now))


def test_smtp_password_is_not_in_repr() -> None:
    n = NotifySettings(smtp_host="relay.example.net", smtp_port=587, smtp_user="qscan",
                       smtp_password="s3cret-Passw0rd")  # type: ignore[arg-type]  # a plain str too
    t = SmtpTransport(n)
    assert "s3cret-Passw0rd" not in repr(t) and "s3cret-Passw0rd" not in str(t)
    assert "relay.example.net" in repr(t) and t.settings.smtp_password == "s3cret-Passw0rd"


def test_language_by_domain_with_default() -> None:
    assert language_for("a@example.it", Audience.RECIPIENT, POLICY) == "it"
    assert language_for("a@mail.example.it", Audience.RECIPIENT, POLICY) == "it"
    assert language_for("a@example.com", Audience.SENDER, POLICY) == "en"
    assert language_for("a@example.de", Audience.ADMIN, POLICY) == "en"
    fr = NotifyPolicy(**{**POLICY.__dict__, "default_language": "fr", "admin_language": "nl"})
    assert language_for("a@example.com", Audience.RECIPIENT, fr) == "fr"
    assert language_for("a@example.com", Audience.OFFICER, fr) == "nl"


# -- the header block parser (sans-I/O) ------------------------------------------------
def test_marks_from_headers() -> None:
    raw = (b"From: list@example.com\r\nList-Id: <users.lists.example.com>\r\n"
           b"Precedence: Bulk (because)\r\nAuto-Submitted: auto-generated; owner=x\r\n\r\n"
           b"List-Id: in the body does not count\r\n")
    marks = read_marks(header_block(raw))
    assert marks.list_headers == ("List-Id",)
    assert marks.precedence == "bulk" and marks.is_bulk
    assert marks.auto_submitted == "auto-generated" and marks.is_automatic
    assert read_marks(header_block(b"Subject: hi\n\nList-Id: x\n")) == MailMarks()
    assert read_marks(b"Auto-Submitted: no (really)\n").is_automatic is False
    forged = read_marks(b"X-qscan-Notification: virus/recipient\n", lambda v: KEY.verify(v, ["a@b.c"]))
    assert forged.forged_mark and not forged.notification and forged.silence_reason() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_marks_parser_takes_any_bytes(raw: bytes) -> None:
    block = header_block(raw)
    assert raw.startswith(block[:-1]) or block == raw
    marks = read_marks(block)
    assert isinstance(marks.precedence, str)
    assert marks.is_list == bool(marks.list_headers)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["List-Id", "list-id", "Mailing-List", "List-Unsubscribe"]),
       st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       st.binary(max_size=300))
def test_list_header_always_found(name: str, value: str, body: bytes) -> None:
    raw = f"Subject: x\r\n{name}: {value}\r\n\r\n".encode() + body
    assert read_marks(header_block(raw)).is_list


# -- rendering and composing -------------------------------------------------------------
RENDERER = Renderer(host="mx1.example.com", contact="helpdesk@example.com",
                    quarantine_file=lambda e: f"/var/lib/qscan/quarantine/viruses/new/{e.event_id}")


def event_for(kind: Kind):  # type: ignore[no-untyped-def]
    if kind == Kind.VIRUS:
        return virus_event(subject="Rechnung März")
    if kind == Kind.REJECT:
        return make_event(action=Action.REJECT, category=Category.POLICY, reason="policy",
                          reply="Dmessage refused by policy (#5.7.1)", subject="Rechnung März")
    category = {Kind.POLICY: Category.POLICY, Kind.SPAM: Category.SPAM, Kind.DLP: Category.DLP}[kind]
    return make_event(action=Action.QUARANTINE, category=category, reason=kind.value, spam_score=12.5,
                      dlp_findings=[{"rule": "cards", "count": 2}], subject="Rechnung März")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_template_renders_translated(lang: str) -> None:
    for kind in Kind:
        ev = event_for(kind)
        for aud in (Audience.SENDER, Audience.RECIPIENT, Audience.ADMIN, Audience.OFFICER):
            out = RENDERER.render(ev, Notice("bob@example.org", aud, kind, lang))
            assert out.subject and "Rechnung März" in out.subject
            assert "mx1.example.com" in out.text and out.html and "<html lang=" in out.html
            assert ev.event_id in out.text  # quarantine id, or the reference / event id
            english = EN_INTRO.get((kind.value, aud.value))
            if english:
                assert (english in out.text) == (lang == "en"), (lang, kind, aud)


def test_admin_sees_everything_recipient_sees_little() -> None:
    ev = virus_event(name="Eicar-Test-Signature", recipients=["bob@example.org", "secret@example.org"])
    admin = RENDERER.render(ev, Notice("qadmin@example.net", Audience.ADMIN, Kind.VIRUS, "en")).text
    rcpt = RENDERER.render(ev, Notice("bob@example.org", Audience.RECIPIENT, Kind.VIRUS, "en")).text
    assert "Quarantine file: /var/lib/qscan/quarantine/viruses/new/" in admin
    assert "Client: 192.0.2.10" in admin and "clamd: Eicar-Test-Signature" in admin
    assert "secret@example.org" in admin and "secret@example.org" not in rcpt
    assert "Client:" not in rcpt and "Quarantine file" not in rcpt


def test_html_is_escaped_and_text_is_clean() -> None:
    ev = policy_event(subject="<script>alert(1)</script>\u202eexe.pdf\r\nBcc: x@evil.test",
                      attachments=[("<img src=x onerror=alert(1)>.exe", "application/octet-stream", 1)])
    out = RENDERER.render(ev, Notice("bob@example.org", Audience.RECIPIENT, Kind.POLICY, "en"))
    assert out.html is not None
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html and "<img" not in out.html
    assert "\u202e" not in out.text and "\r" not in out.text
    assert "\nBcc:" not in out.text


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    return msg


def test_composed_headers() -> None:
    ev = virus_event(subject="Rechnung März")
    notice = Notice("carl@example.de", Audience.SENDER, Kind.VIRUS, "de")
    mid, data = compose(RENDERER.render(ev, notice), notice, event_id=ev.event_id, identity=IDENTITY,
                        when=ev.time, in_reply_to="<m1@example.com>")
    msg = parse(data)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == mid and mid.startswith(f"<qscan.{ev.event_id}.virus.")
    assert msg["Date"] and msg["In-Reply-To"] == "<m1@example.com>"
    assert msg["Content-Language"] == "de"
    assert msg["Subject"] == "Virus in Ihrer Nachricht gefunden: Rechnung März"
    assert b"=?utf-8?" in data.split(b"\r\n\r\n", 1)[0]  # encoded-words for non-ASCII
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.text(max_size=100))
def test_nothing_from_mail_reaches_a_header_line(subject: str, msgid: str) -> None:
    ev = policy_event(subject=subject)
    ev = ev.model_copy(update={"headers": ev.headers.model_copy(update={"message_id": msgid})})
    notice = Notice("bob@example.org", Audience.SENDER, Kind.POLICY, "en")
    _, data = compose(RENDERER.render(ev, notice), notice, event_id=ev.event_id, identity=IDENTITY,
                      when=ev.time, in_reply_to=msgid)
    head = data.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line and line[:1] not in b" \t"]
    assert names == [b"From", b"To", b"Subject", b"Date", b"Message-ID", *(
        [b"In-Reply-To", b"References"] if original_message_id(msgid) else []),
        b"Auto-Submitted", b"X-Auto-Response-Suppress", b"X-qscan-Notification",
        b"MIME-Version", b"Content-Type", b"Content-Language"]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    assert parse(data)["Subject"] == parse(data)["Subject"].strip()
    # The stdlib may drop a space between adjacent encoded-words when decoding: compare without.
    squash = "".join(clean(subject).split())
    assert squash in "".join(parse(data)["Subject"].split()) or len(clean(subject)) > 150


# -- catalogs ------------------------------------------------------------------------------
def test_catalogs_are_complete_and_compiled() -> None:
    assert catalogs.check() == []


def test_catalog_check_catches_a_missing_or_fuzzy_message(tmp_path: Path) -> None:
    root = tmp_path / "locale"
    shutil.copytree(catalogs.LOCALE_DIR, root)
    po = catalogs.po_path("lt", root)
    with po.open("rb") as f:
        cat = read_po(f, locale="lt")
    cat.delete("Quarantine ID:")
    cat["Reason:"].flags.add("fuzzy")
    with po.open("wb") as f:
        write_po(f, cat)
    problems = catalogs.check(root)
    assert "lt: missing 'Quarantine ID:'" in problems
    assert "lt: fuzzy 'Reason:'" in problems
    assert any(p.startswith("lt:") and "older than its .po" in p for p in problems)
    assert not any(p.startswith("de:") for p in problems)


_local = st.sampled_from(["bob", "MAILER-DAEMON", "postmaster", "a.b", "-x", "users-request", "", "c d"])
_domain = st.sampled_from(["example.org", "sub.example.de", "example.de", "remote.test", "EXAMPLE.ORG"])
_addr = st.builds(lambda local, dom: f"{local}@{dom}" if local else "", _local, _domain)


@settings(max_examples=300, deadline=None)
@given(sender=_addr, rcpts=st.lists(_addr, min_size=1, max_size=5),
       action=st.sampled_from(list(Action)), category=st.sampled_from(list(Category)),
       virus=st.sampled_from(["", "Worm.Netsky.Q", "Eicar-Test-Signature"]),
       marks=st.sampled_from([None, MailMarks(), MailMarks(list_headers=("List-Id",)),
                              MailMarks(auto_submitted="auto-generated"), MailMarks(notification=True),
                              MailMarks(forged_mark=True)]),
       sender_mode=st.sampled_from(["none", "psender", "all"]))
def test_plan_invariants(sender: str, rcpts: list[str], action: Action, category: Category, virus: str,
                         marks: MailMarks | None, sender_mode: str) -> None:
    findings = [Finding(scanner="clamd", verdict=Category.VIRUS, name=virus)] if virus else []
    ev = make_event(sender=sender, recipients=rcpts, action=action, category=category, findings=findings)
    p = plan(ev, marks, NotifyPolicy(**{**POLICY.__dict__, "sender": sender_mode}))
    addresses = [n.address.lower() for n in p.notices]
    assert len(addresses) == len(set(addresses))  # one notice per address
    assert all(n.kind == kind_of(ev) for n in p.notices)
    if action not in (Action.QUARANTINE, Action.REJECT):
        assert {n.audience for n in p.notices} <= {Audience.OFFICER}
    for n in p.notices:
        assert "@" in n.address and not n.address.startswith("-") and " " not in n.address
        if n.audience == Audience.RECIPIENT:
            assert n.address.rpartition("@")[2] in ("example.org", "sub.example.de")
        if n.audience == Audience.SENDER:
            assert sender_mode != "none" and marks is not None and not marks.is_list
            assert not marks.is_automatic and "netsky" not in virus.lower()
            assert sender.split("@")[0].lower() not in ("mailer-daemon", "postmaster", "users-request")
    if marks is not None and marks.notification:
        assert p.notices == []
    if marks is not None and marks.forged_mark:  # a forged mark is ordinary mail
        assert p == plan(ev, MailMarks(), NotifyPolicy(**{**POLICY.__dict__, "sender": sender_mode}))
