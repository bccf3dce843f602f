"""Seeded mail for DLP: business ham full of numbers that are not sensitive, and mail that is.

``ham(n)`` is what an office sends all day: orders, invoices, shipping notices, phone
numbers, meeting ids, timestamps, ISBNs, amounts, version strings, spreadsheets and PDFs
of them, plus the bench corpus's plain and HTML mail. Nothing in it is a payment card, an
IBAN or a national identifier *written as one* (no context word beside a valid value), so
a high-confidence rule that fires on it is a false positive. Some numbers in it will pass a
checksum by chance (a 16-digit order number passes Luhn one time in ten): that is the
point, those must stay below high confidence.

``sensitive(n)`` carries real-looking (generated, valid) cards and IBANs, in bodies and in
CSV, XLSX, DOCX and PDF attachments, for the cost figures. Same seed, same bytes.
"""

from __future__ import annotations

import base64
import io
import random
import string
import zipfile

from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from bench.corpus import generate

FIRST = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kate", "Liam"]
ITEMS = ["toner cartridges", "office chairs", "laptops", "printer paper", "monitors", "desk lamps",
         "coffee beans", "whiteboards", "headsets", "USB cables"]
CITIES = ["Berlin", "Lyon", "Leeds", "Utrecht", "Madrid", "Turin", "Boston", "Toronto"]


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _b64(data: bytes) -> str:
    enc = base64.b64encode(data).decode()
    return "\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)) + "\n"


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2026, 11, 25, 10, 0, 0)), data)
    return buf.getvalue()


def _xlsx(rows: list[list[str]]) -> bytes:
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    body = "".join("<row>" + "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in row) + "</row>"
                   for row in rows)
    sheet = f'<worksheet xmlns="{ns}"><sheetData>{body}</sheetData></worksheet>'
    return _zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": f'<workbook xmlns="{ns}"/>',
                 "xl/worksheets/sheet1.xml": sheet})


def _docx(paragraphs: list[str]) -> bytes:
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    return _zip({"[Content_Types].xml": "<Types/>",
                 "word/document.xml": f'<w:document xmlns:w="{ns}"><w:body>{body}</w:body></w:document>'})


def _pdf(lines: list[str]) -> bytes:
    stream = ("BT /F1 10 Tf 50 780 Td 12 TL " + " ".join(
        "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '" for line in lines)
        + " ET").encode("latin-1")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def _business_lines(rng: random.Random) -> list[str]:
    """Sentences with the numbers offices write: none of them is personal data."""
    name = rng.choice(FIRST)
    lines = [
        f"Hi {name},",
        f"your order {_digits(rng, rng.choice((8, 10, 12, 16)))} for {rng.randint(2, 40)} "
        f"{rng.choice(ITEMS)} shipped on 2026-11-{rng.randint(1, 28):02d}.",
        "Tracking number: 1Z" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),
        f"Invoice INV-2026-{rng.randint(10000, 99999)} over EUR {rng.randint(100, 99999):,}."
        f"{rng.randint(0, 99):02d} is due in {rng.choice((14, 30, 60))} days.",
        f"Call me on +{rng.choice((1, 44, 49, 33))} {rng.randint(200, 999)} {rng.randint(100, 999)} "
        f"{rng.randint(1000, 9999)} or {rng.randint(100, 999)}-{rng.randint(100, 999)}-"
        f"{rng.randint(1000, 9999)}.",
        f"Meeting ID: {rng.randint(100, 999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}, "
        f"passcode {rng.randint(100000, 999999)}",
        f"Build {rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 300)} ({_digits(rng, 14)}) is live.",
        f"Reference {_digits(rng, rng.choice((9, 11, 13, 15, 16, 19)))} — see ISBN 978-{rng.randint(0, 9)}-"
        f"{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}.",
        f"Thanks for the card you sent from {rng.choice(CITIES)}! We also printed new business cards.",
        f"Room {rng.randint(100, 999)}, building {rng.choice('ABCDE')}, floor {rng.randint(1, 12)}.",
        "Best regards",
    ]
    rng.shuffle(lines[1:-1])
    return lines


def order_number_passing_luhn(rng: random.Random) -> str:
    """A 16-digit order number that happens to be a valid Visa or Mastercard number (Luhn and
    issuer range): bare digits, so low confidence - unless a context word were near."""
    prefix = rng.choice(("4", "51", "53"))
    body = prefix + "".join(rng.choice(string.digits) for _ in range(15 - len(prefix)))
    return body + luhn.calc_check_digit(body)


def context_trap_lines(rng: random.Random) -> list[str]:
    """Everyday mail in which the short card context words appear (``Cc:`` lines, "cc me",
    "expires", "Pan-European", "visa application", "VISA" in a company name...) right beside
    order numbers that pass the card checks, and phone numbers. None of these words is about
    a card: a detector that counted them would grade the order numbers high."""
    n = [order_number_passing_luhn(rng) for _ in range(8)]
    phone = f"+44 20 {rng.randint(7000, 7999)} {rng.randint(1000, 9999)}"
    name, other = rng.sample(FIRST, 2)
    return [
        "-----Original Message-----",
        f"From: {name} <{name.lower()}@partner.example>",
        f"Subject: Re: order {n[0]}",
        "Cc: Visa Desk <vd@partner.example>; PAN Ops <pan@partner.example>",
        "CC: Amex Travel <travel@partner.example>",
        f"> cc: {other.lower()}@example.com",
        f"> order {n[1]}, phone {phone}",
        f"Please cc me on the reply about order {n[2]}. Congrats on the success of order {n[3]}!",
        f"Your subscription expires on 2026-12-{rng.randint(10, 31)}; renewal order {n[4]}, "
        f"call {phone}.",
        f"Our Pan-European hub (pan-european logistics) ships order {n[5]} from {rng.choice(CITIES)}.",
        f"{other}'s visa application for the Leeds trip is ref {n[6]}; the visa fee is on order {n[7]}.",
    ]


def _message(rng: random.Random, i: int, subject: str, body: str,
             attachments: list[tuple[str, str, bytes]]) -> bytes:
    head = (f"From: {rng.choice(FIRST).lower()}@example.com\nTo: orders@partner{rng.randrange(20)}.example\n"
            f"Subject: {subject} {i}\nDate: Wed, 25 Nov 2026 10:{i % 60:02d}:00 +0000\n"
            f"Message-ID: <dlp-{i}@example.com>\nMIME-Version: 1.0\n")
    if not attachments:
        return (head + "Content-Type: text/plain; charset=utf-8\n\n" + body + "\n").encode()
    b = f"=_dlp_{i}"
    out = (head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n'
           f"--{b}\nContent-Type: text/plain; charset=utf-8\n\n{body}\n")
    for name, ctype, data in attachments:
        out += (f'--{b}\nContent-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
                f'Content-Disposition: attachment; filename="{name}"\n\n{_b64(data)}')
    return (out + f"--{b}--\n").encode()


def ham(count: int = 1000, seed: int = 20261202) -> list[tuple[str, bytes]]:
    """(kind, raw) business ham: half generated office mail (a third with attachments),
    half the bench corpus's plain, HTML and attachment mail (its blocked executables left out)."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for i in range(count // 2):
        lines = _business_lines(rng)
        if i % 5 == 4:  # the short card context words beside checksum-passing order numbers
            lines += context_trap_lines(rng)
        body = "\n".join(lines)
        attachments: list[tuple[str, str, bytes]] = []
        if i % 3 == 0:
            rows = [["order", "item", "qty", "amount", "phone"]] + [
                [_digits(rng, 16), rng.choice(ITEMS), str(rng.randint(1, 50)), f"{rng.randint(10, 9999)}.00",
                 f"+49 30 {rng.randint(1000000, 9999999)}"] for _ in range(20)]
            kind = ("csv", "xlsx", "pdf", "docx")[(i // 3) % 4]
            if kind == "csv":
                attachments.append(("orders.csv", "text/csv", "\n".join(",".join(r) for r in rows).encode()))
            elif kind == "xlsx":
                attachments.append(("orders.xlsx", "application/octet-stream", _xlsx(rows)))
            elif kind == "pdf":
                attachments.append(("invoice.pdf", "application/pdf", _pdf([" ".join(r) for r in rows])))
            else:
                attachments.append(("minutes.docx", "application/octet-stream", _docx(_business_lines(rng))))
        out.append(("business" + ("+" + attachments[0][0].rsplit(".", 1)[1] if attachments else ""),
                    _message(rng, i, "Order update", body, attachments)))
    bench = [m for m in generate(count=count, seed=seed, big_mb=1, nested_depth=3)
             if m.kind in ("plain", "alternative", "attachment")]
    out.extend((m.kind, m.data) for m in bench[: count - len(out)])
    return out


def card_number(rng: random.Random) -> str:
    prefix = rng.choice(("4", "51", "52", "37"))
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - 1 - len(prefix)))
    return body + luhn.calc_check_digit(body)


def iban_number(rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(18))
    return "DE" + mod_97_10.calc_check_digits(bban + "DE") + bban


def sensitive(count: int = 200, seed: int = 20261203) -> list[tuple[str, bytes]]:
    """(kind, raw): 'body' (cards and an IBAN in the text) or 'attachment' (the same in CSV,
    XLSX, DOCX, PDF or a zip of CSV), alternating."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for i in range(count):
        cards = [card_number(rng) for _ in range(3)]
        text = "\n".join(_business_lines(rng)[:6] + [f"Card number: {c}" for c in cards]
                         + [f"IBAN {iban_number(rng)}"])
        if i % 2 == 0:
            out.append(("body", _message(rng, i, "Payment details", text, [])))
            continue
        rows = [["name", "card"]] + [[rng.choice(FIRST), c] for c in cards]
        kind = ("csv", "xlsx", "docx", "pdf", "zip")[(i // 2) % 5]
        csv = "\n".join(",".join(r) for r in rows)
        lines = [f"credit card {c}" for c in cards]
        if kind == "csv":
            data = csv.encode()
        elif kind == "xlsx":
            data = _xlsx(rows)
        elif kind == "docx":
            data = _docx(lines)
        elif kind == "pdf":
            data = _pdf(lines)
        else:
            data = _zip({"export/cards.csv": csv})
        body = "\n".join(_business_lines(rng))
        out.append(("attachment", _message(rng, i, "Customer list", body,
                                           [(f"customers.{kind}", "application/octet-stream", data)])))
    return out
