"""Text extraction for DLP: bodies, headers, attachments (CSV, HTML, PDF, DOCX/XLSX/PPTX), archives,
encrypted mail, and the size and time bounds."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qscan.testing.corpus import default_corpus_dir
from scanners.dlp.extract import ExtractLimits, extract_raw, html_to_text, office_text, pdf_text
from scanners.internal.unpack import UnpackLimits
from tests.dlp_docs import PGP_MIME, SMIME, docx, mail, pdf, pptx, xlsx, zip_of
from tests.dlp_samples import card, spaced

NUMBER = card(random.Random(42), "4", 16)
CARD = spaced(NUMBER)


def texts(raw: bytes, **kw: object) -> dict[str, str]:
    ex = extract_raw(raw, **kw)  # type: ignore[arg-type]
    return {s.location: s.text for s in ex.segments}


def test_plain_body_and_configured_headers() -> None:
    raw = mail(body=f"card {CARD}", subject="Q3 numbers", extra_headers="X-Ref: ticket 77\n")
    assert texts(raw) == {"header:Subject": "Q3 numbers", "1": f"card {CARD}"}
    got = texts(raw, headers=["Subject", "X-Ref"])
    assert got["header:X-Ref"] == "ticket 77"


def test_encoded_words_in_headers_are_decoded() -> None:
    raw = mail(subject="=?utf-8?q?Karte_f=C3=BCr_Anna?=")
    assert texts(raw)["header:Subject"] == "Karte für Anna"


def test_html_alternative_becomes_readable_text() -> None:
    html = (f"<html><head><style>p {{color: red}}</style><script>var x = '{NUMBER}';</script></head>"
            f"<body><p>Card&nbsp;number:</p><table><tr><td>{CARD}</td><td>exp</td></tr></table></body></html>")
    got = texts(mail(body="see html", html=html))
    assert "Card\xa0number:" in got["2"] or "Card number:" in got["2"]
    assert CARD in got["2"] and "color" not in got["2"] and "var x" not in got["2"]
    assert html_to_text("<p>a</p><p>b</p>") == "a\nb"


def test_csv_and_text_attachments() -> None:
    csv = f"name,card\nAnna,{NUMBER}\n".encode()
    got = texts(mail(attachments=[("export.csv", "text/csv", csv),
                                  ("notes.txt", "application/octet-stream", b"plain notes")]))
    assert got["2/export.csv"] == f"name,card\nAnna,{NUMBER}"
    assert got["3/notes.txt"] == "plain notes"


def test_pdf_attachment_text_layer() -> None:
    doc = pdf([f"Customer card {CARD}", "Page two: nothing"])
    text, note = pdf_text(doc, 10, float("inf"))
    assert CARD in text and "Page two" in text and note is None
    got = texts(mail(attachments=[("statement.pdf", "application/pdf", doc)]))
    assert CARD in got["2/statement.pdf"]
    # the page bound: only the first page is read, and that is noted
    ex = extract_raw(mail(attachments=[("s.pdf", "application/octet-stream", doc)]),
                     limits=ExtractLimits(max_pdf_pages=1))
    assert "Page two" not in ex.segments[-1].text
    assert any("only the first 1 of 2 pages" in n for n in ex.notes) and ex.truncated


def test_office_documents() -> None:
    assert office_text(docx([f"Card: {CARD}", "second"]), "docx", 10**6) == f"Card: {CARD}\nsecond"
    assert office_text(xlsx([["name", "card"], ["Anna", NUMBER]]), "xlsx", 10**6) == f"name\tcard\nAnna\t{NUMBER}"
    assert office_text(pptx(["Slide one", "IBAN DE89 3704 0044 0532 0130 00"]), "pptx", 10**6) == (
        "Slide one\nIBAN DE89 3704 0044 0532 0130 00")
    got = texts(mail(attachments=[
        ("a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx([CARD])),
        ("b.xlsx", "application/octet-stream", xlsx([[NUMBER]])),  # found by its extension
        ("c.bin", "application/octet-stream", pptx([CARD])),  # found by its content
    ]))
    assert got["2/a.docx"] == CARD and got["3/b.xlsx"] == NUMBER and got["4/c.bin"] == CARD


def test_office_xml_bound_and_entity_tricks() -> None:
    big = docx(["x" * 5000])
    ex = extract_raw(mail(attachments=[("big.docx", "application/octet-stream", big)]),
                     limits=ExtractLimits(max_xml_bytes=1000))
    assert any("big.docx: not read" in n and "max_xml_bytes" in n for n in ex.notes)
    bomb = zip_of({"word/document.xml": '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]>'
                   '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">&a;</w:document>'})
    ex = extract_raw(mail(attachments=[("evil.docx", "application/octet-stream", bomb)]))
    assert any("evil.docx: not read" in n for n in ex.notes)


def test_documents_inside_zip_archives() -> None:
    inner = zip_of({"deep/cards.csv": f"card,{NUMBER}\n", "doc.pdf": pdf([f"card {CARD}"])})
    outer = zip_of({"inner.zip": inner, "readme.txt": "hi", "photo.jpg": b"\xff\xd8\xff" + b"\0" * 100})
    got = texts(mail(attachments=[("bundle.zip", "application/zip", outer)]))
    assert got["2/bundle.zip!/readme.txt"] == "hi"
    assert got["2/bundle.zip!/inner.zip!/deep/cards.csv"] == f"card,{NUMBER}"
    assert CARD in got["2/bundle.zip!/inner.zip!/doc.pdf"]
    # depth bound: the inner archive is not opened at depth 1
    ex = extract_raw(mail(attachments=[("bundle.zip", "application/zip", outer)]),
                     limits=ExtractLimits(unpack=UnpackLimits(max_depth=1, max_members=50,
                                                              max_total_bytes=10**7, max_time=5)))
    locations = [s.location for s in ex.segments]
    assert "2/bundle.zip!/readme.txt" in locations
    assert not any("inner.zip!/" in loc for loc in locations) and ex.truncated


def test_size_and_text_bounds() -> None:
    attachment = ("big.txt", "text/plain", b"A" * 5000 + f" {CARD}".encode())
    ex = extract_raw(mail(attachments=[attachment]), limits=ExtractLimits(max_part_size=4096))
    assert [s.location for s in ex.segments] == ["header:Subject", "1"]
    assert any("big.txt" in n and "max_part_size" in n for n in ex.notes)
    ex = extract_raw(mail(body="B" * 3000, attachments=[attachment]), limits=ExtractLimits(max_text=2000))
    assert ex.chars == 2000 and any("more than 2000 characters" in n for n in ex.notes)


def test_time_bound_stops_and_notes() -> None:
    many = [(f"f{i}.txt", "text/plain", b"text") for i in range(50)]
    ex = extract_raw(mail(attachments=many), limits=ExtractLimits(max_time=0.0))
    assert any("took more than" in n for n in ex.notes) and ex.truncated


def test_encrypted_mail_is_listed_not_read() -> None:
    assert extract_raw(SMIME).encrypted == ["1"]
    assert extract_raw(PGP_MIME).encrypted == ["1"]
    inline = mail(body=f"-----BEGIN PGP MESSAGE-----\n\nhQEMA{NUMBER}\n-----END PGP MESSAGE-----\nbye")
    ex = extract_raw(inline)
    assert ex.encrypted == ["1"] and NUMBER not in ex.segments[-1].text and "bye" in ex.segments[-1].text
    signed = SMIME.replace(b"enveloped-data", b"signed-data")
    assert extract_raw(signed).encrypted == []


def test_attached_message_is_read() -> None:
    inner = mail(body=f"forwarded card {CARD}", subject="inner subject")
    got = texts(mail(attachments=[("fwd.eml", "message/rfc822", inner)]))
    assert any(CARD in t for t in got.values())


def test_demo_corpus_extracts_without_errors() -> None:
    corpus = default_corpus_dir()
    for path in sorted(corpus.glob("*.eml")):
        ex = extract_raw(path.read_bytes())
        assert not any("not parsed" in n for n in ex.notes), path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2000))
def test_extract_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    ex = extract_raw(raw)
    assert ex.chars == sum(len(s.text) for s in ex.segments)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=st.text(max_size=500))
def test_html_to_text_never_raises(html: str) -> None:
    assert isinstance(html_to_text(html), str)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), kind=st.sampled_from(["docx", "xlsx", "pptx", "odf"]))
def test_office_text_refuses_garbage_cleanly(data: bytes, kind: str) -> None:
    try:
        office_text(b"PK\x03\x04" + data, kind, 10**6)
    except ValueError:
        pass


def test_attached_message_sent_properly_is_read_with_its_subject() -> None:
    inner = mail(body=f"forwarded card {CARD}", subject="inner subject")
    raw = (b'From: a@example.com\nTo: b@example.org\nSubject: fw\nMIME-Version: 1.0\n'
           b'Content-Type: multipart/mixed; boundary="BB"\n\n--BB\nContent-Type: text/plain\n\nsee below\n'
           b"--BB\nContent-Type: message/rfc822\n\n" + inner + b"\n--BB--\n")
    got = texts(raw)
    assert got["2/1"] == f"forwarded card {CARD}"
