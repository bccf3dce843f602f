"""S/MIME and PGP use in every event, summary line and SQL row (issue 19, item 10).

Detection runs on real messages through the real processor; the SQL rows are written by
the real summaries consumer on SQLite and PostgreSQL, and the hash chain still verifies
rows written before the column existed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from compliance import canonical
from compliance.db import make_engine
from compliance.summaries import SummarySink
from compliance.verify import verify_chain
from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json, to_json
from ingest.journal import Journal
from ingest.log import LogRecord
from ingest.mime import walk_parts
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from ingest.summary_line import format_summary
from qscan.testing.standin import write_standin
from scanners.mime.crypto import KINDS, armor_kind, cms_kind, crypto_use, packet_kind
from scanners.mime.parse import parse
from tests.factories import make_event
from tests.internal_corpus import HEAD, TEXT_PART, attachment, b64, multipart

# The starts of real objects: a CMS ContentInfo (BER, as openssl writes it) and OpenPGP packets
# (a public-key encrypted session key, a symmetric one, gpg --sign's compressed packet).
SIGNED_DATA = bytes.fromhex("3080" "06092a864886f70d010702" "a080") + b"\x30\x80" * 40
ENVELOPED_DATA = bytes.fromhex("3082042a" "06092a864886f70d010703" "a082041b") + b"\x02\x01\x00" * 40
AUTH_ENVELOPED = bytes.fromhex("3080" "060b2a864886f70d0109100117" "a080") + b"\x00" * 40
PKESK = b"\x85\x01\x0c\x03" + bytes(range(64))
SKESK = b"\x8c\x0d\x04\x09\x03\x02" + bytes(range(64))
SIGNED_PACKETS = b"\xa3\x01\x01\x8b\x00" + bytes(range(64))
LITERAL = b"\xcb\x0cb\x00\x00\x00\x00\x00hello" + bytes(range(16))


def armored(data: bytes, headers: bytes = b"") -> bytes:
    body = base64.encodebytes(data)
    return (b"-----BEGIN PGP MESSAGE-----\n" + headers + b"\n" + body + b"=abcd\n"
            b"-----END PGP MESSAGE-----\n")


CLEARSIGNED = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nThe text.\n"
               b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
SIG_PART = (b"Content-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\n"
            b"Content-Disposition: attachment; filename=smime.p7s\n\n" + b64(SIGNED_DATA))


def signed(protocol: bytes, sig_part: bytes) -> bytes:
    return multipart(TEXT_PART, sig_part, subtype=b'signed; protocol="' + protocol + b'"; micalg=sha-256')


def single(ctype: bytes, data: bytes, extra: bytes = b"") -> bytes:
    return (HEAD + b"Content-Type: " + ctype + b"\nContent-Transfer-Encoding: base64\n" + extra + b"\n"
            + b64(data))


def text_body(body: bytes, ctype: bytes = b"text/plain") -> bytes:
    return HEAD + b"Content-Type: " + ctype + b"\n\n" + body


# message -> what it uses
CASES: dict[str, tuple[bytes, list[str]]] = {
    "plain": (HEAD + b"Content-Type: text/plain\n\nHi.\n", []),
    "smime-detached": (signed(b"application/pkcs7-signature", SIG_PART), ["smime-signed"]),
    "smime-detached-x": (signed(b"application/x-pkcs7-signature", SIG_PART.replace(
        b"application/pkcs7-signature", b"application/x-pkcs7-signature")), ["smime-signed"]),
    "smime-opaque-signed": (single(b'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
                                   SIGNED_DATA), ["smime-signed"]),
    "smime-enveloped": (single(b'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
                               ENVELOPED_DATA), ["smime-encrypted"]),
    "smime-enveloped-x": (single(b'application/x-pkcs7-mime; smime-type=enveloped-data', ENVELOPED_DATA),
                          ["smime-encrypted"]),
    "smime-auth-enveloped": (single(b"application/pkcs7-mime; smime-type=authEnveloped-data", AUTH_ENVELOPED),
                             ["smime-encrypted"]),
    "smime-no-smime-type": (single(b"application/pkcs7-mime", ENVELOPED_DATA), ["smime-encrypted"]),
    "smime-no-smime-type-signed": (single(b"application/x-pkcs7-mime", SIGNED_DATA), ["smime-signed"]),
    "smime-p7m-as-octet-stream": (multipart(TEXT_PART, attachment("smime.p7m", ENVELOPED_DATA)),
                                  ["smime-encrypted"]),
    "pgp-mime-signed": (signed(b"application/pgp-signature",
                               b"Content-Type: application/pgp-signature; name=signature.asc\n\n"
                               b"-----BEGIN PGP SIGNATURE-----\n\niQEz\n-----END PGP SIGNATURE-----\n"),
                        ["pgp-signed"]),
    "pgp-mime-encrypted": (multipart(
        b"Content-Type: application/pgp-encrypted\n\nVersion: 1\n",
        b"Content-Type: application/octet-stream; name=encrypted.asc\n\n" + armored(PKESK),
        subtype=b'encrypted; protocol="application/pgp-encrypted"'), ["pgp-encrypted"]),
    "inline-encrypted": (text_body(b"Hi,\n\n" + armored(PKESK, b"Version: GnuPG v2\n")), ["pgp-encrypted"]),
    "inline-symmetric": (text_body(armored(SKESK)), ["pgp-encrypted"]),
    "inline-signed-message": (text_body(armored(SIGNED_PACKETS)), ["pgp-signed"]),
    "inline-unreadable-block": (text_body(b"-----BEGIN PGP MESSAGE-----\n\n!!!!\n-----END PGP MESSAGE-----\n"),
                                ["pgp-encrypted"]),
    "inline-literal-only": (text_body(armored(LITERAL)), []),
    "inline-clearsigned": (text_body(CLEARSIGNED), ["pgp-signed"]),
    "inline-crlf": (text_body(armored(PKESK)).replace(b"\n", b"\r\n"), ["pgp-encrypted"]),
    "inline-in-html": (text_body(b"<html><body><pre>" + armored(PKESK).replace(b"\n", b"<br>\n")
                                 + b"</pre></body></html>\n", b"text/html"), ["pgp-encrypted"]),
    "quoted-block-is-no-use": (text_body(b"You wrote:\n> " + armored(PKESK).replace(b"\n", b"\n> ")), []),
    "mentioned-mid-line": (text_body(b"paste it after -----BEGIN PGP MESSAGE----- please\n"), []),
    "binary-gpg-file": (multipart(TEXT_PART, attachment("report.xlsx.gpg", PKESK)), ["pgp-encrypted"]),
    "binary-file-not-pgp": (multipart(TEXT_PART, attachment("notes.gpg", b"plain words")), []),
    "armored-asc-attachment": (multipart(TEXT_PART, attachment("msg.asc", armored(SKESK))), ["pgp-encrypted"]),
    "forwarded-signed": (multipart(TEXT_PART, b"Content-Type: message/rfc822\n\n"
                                   + signed(b"application/pgp-signature",
                                            b"Content-Type: application/pgp-signature\n\nsig\n")),
                         ["pgp-signed"]),
    "both-kinds": (multipart(
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="=_s"\n\n'
        + b"--=_s\n" + TEXT_PART + b"--=_s\n" + SIG_PART + b"--=_s--\n",
        attachment("secret.gpg", PKESK)), ["smime-signed", "pgp-encrypted"]),
}


def field(kinds: list[str]) -> str:
    """The summary line's field, as every empty value is written."""
    return " crypto=" + (",".join(kinds) or '""') + " "


def use(raw: bytes) -> list[str]:
    msg = parse(raw)
    _meta, parts, _defects = walk_parts(msg)
    return crypto_use(msg, parts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_crypto_use_of_each_kind(case: str) -> None:
    raw, expected = CASES[case]
    assert use(raw) == expected


def test_the_order_is_fixed_and_no_message_means_none() -> None:
    assert KINDS == ("smime-signed", "smime-encrypted", "pgp-signed", "pgp-encrypted")
    assert crypto_use(None, []) == []
    # without the decoded parts the leaves are decoded from the tree
    assert crypto_use(parse(CASES["inline-encrypted"][0]), []) == ["pgp-encrypted"]


def test_content_sniffers() -> None:
    assert cms_kind(SIGNED_DATA) == "smime-signed" and cms_kind(ENVELOPED_DATA) == "smime-encrypted"
    assert cms_kind(b"%PDF-1.4") is None
    assert packet_kind(PKESK) == packet_kind(SKESK) == "pgp-encrypted"
    assert packet_kind(b"\xc1\x05") == "pgp-encrypted"  # new-format header, tag 1
    assert packet_kind(b"\xd2\x05") == "pgp-encrypted"  # new-format SEIPD (tag 18)
    assert packet_kind(SIGNED_PACKETS) == "pgp-signed" and packet_kind(LITERAL) is None
    assert packet_kind(b"") is None and packet_kind(b"PK\x03\x04") is None
    assert armor_kind(CLEARSIGNED) == "pgp-signed" and armor_kind(b"no armor") is None


@given(st.binary(max_size=400))
def test_sniffers_are_total(data: bytes) -> None:
    assert cms_kind(data) in (None, "smime-signed", "smime-encrypted")
    assert packet_kind(data) in (None, "pgp-signed", "pgp-encrypted")
    armor = armor_kind(b"-----BEGIN PGP MESSAGE-----\n" + data)
    assert armor in ("pgp-signed", "pgp-encrypted", None)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(st.sampled_from(sorted(CASES)), st.binary(max_size=40), st.integers(0, 10_000))
def test_crypto_use_never_raises_on_mangled_mail(case: str, noise: bytes, at: int) -> None:
    raw = CASES[case][0]
    at = at % (len(raw) + 1)
    mangled = raw[:at] + noise + raw[at:]
    assert set(use(mangled)) <= set(KINDS)


# -- the summary line -------------------------------------------------------------------------
@pytest.mark.parametrize("kinds", [["smime-signed"], ["smime-encrypted"], ["pgp-signed"], ["pgp-encrypted"],
                                   ["smime-signed", "pgp-encrypted"]])
def test_summary_line_names_each_kind(kinds: list[str]) -> None:
    line = format_summary(make_event(crypto=kinds))
    assert field(kinds) + "time=" in line


def test_summary_line_of_mail_without_crypto_and_of_old_events() -> None:
    assert field([]) + "time=" in format_summary(make_event(crypto=[]))
    # an event written before qscan recorded it: the line is what it always was
    old = make_event()
    assert old.crypto is None and "crypto=" not in format_summary(old)
    legacy = json.loads(to_json(old))
    legacy.pop("crypto", None)
    assert from_json(json.dumps(legacy).encode(), None).crypto is None  # type: ignore[union-attr]


# -- through the real processor ---------------------------------------------------------------
@pytest.fixture
def processor(tmp_path: Path) -> tuple[Processor, Journal]:
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    return Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, []), journal


@pytest.mark.parametrize("case", ["plain", "smime-detached", "smime-enveloped", "pgp-mime-signed",
                                  "pgp-mime-encrypted", "inline-clearsigned", "both-kinds"])
def test_processor_records_crypto_in_the_event_and_the_line(processor: tuple[Processor, Journal],
                                                            case: str) -> None:
    proc, journal = processor
    raw, expected = CASES[case]
    out = proc.process(make_request(raw, build_envelope(b"a@example.com", [b"b@example.org"])))
    assert out.code == 0
    [ev] = [e for e in (from_json(x.body, x.raw) for x in journal.read(0, 10)) if isinstance(e, MessageScanned)]
    assert ev.crypto == expected
    assert field(expected) in format_summary(ev)


# -- the SQL row, SQLite and PostgreSQL --------------------------------------------------------
def _rows(url: str) -> dict[str, dict[str, Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {r["event_id"]: dict(r) for r in conn.execute(text(
                "SELECT event_id, crypto, summary FROM messages")).mappings()}
    finally:
        engine.dispose()


def _sql(url: str, statement: str, **params: Any) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def _problems(url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(url)
    try:
        return [(p.kind, p.event_id) for p in verify_chain(engine).problems]
    finally:
        engine.dispose()


KIND_SETS = [[], ["smime-signed"], ["smime-encrypted"], ["pgp-signed"], ["pgp-encrypted"],
             ["smime-signed", "pgp-encrypted"]]


def test_sql_row_stores_each_kind_and_old_rows_keep_verifying(migrated_url: str) -> None:
    old = make_event(subject="from before the field")  # crypto None: hashed as version 1
    new = [make_event(subject=f"m{i}", crypto=kinds) for i, kinds in enumerate(KIND_SETS)]
    sink = SummarySink(migrated_url)
    try:
        sink.apply([LogRecord(1, old)], 1)
        sink.apply([LogRecord(i, ev) for i, ev in enumerate(new, 2)], len(new) + 1)
    finally:
        sink.close()
    rows = _rows(migrated_url)
    assert rows[old.event_id]["crypto"] is None and "crypto=" not in rows[old.event_id]["summary"]
    for ev, kinds in zip(new, KIND_SETS, strict=True):
        assert rows[ev.event_id]["crypto"] == ",".join(kinds)
        assert field(kinds) in rows[ev.event_id]["summary"]
    assert _problems(migrated_url) == []
    # auditors' question: which mail used PGP encryption?
    engine = make_engine(migrated_url)
    with engine.connect() as conn:
        found = set(conn.scalars(text("SELECT event_id FROM messages WHERE crypto LIKE '%pgp-encrypted%'")))
    engine.dispose()
    assert found == {new[4].event_id, new[5].event_id}


@pytest.mark.parametrize(("target", "value"), [
    ("new", "smime-encrypted"),  # changed
    ("new", None),  # cleared: would fall back to version 1, which is not what was hashed
    ("old", ""),  # set on a row sealed without it
])
def test_tampering_with_crypto_is_caught(migrated_url: str, target: str, value: str | None) -> None:
    old = make_event(subject="old")
    new = make_event(subject="new", crypto=["pgp-signed"])
    sink = SummarySink(migrated_url)
    try:
        sink.apply([LogRecord(1, old), LogRecord(2, new)], 2)
    finally:
        sink.close()
    victim = new if target == "new" else old
    _sql(migrated_url, "UPDATE messages SET crypto = :c WHERE event_id = :e", c=value, e=victim.event_id)
    assert _problems(migrated_url) == [("altered-row", victim.event_id)]


def test_version_1_encoding_is_unchanged() -> None:
    """A message row without crypto hashes exactly as before the column existed (the link
    below was computed by the qscan before this change)."""
    row: dict[str, Any] = {n: None for n, _ in canonical.MESSAGE}
    row.update(event_id="0190a1b2-0000-7000-8000-000000000001",
               received_at=datetime(2026, 11, 25, 10, 0, 5, tzinfo=UTC), host="mx1", action="deliver",
               category="clean", reason="clean", direction="inbound", relay=False, sender="a@example.com",
               sender_domain="example.com", subject="hi", message_id="<m@x>", size=10, sha256="a" * 64,
               attachments="", parts_count=1, recipients_count=1, processing_ms=1.5,
               summary="event=x crypto=")
    kids = {"recipients": [{"address": "b@example.org", "domain": "example.org"}]}
    expected = "839f5aae15f7fbac1c6d8b405729eb70acf8926637922ae17173d49ffada748c"
    for with_column in (row, {**row, "crypto": None}):
        encoded = canonical.encode("message", "mx1", 1, with_column, kids)
        assert json.loads(encoded)["v"] == 1
        assert canonical.link(canonical.GENESIS, encoded) == expected
    v2 = canonical.encode("message", "mx1", 1, {**row, "crypto": ""}, kids)
    assert json.loads(v2)["v"] == 2 and json.loads(v2)["row"]["crypto"] == ""
