"""Production files: Concordance DAT, EDRM XML, manifests and mboxrd, read back."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance import loadfiles

values = st.text(max_size=40)


def row(**overrides: Any) -> dict[str, Any]:
    base = {k: "" for k in loadfiles.MANIFEST_FIELDS}
    base.update(doc_id="QSCAN0000001", event_id="e1", file="messages/QSCAN0000001.eml",
                sha256="a" * 64, size=10, received_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
                subject="Quarterly report")
    base.update(overrides)
    return base


@given(subjects=st.lists(values, min_size=1, max_size=5))
def test_dat_reads_back(subjects: list[str]) -> None:
    rows = [row(doc_id=f"QSCAN{i:07d}", subject=s) for i, s in enumerate(subjects, 1)]
    parsed = loadfiles.parse_dat(loadfiles.concordance_dat(rows))
    assert [p["BEGDOC"] for p in parsed] == [r["doc_id"] for r in rows]
    for p, s in zip(parsed, subjects, strict=True):
        assert p["SUBJECT"] == loadfiles.dat_value(s)
        assert "\n" not in p["SUBJECT"] and "\r" not in p["SUBJECT"]


def test_dat_format_details() -> None:
    data = loadfiles.concordance_dat([row(subject="line one\r\nline two þ", header_to="a@x")])
    assert data.startswith("\ufeff".encode())  # UTF-8 with BOM
    text = data.decode("utf-8")
    header, record, end = text.split("\r\n")
    assert end == ""
    assert header.lstrip("\ufeff").startswith("þBEGDOCþ\x14þENDDOCþ\x14þEVENTIDþ")
    fields = record.split("\x14")
    assert len(fields) == len(loadfiles.DAT_FIELDS)
    assert "þline one®line two thþ" in fields
    assert "þ2026-11-25T10:00:00Zþ" in fields
    with pytest.raises(ValueError):
        loadfiles.parse_dat(b"BEGDOC\x14ENDDOC\r\n")


def test_edrm_xml() -> None:
    rows = [row(header_from="Alice <alice@example.com>", subject="bad \x01 char"),
            row(doc_id="QSCAN0000002", file="", sha256=None)]
    root = ET.fromstring(loadfiles.edrm_xml("Matter 1", rows, description="qscan"))
    assert (root.tag, root.get("MajorVersion"), root.get("MinorVersion")) == ("Root", "1", "2")
    docs = root.findall("./Batch/Documents/Document")
    assert [d.get("DocID") for d in docs] == ["QSCAN0000001", "QSCAN0000002"]
    ext = docs[0].find("./Files/File[@FileType='Native']/ExternalFile")
    assert ext is not None
    assert (ext.get("FilePath"), ext.get("FileName"), ext.get("Hash")) == (
        "messages", "QSCAN0000001.eml", "a" * 64)
    tags = {t.get("TagName"): t.get("TagValue") for t in docs[0].findall("./Tags/Tag")}
    assert tags["#From"] == "Alice <alice@example.com>"
    assert tags["#Subject"] == "bad \ufffd char"  # XML 1.0 cannot carry it
    assert tags["#DateReceived"] == "2026-11-25T10:00:00Z"
    assert docs[1].find("./Files") is None  # a missing message has no native file


def test_manifests() -> None:
    rows = [row(subject="=HYPERLINK(\"http://evil\")")]
    parsed = list(csv.DictReader(io.StringIO(loadfiles.manifest_csv(rows).decode("utf-8"))))
    assert parsed[0]["subject"].startswith("'=")
    doc = json.loads(loadfiles.manifest_json({"matter": "m"}, rows))
    assert doc["matter"] == "m"
    assert doc["documents"][0]["subject"] == "=HYPERLINK(\"http://evil\")"  # JSON stays exact
    assert doc["documents"][0]["received_at"] == "2026-11-25T10:00:00Z"


@given(body=st.lists(st.sampled_from([b"From me", b">From x", b">>From y", b"hello", b"", b"From"]),
                     max_size=8))
def test_mboxrd_quoting_is_reversible(body: list[bytes]) -> None:
    message = b"Subject: t\n\n" + b"\n".join(body) + b"\n"
    entry = loadfiles.mbox_entry(message, "a@example.com", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert entry.startswith(b"From a@example.com Fri Jan 02 03:04:05 2026\n")
    lines = entry.split(b"\n")[1:]
    assert not any(line.startswith(b"From ") for line in lines)
    assert loadfiles.mbox_unquote(entry) == message


@pytest.mark.parametrize(("header", "expected"), [
    ("Wed, 25 Nov 2026 10:00:00 +0100", "2026-11-25T09:00:00Z"),
    ("25 Nov 2026 10:00:00 -0000", "2026-11-25T10:00:00Z"),
    ("not a date", None),
    ("", None),
])
def test_edrm_date_sent_is_iso_8601(header: str, expected: str | None) -> None:
    root = ET.fromstring(loadfiles.edrm_xml("M", [row(header_date=header)], description="qscan"))
    tags = {t.get("TagName"): t for t in root.iter("Tag")}
    if expected is None:
        assert "#DateSent" not in tags
    else:
        assert tags["#DateSent"].get("TagValue") == expected
        assert tags["#DateSent"].get("TagDataType") == "DateTime"
    if header:
        assert tags["QSCAN_DateHeader"].get("TagValue") == header  # the header's own text kept
