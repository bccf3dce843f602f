"""The files of a legal-discovery production, as pure functions over the manifest rows.

* ``manifest.csv`` / ``manifest.json``: one row per produced message;
* ``edrm.xml``: EDRM XML 1.2 load file (Root/Batch/Documents/Document with
  ``#From``-style tags and the native file as ExternalFile; the hash is SHA-256,
  hex, as the ``Hash`` attribute; ``#DateSent`` and ``#DateReceived`` are ISO 8601
  in UTC, the Date header's own text is kept in ``QSCAN_DateHeader``);
* ``loadfile.dat``: Concordance DAT, UTF-8 with BOM, CRLF records, fields
  qualified by ``þ`` (U+00FE) and separated by DC4 (0x14); a line break inside
  a value becomes ``®`` (U+00AE), Concordance's newline mark;
* mboxrd framing for the one-file production (``From `` lines quoted by adding
  ``>``, reversibly).

Everything produced is deterministic for the same rows, so ``qscan export
verify`` can check it byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

MANIFEST_FIELDS = (
    "doc_id", "event_id", "file", "offset", "length", "sha256", "size", "source",
    "received_at", "host", "envelope_from", "envelope_to", "header_from", "header_to",
    "header_cc", "header_date", "subject", "message_id", "action", "verdict", "message_sha256",
    "original_sha256", "tombstone",
)

DAT_FIELDS = {
    "BEGDOC": "doc_id", "ENDDOC": "doc_id", "EVENTID": "event_id", "NATIVEPATH": "file",
    "MBOXOFFSET": "offset", "MBOXLENGTH": "length", "SHA256": "sha256", "FILESIZE": "size",
    "SOURCE": "source", "DATERCVD": "received_at", "HOST": "host", "ENVFROM": "envelope_from",
    "ENVTO": "envelope_to", "FROM": "header_from", "TO": "header_to", "CC": "header_cc",
    "DATESENT": "header_date", "SUBJECT": "subject", "MESSAGEID": "message_id",
    "ACTION": "action", "VERDICT": "verdict", "MSGSHA256": "message_sha256",
    "ORIGSHA256": "original_sha256", "TOMBSTONE": "tombstone",
}

QUALIFIER = "\u00fe"  # þ
SEPARATOR = "\x14"  # DC4
NEWLINE_MARK = "\u00ae"  # ®
_BOM = "\ufeff"

# XML 1.0 allows tab, LF, CR and most of Unicode; nothing else may appear even escaped.
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


# -- manifests ------------------------------------------------------------------
def manifest_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    """For people (spreadsheets): formula-like cells get a leading quote; JSON keeps them exact."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore",
                            lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        out = {}
        for k in MANIFEST_FIELDS:
            value = _text(row.get(k))
            out[k] = "'" + value if value.startswith(_FORMULA_START) else value
        writer.writerow(out)
    return buf.getvalue().encode("utf-8")


def manifest_json(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> bytes:
    doc = {**meta, "documents": [{k: _json_value(row.get(k)) for k in MANIFEST_FIELDS}
                                 for row in rows]}
    return (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def _json_value(value: Any) -> Any:
    return _text(value) if isinstance(value, datetime) else value


# -- EDRM XML -------------------------------------------------------------------
_EDRM_TAGS = (
    ("#From", "header_from", "Text"), ("#To", "header_to", "Text"), ("#CC", "header_cc", "Text"),
    ("#Subject", "subject", "Text"), ("#DateSent", "date_sent", "DateTime"),
    ("#DateReceived", "received_at", "DateTime"), ("#FileSize", "size", "Integer"),
    ("#MessageID", "message_id", "Text"),
)
_CUSTOM_TAGS = (
    ("QSCAN_EventID", "event_id"), ("QSCAN_EnvelopeFrom", "envelope_from"),
    ("QSCAN_EnvelopeTo", "envelope_to"), ("QSCAN_SHA256", "sha256"), ("QSCAN_Host", "host"),
    ("QSCAN_Action", "action"), ("QSCAN_Verdict", "verdict"), ("QSCAN_Source", "source"),
    ("QSCAN_MessageSHA256", "message_sha256"), ("QSCAN_OriginalSHA256", "original_sha256"),
    ("QSCAN_MboxOffset", "offset"), ("QSCAN_MboxLength", "length"),
    ("QSCAN_Tombstone", "tombstone"), ("QSCAN_DateHeader", "header_date"),
)


def date_sent(header: Any) -> str | None:
    """The Date header as ISO 8601 in UTC (``2026-11-25T09:00:00Z``), as EDRM's DateTime tags
    want it; None when the header is missing or no date (the text stays in QSCAN_DateHeader)."""
    from email.utils import parsedate_to_datetime

    if not header:
        return None
    try:
        when = parsedate_to_datetime(str(header))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 2822's "-0000": the zone is unknown; read as UTC
        when = when.replace(tzinfo=UTC)
    return _text(when)


def _xml(value: Any) -> str:
    return _XML_INVALID.sub("\ufffd", _text(value))


def edrm_xml(batch: str, rows: Sequence[dict[str, Any]], *, description: str) -> bytes:
    root = ET.Element("Root", {"MajorVersion": "1", "MinorVersion": "2",
                               "Description": _xml(description), "Locale": "en-US",
                               "DataInterchangeType": "Export"})
    fields = ET.SubElement(root, "Fields")
    for name, _ in _CUSTOM_TAGS:
        ET.SubElement(fields, "Field", {"Name": name, "DataType": "Text"})
    docs = ET.SubElement(ET.SubElement(root, "Batch", {"name": _xml(batch)}), "Documents")
    for row in rows:
        doc = ET.SubElement(docs, "Document", {"DocID": _xml(row["doc_id"]), "DocType": "Message",
                                               "MimeType": "message/rfc822"})
        if row.get("file"):
            path, _, name = str(row["file"]).rpartition("/")
            files = ET.SubElement(doc, "Files")
            native = ET.SubElement(files, "File", {"FileType": "Native"})
            ET.SubElement(native, "ExternalFile", {
                "FilePath": _xml(path), "FileName": _xml(name), "FileSize": _xml(row.get("size")),
                "Hash": _xml(row.get("sha256")),
            })
        tags = ET.SubElement(doc, "Tags")
        values = {**row, "date_sent": date_sent(row.get("header_date"))}
        for tag, key, kind in _EDRM_TAGS:
            if values.get(key) not in (None, ""):
                ET.SubElement(tags, "Tag", {"TagName": tag, "TagDataType": kind,
                                            "TagValue": _xml(values.get(key))})
        for tag, key in _CUSTOM_TAGS:
            if row.get(key) not in (None, ""):
                ET.SubElement(tags, "Tag", {"TagName": tag, "TagDataType": "Text",
                                            "TagValue": _xml(row.get(key))})
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


# -- Concordance DAT --------------------------------------------------------------
def dat_value(value: Any) -> str:
    """A value fit to sit between two þ: line breaks become ®, a þ inside becomes 'th'.

    The format has no escape for its qualifier; manifest.json keeps the exact text.
    """
    text = _text(value).replace("\r\n", "\n").replace("\r", "\n").replace("\n", NEWLINE_MARK)
    return text.replace(QUALIFIER, "th").replace(SEPARATOR, " ")


def concordance_dat(rows: Sequence[dict[str, Any]]) -> bytes:
    def record(values: Sequence[str]) -> str:
        return SEPARATOR.join(f"{QUALIFIER}{v}{QUALIFIER}" for v in values) + "\r\n"

    lines = [_BOM + record(list(DAT_FIELDS))]
    for row in rows:
        lines.append(record([dat_value(row.get(key)) for key in DAT_FIELDS.values()]))
    return "".join(lines).encode("utf-8")


def parse_dat(data: bytes) -> list[dict[str, str]]:
    """Read a DAT back (export verify, tests): header names -> values."""
    text = data.decode("utf-8").removeprefix(_BOM)
    records = [r for r in text.split("\r\n") if r]
    parsed = []
    for rec in records:
        values = []
        for cell in rec.split(SEPARATOR):
            if len(cell) < 2 or cell[0] != QUALIFIER or cell[-1] != QUALIFIER:
                raise ValueError(f"unqualified DAT field {cell[:40]!r}")
            values.append(cell[1:-1])
        parsed.append(values)
    if not parsed:
        raise ValueError("empty DAT file")
    header, *body = parsed
    out = []
    for values in body:
        if len(values) != len(header):
            raise ValueError("a DAT record with the wrong number of fields")
        out.append(dict(zip(header, values, strict=True)))
    return out


# -- mboxrd -----------------------------------------------------------------------
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def mbox_entry(message: bytes, sender: str, when: datetime) -> bytes:
    """One mboxrd entry: the From_ line, the quoted message, a blank line."""
    envelope = "".join(sender.split()) or "MAILER-DAEMON"
    stamp = when.astimezone(UTC).strftime("%a %b %d %H:%M:%S %Y")
    body = message.replace(b"\r\n", b"\n")
    body = _FROM_LINE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return f"From {envelope} {stamp}\n".encode("utf-8", "replace") + body + b"\n"


def mbox_unquote(entry: bytes) -> bytes:
    """The message back out of one mboxrd entry (without its From_ line and blank line)."""
    _, _, rest = entry.partition(b"\n")
    rest = rest.removesuffix(b"\n")
    return re.sub(rb"^>(>*From )", rb"\1", rest, flags=re.MULTILINE)
