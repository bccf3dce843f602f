"""Bounded unpacking: archives (libarchive), TNEF, uuencode, attached mail; every limit a finding."""

from __future__ import annotations

import gzip
import hashlib
import zipfile

import libarchive
import pytest

from scanners.internal.policy import InternalSettings
from scanners.internal.scanner import InternalScanner
from scanners.internal.unpack import clean_name
from scanners.result import Disposition, Verdict
from tests.internal_corpus import (
    HEAD,
    TEXT_PART,
    attachment,
    context,
    encrypted_zip,
    multipart,
    nested_zip,
    pe_bytes,
    tar_gz,
    tnef_bytes,
    uuencoded,
    zip_bytes,
)


def scanner(**limits: float) -> InternalScanner:
    return InternalScanner(InternalSettings(**limits))  # type: ignore[arg-type]


def libarchive_bytes(fmt: str, members: dict[str, bytes], **kw: str) -> bytes:
    out = bytearray()

    def write(data: bytes) -> int:
        out.extend(data)
        return len(data)

    with libarchive.custom_writer(write, fmt, **kw) as archive:
        for name, data in members.items():
            archive.add_file_from_memory(name, len(data), data)
    return bytes(out)


def paths(report) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {p.path: p for p in report.parts}


def hits(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {h.check for h in report.hits}


def test_zip_members_land_in_the_part_list_with_hashes_and_types() -> None:
    exe = pe_bytes()
    raw = multipart(TEXT_PART, attachment("invoice.zip", zip_bytes({"docs/a.exe": exe, "b.txt": b"hello\n"}),
                                          b"application/zip"))
    report = scanner().inspect(context(raw))
    found = paths(report)
    member = found["2/invoice.zip!/docs/a.exe"]
    assert member.filename == "a.exe" and member.size == len(exe)  # type: ignore[attr-defined]
    assert member.sha256 == hashlib.sha256(exe).hexdigest()  # type: ignore[attr-defined]
    assert member.detected_type in ("application/vnd.microsoft.portable-executable",  # type: ignore[attr-defined]
                                    "application/x-dosexec")
    assert found["2/invoice.zip!/b.txt"].detected_type == "text/plain"  # type: ignore[attr-defined]
    assert found["2"].detected_type == "application/zip"  # type: ignore[attr-defined]  # refines the MIME part
    # the member is an executable: banned by name and by content (tests/test_default_policy.py)
    assert {(h.check, h.path) for h in report.hits} == {
        ("banned-extension", "2/invoice.zip!/docs/a.exe"), ("executable-content", "2/invoice.zip!/docs/a.exe")}


def test_nested_archives_and_formats_7z_tar_gz_gzip() -> None:
    seven = libarchive_bytes("7zip", {"inner/evil.exe": pe_bytes()})
    outer = zip_bytes({"bundle.7z": seven, "logs.tar.gz": tar_gz({"var/log/x.log": b"log\n"}),
                       "single.txt.gz": gzip.compress(b"just one file\n")})
    report = scanner().inspect(context(multipart(TEXT_PART, attachment("outer.zip", outer))))
    found = paths(report)
    assert "2/outer.zip!/bundle.7z!/inner/evil.exe" in found
    assert "2/outer.zip!/logs.tar.gz!/var/log/x.log" in found
    assert found["2/outer.zip!/single.txt.gz!/single.txt"].size == len(b"just one file\n")  # type: ignore[attr-defined]
    depths = {i.path: i.depth for i in report.items}
    assert depths["2/outer.zip!/bundle.7z!/inner/evil.exe"] == 2


def test_iso_image_members_listed() -> None:
    iso = libarchive_bytes("iso9660", {"setup.exe": pe_bytes(), "docs/readme.txt": b"hi\n"})
    report = scanner().inspect(context(multipart(TEXT_PART, attachment("image.iso", iso))))
    assert {"2/image.iso!/setup.exe", "2/image.iso!/docs/readme.txt"} <= set(paths(report))
    assert paths(report)["2"].detected_type == "application/x-iso9660-image"  # type: ignore[attr-defined]


def test_double_extension_inside_an_archive_is_caught() -> None:
    raw = multipart(TEXT_PART, attachment("docs.zip", zip_bytes({"scan.pdf.exe": b"MZ"})))
    results = scanner().scan(context(raw))
    [decided] = [r for r in results if r.disposition != Disposition.NONE]
    assert decided.name == "double-extension" and "2/docs.zip!/scan.pdf.exe" in decided.detail


def test_depth_limit() -> None:
    raw = multipart(TEXT_PART, attachment("deep.zip", nested_zip(6)))
    report = scanner(max_depth=3).inspect(context(raw))
    assert "unpack-depth" in hits(report)
    deepest = max(i.depth for i in report.items)
    assert deepest == 3
    report = scanner(max_depth=10).inspect(context(raw))
    assert "unpack-depth" not in hits(report)
    assert any(p.endswith("level-6.zip!/payload.txt") for p in paths(report))


def test_member_count_limit() -> None:
    raw = multipart(TEXT_PART, attachment("many.zip", zip_bytes({f"f{i}.txt": b"x" for i in range(30)})))
    report = scanner(max_members=10).inspect(context(raw))
    assert "unpack-members" in hits(report)
    assert len([p for p in paths(report) if "!/" in p]) == 10
    results = scanner(max_members=10).scan(context(raw))
    assert results[-1].name == "unpack-members" and results[-1].disposition == Disposition.QUARANTINE
    assert results[-1].verdict == Verdict.MALFORMED


def test_zip_bomb_ratio_limit() -> None:
    bomb = zip_bytes({"zeros.bin": b"\0" * (8 * 1024 * 1024)})
    assert len(bomb) < 20_000
    report = scanner().inspect(context(multipart(TEXT_PART, attachment("bomb.zip", bomb))))
    assert "unpack-ratio" in hits(report)
    # the same bytes below the ratio floor (1 MiB expanded) are fine
    small = zip_bytes({"zeros.bin": b"\0" * (512 * 1024)})
    report = scanner().inspect(context(multipart(TEXT_PART, attachment("ok.zip", small))))
    assert "unpack-ratio" not in hits(report)


def test_total_bytes_limit() -> None:
    data = zip_bytes({f"r{i}.bin": bytes(range(256)) * 1024 for i in range(4)}, zipfile.ZIP_STORED)
    report = scanner(max_total_bytes=600_000).inspect(context(multipart(TEXT_PART, attachment("big.zip", data))))
    assert "unpack-bytes" in hits(report)


def test_time_limit() -> None:
    raw = multipart(TEXT_PART, attachment("a.zip", zip_bytes({"a.txt": b"x"})))
    report = scanner(max_time=0).inspect(context(raw))
    assert "unpack-time" in hits(report)


def test_password_protected_zip_recorded_not_blocked_by_default() -> None:
    # an innocent name: a visible .exe name is banned by default (tests/test_default_policy.py)
    enc = libarchive_bytes("zip", {"invoice.dat": pe_bytes()}, passphrase="secret",
                           options="encryption=aes256")
    raw = multipart(TEXT_PART, attachment("secret.zip", enc, b"application/zip"))
    results = scanner().scan(context(raw))
    assert [(r.name, r.disposition) for r in results] == [("password-protected-archive", Disposition.NONE)]
    member = next(i for i in scanner().inspect(context(raw)).items if i.in_archive)
    assert member.encrypted and member.size == len(pe_bytes())
    blocking = InternalScanner(InternalSettings(checks={"password-protected-archive": "quarantine"}))
    [r] = blocking.scan(context(raw))
    assert r.disposition == Disposition.QUARANTINE and r.verdict == Verdict.POLICY


def test_legacy_flagged_zip_is_detected_too() -> None:
    raw = multipart(TEXT_PART, attachment("old.zip", encrypted_zip({"a.txt": b"x"})))
    assert "password-protected-archive" in hits(scanner().inspect(context(raw)))


def test_tnef_winmail_dat_attachments_unpacked() -> None:
    blob = tnef_bytes({"budget.xls.exe": b"MZ payload", "notes.txt": b"plain notes\n"})
    raw = multipart(TEXT_PART, attachment("winmail.dat", blob, b"application/ms-tnef"))
    report = scanner().inspect(context(raw))
    found = paths(report)
    assert found["2/winmail.dat!/notes.txt"].size == len(b"plain notes\n")  # type: ignore[attr-defined]
    assert "2/winmail.dat!/budget.xls.exe" in found
    assert "double-extension" in hits(report)


def test_uuencoded_file_in_text_body_unpacked() -> None:
    exe = pe_bytes()
    raw = HEAD + b"Content-Type: text/plain\n\nSee attached.\n\n" + uuencoded("photo.jpg", exe)
    report = scanner().inspect(context(raw))
    found = paths(report)
    member = found["1!/photo.jpg"]
    assert member.size == len(exe) and member.sha256 == hashlib.sha256(exe).hexdigest()  # type: ignore[attr-defined]
    assert hits(report) == {"executable-disguised", "executable-content"}  # a PE calling itself a JPEG


def test_attached_mail_inside_an_archive_is_checked_as_mail() -> None:
    inner = multipart(TEXT_PART, attachment("bad.pdf.scr", b"x"), boundary=b"=_inner")
    raw = multipart(TEXT_PART, attachment("fwd.zip", zip_bytes({"fwd.eml": inner})))
    report = scanner().inspect(context(raw))
    found = paths(report)
    assert "2/fwd.zip!/fwd.eml!/2" in found
    [hit] = [h for h in report.hits if h.check == "double-extension"]
    assert hit.path == "2/fwd.zip!/fwd.eml!/2"


def test_corrupt_archive_is_a_finding_not_an_error() -> None:
    raw = multipart(TEXT_PART, attachment("x.zip", b"PK\x03\x04" + b"\0" * 10 + b"garbage" * 20))
    results = scanner().scan(context(raw))
    assert [r.name for r in results] == ["archive-unreadable"]
    assert all(r.error is None for r in results)


@pytest.mark.parametrize("name,expected", [
    ("a/b.exe", "a/b.exe"), ("/etc/passwd", "etc/passwd"), ("../../x", "../../x"),
    ("evil\r\nX-Header: 1", "evil??X-Header: 1"), ("", "unnamed"), (b"caf\xe9.txt", "caf\ufffd.txt"),
])
def test_member_names_are_cleaned_for_paths_and_logs(name: str | bytes, expected: str) -> None:
    assert clean_name(name) == expected
