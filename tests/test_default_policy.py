"""The default policy bans executables and scripts at any depth (issue 19, item 3).

A bare ``setup.exe`` or ``screensaver.scr`` at top level, inside a zip or 7z, uuencoded in a
body or inside a forwarded message must not be delivered by the default configuration; a PE,
ELF or Mach-O file is banned whatever its name. The allow-list and the per-domain override
let a site take exceptions back, and only those.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import libarchive
import pytest

from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from qscan.config import Config
from qscan.testing.daemon import Harness, running_daemon
from scanners.internal.checks import (
    CHECKS,
    DEFAULT_DANGEROUS_EXTENSIONS,
    DISK_IMAGE_EXTENSIONS,
    EXECUTABLE_FORMATS,
)
from scanners.internal.policy import InternalSettings
from scanners.internal.scanner import InternalScanner
from scanners.result import Disposition, ScanResult
from tests.internal_corpus import (
    ELF,
    HEAD,
    TEXT_PART,
    attachment,
    b64,
    context,
    encrypted_zip,
    multipart,
    pe_bytes,
    tar_gz,
    uuencoded,
    zip_bytes,
)

MACHO = b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + b"\0" * 120
SCR_BYTES = pe_bytes()  # a screen saver is a PE image


def seven_zip(members: dict[str, bytes], fmt: str = "7zip") -> bytes:
    out = bytearray()

    def write(data: bytes) -> int:
        out.extend(data)
        return len(data)

    with libarchive.custom_writer(write, fmt) as archive:
        for name, data in members.items():
            archive.add_file_from_memory(name, len(data), data)
    return bytes(out)


def forwarded(inner: bytes) -> bytes:
    """A message that forwards ``inner`` as a message/rfc822 attachment."""
    return multipart(TEXT_PART, b"Content-Type: message/rfc822\nContent-Disposition: attachment\n\n" + inner)


INNER_WITH_EXE = multipart(TEXT_PART, attachment("setup.exe", pe_bytes()), boundary=b"=_inner")

# name -> message: each must be stopped by the default policy
BANNED: dict[str, bytes] = {
    "top-level-exe": multipart(TEXT_PART, attachment("setup.exe", pe_bytes())),
    "top-level-exe-honest-type": multipart(
        TEXT_PART, attachment("setup.exe", pe_bytes(), b"application/x-msdownload")),
    "top-level-scr": multipart(TEXT_PART, attachment("screensaver.scr", SCR_BYTES)),
    "scr-not-a-pe": multipart(TEXT_PART, attachment("screensaver.scr", b"not a real image\n")),
    "exe-in-zip": multipart(TEXT_PART, attachment("tools.zip", zip_bytes({"bin/setup.exe": pe_bytes()}),
                                                  b"application/zip")),
    "scr-in-7z": multipart(TEXT_PART, attachment("fun.7z", seven_zip({"screensaver.scr": SCR_BYTES}),
                                                 b"application/x-7z-compressed")),
    "vbs-in-tar-gz": multipart(TEXT_PART, attachment("x.tar.gz", tar_gz({"run.vbs": b"MsgBox 1\n"}),
                                                     b"application/gzip")),
    "exe-uuencoded": HEAD + b"Content-Type: text/plain\n\nSee below.\n\n" + uuencoded("setup.exe", pe_bytes()),
    "scr-uuencoded": HEAD + b"Content-Type: text/plain\n\n" + uuencoded("screensaver.scr", SCR_BYTES),
    "exe-in-forwarded-message": forwarded(INNER_WITH_EXE),
    "exe-in-forwarded-message-in-zip": multipart(
        TEXT_PART, attachment("fwd.zip", zip_bytes({"fwd.eml": INNER_WITH_EXE}), b"application/zip")),
    "pe-without-extension": multipart(TEXT_PART, attachment("data.bin", pe_bytes())),
    "elf-without-name": multipart(TEXT_PART, b"Content-Type: application/octet-stream\n"
                                             b"Content-Transfer-Encoding: base64\n\n"
                                  + b64(ELF)),
    "macho-in-zip": multipart(TEXT_PART, attachment("mac.zip", zip_bytes({"tool": MACHO}), b"application/zip")),
    "upper-case-and-trailing-dot": multipart(TEXT_PART, attachment("SETUP.EXE.", b"x")),
    "double-extension-script": multipart(TEXT_PART, attachment("invoice.pdf.js", b"var a;\n")),
    "exe-in-iso": multipart(TEXT_PART, attachment("disc.iso", seven_zip({"setup.exe": pe_bytes()}, "iso9660"))),
    "lnk-in-iso": multipart(TEXT_PART, attachment("disc.iso", seven_zip({"invoice.lnk": b"L\0\0\0"}, "iso9660"))),
    "disk-image-double-extension": multipart(TEXT_PART, attachment("invoice.pdf.iso", b"x")),
    "only-the-content-type-name": multipart(
        TEXT_PART, b'Content-Type: application/octet-stream; name="run.bat"\n\n@echo off\n'),
}

# harmless mail the default policy must keep delivering
ALLOWED: dict[str, bytes] = {
    "pdf": multipart(TEXT_PART, attachment("report.2024.pdf", b"%PDF-1.4\n", b"application/pdf")),
    "tar-gz-of-text": multipart(TEXT_PART, attachment("logs.tar.gz", tar_gz({"a.log": b"x\n"}),
                                                      b"application/gzip")),
    "zip-of-documents": multipart(TEXT_PART, attachment("docs.zip", zip_bytes({"a.txt": b"x\n",
                                                                               "b.csv": b"1,2\n"}))),
    "exe-in-the-middle-of-a-name": multipart(TEXT_PART, attachment("exe.notes.txt", b"x\n", b"text/plain")),
    "shell-script-body": HEAD + b"Content-Type: text/plain\n\n#!/bin/sh\necho this is how\n",
    "plain": HEAD + b"Content-Type: text/plain\n\nHi.\n",
    # a disk image is a container: opened, and judged by what it holds
    "iso-of-documents": multipart(TEXT_PART, attachment("manuals.iso", seven_zip(
        {"docs/guide.pdf": b"%PDF-1.4\n", "readme.txt": b"hi\n"}, "iso9660"))),
}


def decision(results: list[ScanResult]) -> ScanResult | None:
    return next((r for r in results if r.disposition not in (Disposition.NONE, Disposition.DELIVER)), None)


def scan(raw: bytes, opts: InternalSettings | None = None, recipients: list[str] | None = None
         ) -> list[ScanResult]:
    return InternalScanner(opts).scan(context(raw, recipients=recipients))


@pytest.mark.parametrize("case", sorted(BANNED))
def test_default_policy_stops_executables_at_any_depth(case: str) -> None:
    results = scan(BANNED[case])
    decided = decision(results)
    assert decided is not None, f"{case} delivered: {[(r.name, r.detail) for r in results]}"
    assert decided.disposition == Disposition.QUARANTINE and decided.verdict.value == "policy"
    assert decided.name in ("banned-extension", "executable-content", "double-extension")


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_default_policy_delivers_harmless_mail(case: str) -> None:
    results = scan(ALLOWED[case])
    assert decision(results) is None, [(r.name, r.detail) for r in results]
    assert not [r for r in results if r.name in ("banned-extension", "executable-content")]


@pytest.mark.parametrize("ext", DEFAULT_DANGEROUS_EXTENSIONS)
def test_every_default_extension_is_banned_at_top_level_and_in_an_archive(ext: str) -> None:
    name = f"file.{ext}"
    for raw in (multipart(TEXT_PART, attachment(name, b"harmless bytes\n")),
                multipart(TEXT_PART, attachment("a.zip", zip_bytes({f"dir/{name}": b"x\n"}), b"application/zip"))):
        decided = decision(scan(raw))
        assert decided is not None and decided.name == "banned-extension", ext
        assert f".{ext}" in decided.detail


def test_disk_images_are_containers_not_banned_names() -> None:
    assert not set(DISK_IMAGE_EXTENSIONS) & set(DEFAULT_DANGEROUS_EXTENSIONS)
    decided = decision(scan(BANNED["exe-in-iso"]))
    assert decided is not None and decided.detail.startswith("2/disc.iso!/setup.exe: ")


def test_the_finding_names_the_part_and_the_extension() -> None:
    results = scan(BANNED["exe-in-zip"])
    hit = next(r for r in results if r.name == "banned-extension")
    assert hit.detail == "2/tools.zip!/bin/setup.exe: setup.exe: .exe is banned"
    content = next(r for r in results if r.name == "executable-content")
    assert content.detail == "2/tools.zip!/bin/setup.exe: pe executable named setup.exe"


def test_executable_content_is_named_by_its_format() -> None:
    for case, kind in (("pe-without-extension", "pe"), ("elf-without-name", "elf"), ("macho-in-zip", "mach-o")):
        decided = decision(scan(BANNED[case]))
        assert decided is not None and decided.name == "executable-content", case
        assert f"{kind} executable" in decided.detail
    assert set(EXECUTABLE_FORMATS) == {"pe", "elf", "mach-o"}


def test_a_disguise_keeps_its_more_specific_reason() -> None:
    raw = multipart(TEXT_PART, attachment("invoice.pdf.exe", pe_bytes()))
    decided = decision(scan(raw))
    assert decided is not None and decided.name == "double-extension"
    names = {r.name for r in scan(raw)}
    assert {"banned-extension", "executable-content"} <= names  # recorded beside it


def test_a_version_number_is_no_disguise_but_the_exe_is_still_banned() -> None:
    results = scan(multipart(TEXT_PART, attachment("setup-1.2.exe", pe_bytes(), b"application/x-msdownload")))
    names = {r.name for r in results}
    assert "double-extension" not in names and {"banned-extension", "executable-content"} <= names


def test_a_password_protected_archive_shows_its_banned_member_names() -> None:
    raw = multipart(TEXT_PART, attachment("secret.zip", encrypted_zip({"a.exe": b"MZ" * 20}), b"application/zip"))
    decided = decision(scan(raw))
    assert decided is not None and decided.name == "banned-extension"
    assert decided.detail == "2/secret.zip!/a.exe: a.exe: .exe is banned"


def test_the_docs_table_lists_exactly_the_defaults() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "policy.md").read_text()
    section = doc.split("## Default policy", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = [tok for cell in rows for tok in re.findall(r"`([^`]+)`", cell)]
    assert sorted(listed) == sorted(DEFAULT_DANGEROUS_EXTENSIONS)
    assert "| content: PE, ELF, Mach-O |" in section


def test_the_new_checks_default_to_quarantine() -> None:
    assert CHECKS["banned-extension"][:2] == ("policy", "quarantine")
    assert CHECKS["executable-content"][:2] == ("policy", "quarantine")


# -- exceptions: allow-list, per-domain, per-check action, a rule -----------------------------
def test_allow_list_takes_an_extension_back_and_its_executable_content_with_it() -> None:
    opts = InternalSettings(allow_banned=frozenset({"exe"}))
    assert decision(scan(BANNED["top-level-exe"], opts)) is None
    assert decision(scan(BANNED["exe-in-zip"], opts)) is None
    # ... but not a PE under another name, another extension, or a disguise
    for case in ("pe-without-extension", "top-level-scr"):
        assert decision(scan(BANNED[case], opts)) is not None, case
    disguised = multipart(TEXT_PART, attachment("invoice.pdf.exe", pe_bytes()))
    decided = decision(scan(disguised, opts))
    assert decided is not None and decided.name == "double-extension"


def test_allow_list_takes_an_executable_format_back() -> None:
    opts = InternalSettings(allow_banned=frozenset({"elf"}))
    assert decision(scan(BANNED["elf-without-name"], opts)) is None
    assert decision(scan(BANNED["pe-without-extension"], opts)) is not None


def test_per_domain_override_applies_only_when_every_recipient_may_receive_it() -> None:
    opts = InternalSettings(allow_banned_by_domain={"build.example.com": frozenset({"exe", "msi"}),
                                                   "*.lab.example.com": frozenset({"pe"})})
    raw = BANNED["top-level-exe"]
    assert decision(scan(raw, opts, ["ci@build.example.com"])) is None
    assert decision(scan(raw, opts, ["ci@Build.Example.COM", "qa@build.example.com"])) is None
    assert decision(scan(raw, opts, ["ci@build.example.com", "bob@example.org"])) is not None
    assert decision(scan(raw, opts, ["bob@example.org"])) is not None
    assert decision(scan(BANNED["top-level-scr"], opts, ["ci@build.example.com"])) is not None
    assert decision(scan(BANNED["pe-without-extension"], opts, ["x@a.lab.example.com"])) is None
    # a domain may combine grants from several patterns
    both = InternalSettings(allow_banned_by_domain={"build.example.com": frozenset({"exe"}),
                                                   "*.example.com": frozenset({"scr"})})
    mixed = multipart(TEXT_PART, attachment("setup.exe", b"x"), attachment("fun.scr", b"y"))
    assert decision(scan(mixed, both, ["ci@build.example.com"])) is None


def test_check_actions_still_apply_to_the_new_checks() -> None:
    off = InternalSettings(checks={"banned-extension": "record", "executable-content": "off"})
    results = scan(BANNED["top-level-exe"], off)
    assert decision(results) is None
    assert [r.name for r in results] == ["banned-extension"]
    reject = InternalSettings(checks={"banned-extension": "reject"})
    decided = decision(scan(BANNED["top-level-scr"], reject))
    assert decided is not None and decided.disposition == Disposition.REJECT


def test_config_keys_reach_the_scanner(tmp_path: Path) -> None:
    cfg = Config.model_validate({"internal": {
        "allow_banned": [".EXE", " msi "],
        "allow_banned_by_domain": {"Build.Example.com": ["exe"]},
    }})
    opts = cfg.internal
    assert opts.allow_banned == frozenset({"exe", "msi"})
    assert opts.allow_banned_by_domain == {"build.example.com": frozenset({"exe"})}
    assert decision(scan(BANNED["top-level-exe"], opts)) is None


def test_config_refuses_an_allow_entry_that_bans_nothing() -> None:
    with pytest.raises(ValueError, match="allow_banned"):
        Config.model_validate({"internal": {"allow_banned": ["pdf"]}})
    with pytest.raises(ValueError, match="allow_banned_by_domain"):
        Config.model_validate({"internal": {"allow_banned_by_domain": {"example.com": ["txt"]}}})
    with pytest.raises(ValueError, match="is not a domain"):
        Config.model_validate({"internal": {"allow_banned_by_domain": {"[z-a].example.com": ["exe"]}}})


# -- through the daemon, default configuration ------------------------------------------------
@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("default-policy")
    extra = '[internal.allow_banned_by_domain]\n"build.example.com" = ["exe"]\n'
    with running_daemon(root, extra=extra) as h:
        yield h


def last_scanned(h: Harness) -> MessageScanned:
    with Journal(h.journal) as j:
        events = [from_json(e.body, e.raw) for e in j.read(0, 100000)]
    return [e for e in events if isinstance(e, MessageScanned)][-1]


@pytest.mark.integration
@pytest.mark.parametrize("case", ["top-level-exe", "scr-in-7z", "exe-uuencoded", "exe-in-forwarded-message"])
def test_daemon_quarantines_banned_files_by_default(daemon: Harness, case: str) -> None:
    before = len(daemon.recorded())
    res = daemon.send(BANNED[case], TCPREMOTEIP="203.0.113.9")
    assert res.code == 0, res  # accepted into the journal, kept for the quarantine
    assert len(daemon.recorded()) == before  # not handed to qmail-queue
    ev = last_scanned(daemon)
    assert (ev.category, ev.action) == ("policy", "quarantine")
    assert ev.reason in ("banned-extension", "executable-content")


@pytest.mark.integration
def test_daemon_delivers_to_a_domain_allowed_to_receive_exe(daemon: Harness) -> None:
    before = len(daemon.recorded())
    res = daemon.send(BANNED["top-level-exe"], recipients=[b"ci@build.example.com"], TCPREMOTEIP="203.0.113.9")
    assert res.code == 0, res
    assert len(daemon.recorded()) == before + 1
    ev = last_scanned(daemon)
    assert (ev.category, ev.action) == ("clean", "deliver")
