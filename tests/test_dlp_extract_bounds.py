"""The DLP extractor is bounded while it works (issue #19, item 11): text length and memory
inside office readers, time inside a PDF page, for hostile files a few KB long."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
import zlib

import pytest

from scanners.dlp import extract as extract_module
from scanners.dlp.extract import ExtractLimits, extract_raw, office_text, pdf_text
from tests.dlp_docs import S, W, mail, pdf

# The hard-deadline alarm may fire inside a garbage-collector callback (hypothesis installs one),
# where Python ignores the exception and reports it as "unraisable"; the timer repeats every
# 50 ms for exactly that case, so the warning is expected noise here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MB = 1_000_000


def deflated_zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def shared_string_bomb(cells: int) -> bytes:
    """One 1 MB shared string, named by every cell: a few KB that expand to cells x 1 MB."""
    shared = (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{S}" count="1" uniqueCount="1">'
              f"<si><t>{'A' * MB}</t></si></sst>")
    row = "".join(f'<c r="A{i}" t="s"><v>0</v></c>' for i in range(1, 11))
    rows = "".join(f'<row r="{r}">{row}</row>' for r in range(1, cells // 10 + 1))
    sheet = f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{S}"><sheetData>{rows}</sheetData></worksheet>'
    return deflated_zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>",
                         "xl/sharedStrings.xml": shared, "xl/worksheets/sheet1.xml": sheet})


def nested_paragraphs(depth: int, run: int) -> bytes:
    """Paragraphs nested in paragraphs (text boxes): each is part of every one around it."""
    inner = ""
    for _ in range(depth):
        inner = f"<w:p><w:r><w:t>{'x' * run}</w:t></w:r>{inner}</w:p>"
    doc = f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{inner}</w:body></w:document>'
    return deflated_zip({"word/document.xml": doc})


def slow_pdf(operators: int) -> bytes:
    """One page that shows one word, then draws ``operators`` x 4 path operators in the same
    compressed content stream: a few KB that pypdf parses for many seconds."""
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (word) Tj ET\n" + b"0 0 m 1 1 l S\n" * operators, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def measured(fn):  # type: ignore[no-untyped-def]
    """(result, seconds, peak MB of Python allocations)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = fn()
        return result, time.monotonic() - started, tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def test_shared_string_bomb_stops_at_max_text() -> None:
    bomb = shared_string_bomb(300)  # 300 MB of text if every cell were built
    assert len(bomb) < 6000
    text, seconds, peak = measured(lambda: office_text(bomb, "xlsx", 20 * 2**20, max_chars=2 * MB))
    assert len(text) == 2 * MB and seconds < 5
    assert peak < 30, f"{peak:.0f} MB allocated"
    raw = mail(attachments=[("book.xlsx", "application/octet-stream", bomb)])
    ex, seconds, peak = measured(lambda: extract_raw(raw, limits=ExtractLimits(max_text=3 * MB)))
    assert ex.chars == 3 * MB and any("more than 3000000 characters" in n for n in ex.notes)
    assert peak < 60, f"{peak:.0f} MB allocated"


def test_nested_paragraphs_cannot_multiply_past_max_text() -> None:
    doc = nested_paragraphs(300, 1000)  # 45 MB of text if every paragraph repeated its inner ones
    text, _seconds, peak = measured(lambda: office_text(doc, "docx", 20 * 2**20, max_chars=100_000))
    assert len(text) == 100_000 and peak < 15


def test_office_reader_checks_the_deadline_inside_the_document() -> None:
    rows = "".join(f'<row r="{r}"><c r="A{r}"><v>{r}</v></c></row>' for r in range(1, 2001))
    sheet = f'<worksheet xmlns="{S}"><sheetData>{rows}</sheetData></worksheet>'
    book = deflated_zip({"xl/workbook.xml": "<workbook/>", "xl/worksheets/sheet1.xml": sheet})
    assert office_text(book, "xlsx", 2**20).count("\n") == 1999
    with pytest.raises(extract_module._OutOfTime):
        office_text(book, "xlsx", 2**20, deadline=time.monotonic())


def test_a_slow_pdf_page_is_stopped_at_max_time() -> None:
    doc = slow_pdf(200_000)
    assert len(doc) < 10_000
    raw = mail(body="card on page one", attachments=[("one-page.pdf", "application/pdf", doc)])
    started = time.monotonic()
    ex = extract_raw(raw, limits=ExtractLimits(max_time=0.5))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"{elapsed:.1f} s against a 0.5 s limit"
    assert any("took more than 0.5 s" in n for n in ex.notes) and ex.truncated
    assert [s.location for s in ex.segments] == ["header:Subject", "1"]  # read before the PDF: kept


def test_pdf_text_stops_at_max_chars() -> None:
    doc = pdf(["A" * 3000, "B" * 3000, "C" * 3000])
    text, note = pdf_text(doc, 10, float("inf"), max_chars=4000)
    assert len(text) == 4000 and text.startswith("A" * 3000) and note is not None and "4000" in note
    ex = extract_raw(mail(body="", attachments=[("t.pdf", "application/pdf", doc)]),
                     limits=ExtractLimits(max_text=5000))
    assert ex.chars == 5000 and ex.truncated


def test_extraction_is_repeatable_after_a_hard_stop() -> None:
    """The alarm is disarmed and its handler restored: the next message is read in full."""
    extract_raw(mail(attachments=[("p.pdf", "application/pdf", slow_pdf(200_000))]),
                limits=ExtractLimits(max_time=0.2))
    time.sleep(0.2)  # a leftover timer would fire here
    ex = extract_raw(mail(attachments=[("ok.pdf", "application/pdf", pdf(["fine text"]))]))
    assert any("fine text" in s.text for s in ex.segments) and not ex.truncated
