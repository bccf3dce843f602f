"""Real documents built in memory for the DLP tests: PDF, DOCX, XLSX, PPTX, zip, and mail around them."""

from __future__ import annotations

import base64
import io
import zipfile


def pdf(pages: list[str]) -> bytes:
    """A minimal, valid PDF 1.4 with one text line per page (Helvetica), xref offsets exact."""
    objects: list[bytes] = []
    n_pages = len(pages)
    font_id = 3 + 2 * n_pages
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _zip(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
A = "http://schemas.openxmlformats.org/drawingml/2006/main"
P = "http://schemas.openxmlformats.org/presentationml/2006/main"
CT = '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def docx(paragraphs: list[str]) -> bytes:
    """Word: each paragraph split over two runs, as Word does when formatting changes mid-line."""
    body = "".join(f'<w:p><w:r><w:t>{_esc(p[:5])}</w:t></w:r><w:r><w:t xml:space="preserve">{_esc(p[5:])}'
                   f"</w:t></w:r></w:p>" for p in paragraphs)
    doc = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
    return _zip({"[Content_Types].xml": CT, "word/document.xml": doc})


def xlsx(rows: list[list[str]]) -> bytes:
    """Excel: strings in the shared-strings table, numbers inline, like Excel writes them."""
    shared: list[str] = []
    xml_rows = []
    for r, row in enumerate(rows, 1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if value.isdigit():
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                shared.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    sheet = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{S}"><sheetData>{"".join(xml_rows)}'
             "</sheetData></worksheet>")
    sst = (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{S}">'
           + "".join(f"<si><t>{_esc(s)}</t></si>" for s in shared) + "</sst>")
    return _zip({"[Content_Types].xml": CT, "xl/workbook.xml": f'<workbook xmlns="{S}"/>',
                 "xl/sharedStrings.xml": sst, "xl/worksheets/sheet1.xml": sheet})


def pptx(slides: list[str]) -> bytes:
    files: dict[str, bytes | str] = {"[Content_Types].xml": CT, "ppt/presentation.xml": f'<p:presentation xmlns:p="{P}"/>'}
    for i, text in enumerate(slides, 1):
        files[f"ppt/slides/slide{i}.xml"] = (
            f'<p:sld xmlns:p="{P}" xmlns:a="{A}"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{_esc(text)}'
            "</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>")
    return _zip(files)


def zip_of(members: dict[str, bytes | str]) -> bytes:
    return _zip(members)


HEAD = "From: alice@example.com\nTo: bob@partner.example\nSubject: {subject}\nMessage-ID: <x@example.com>\n"


def mail(body: str = "Hello.", subject: str = "report", html: str | None = None,
         attachments: list[tuple[str, str, bytes]] | None = None, extra_headers: str = "") -> bytes:
    """A message: text (and optional HTML alternative) plus base64 attachments (name, type, data)."""
    head = HEAD.format(subject=subject) + extra_headers
    if not attachments and html is None:
        return f"{head}Content-Type: text/plain; charset=utf-8\n\n{body}\n".encode()
    parts = [f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"]
    if html is not None:
        parts.append(f"Content-Type: text/html; charset=utf-8\n\n{html}\n")
    for name, ctype, data in attachments or []:
        b64 = base64.encodebytes(data).decode()
        parts.append(f'Content-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
                     f'Content-Disposition: attachment; filename="{name}"\n\n{b64}')
    kind = "alternative" if html is not None and not attachments else "mixed"
    text = f'{head}MIME-Version: 1.0\nContent-Type: multipart/{kind}; boundary="BB"\n\n'
    for p in parts:
        text += f"--BB\n{p}\n"
    return (text + "--BB--\n").encode()


SMIME = b"""From: alice@example.com
To: bob@partner.example
Subject: encrypted
MIME-Version: 1.0
Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="smime.p7m"

MIAGCSqGSIb3DQEHA6CAMIACAQAxggFAMIIBPAIBADCBpDCBnjELMAkGA1UEBhMCVVMx
"""

PGP_MIME = b"""From: alice@example.com
To: bob@partner.example
Subject: encrypted
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="PP"

--PP
Content-Type: application/pgp-encrypted

Version: 1

--PP
Content-Type: application/octet-stream

-----BEGIN PGP MESSAGE-----

hQEMA1234567890ABCDEFGHIJKLMNOPQRSTUVWXYZ
-----END PGP MESSAGE-----

--PP--
"""
