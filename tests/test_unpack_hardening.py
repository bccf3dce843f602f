"""No silent skip: compressed streams by content, containers behind prefixes, every unopened
container a finding, and a hard time bound on the unpacker (issue #19, items 2 and 12)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import signal
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable

import libarchive
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanners.internal.policy import InternalSettings
from scanners.internal.scanner import InternalScanner
from scanners.internal.unpack import HardDeadline, hard_deadline
from scanners.mime.filetype import Located, container_kind, is_tar, locate_container, zip_at_end
from scanners.result import Disposition
from tests.internal_corpus import TEXT_PART, attachment, context, multipart, pe_bytes, zip_bytes

# An alarm may fire inside a garbage-collector callback (hypothesis installs one), where Python
# ignores the exception ("unraisable"); the timer repeats every 50 ms for that case.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MiB = 1024 * 1024


# -- fixtures, built here ------------------------------------------------------------------------
def libarchive_bytes(fmt: str, members: dict[str, bytes]) -> bytes:
    out = bytearray()

    def write(data: bytes) -> int:
        out.extend(data)
        return len(data)

    with libarchive.custom_writer(write, fmt) as archive:
        for name, data in members.items():
            archive.add_file_from_memory(name, len(data), data)
    return bytes(out)


def cab_bytes(files: dict[str, bytes]) -> bytes:
    """A Microsoft cabinet with one uncompressed folder (no tool needed)."""
    names = list(files)
    payload = b"".join(files[n] for n in names)
    entries = b""
    offset = 0
    for n in names:
        entries += struct.pack("<IIHHHH", len(files[n]), offset, 0, 0x5A21, 0x6000, 0x20) + n.encode() + b"\0"
        offset += len(files[n])
    blocks = [payload[i : i + 32768] for i in range(0, len(payload), 32768)] or [b""]
    files_at = 36 + 8
    data_at = files_at + len(entries)
    cfdata = b"".join(struct.pack("<IHH", 0, len(b), len(b)) + b for b in blocks)
    header = b"MSCF" + struct.pack("<IIIIIBBHHHHH", 0, data_at + len(cfdata), 0, files_at, 0, 3, 1, 1,
                                   len(names), 0, 0x1234, 0)
    return header + struct.pack("<IHH", data_at, len(blocks), 0) + entries + cfdata


def fat_floppy() -> bytes:
    """The boot sector of a FAT12 floppy image, then some sectors of (incompressible) data."""
    boot = bytearray(512)
    boot[0:3] = b"\xeb\x3c\x90"
    boot[3:11] = b"MSDOS5.0"
    boot[54:62] = b"FAT12   "
    boot[510:512] = b"\x55\xaa"
    return bytes(boot) + os.urandom(64 * 1024)


def udf_image() -> bytes:
    """A UDF-only volume recognition sequence (what Windows mounts, libarchive does not read)."""
    data = bytearray(0xA000)
    for i, mark in enumerate((b"BEA01", b"NSR02", b"TEA01")):
        data[0x8000 + 2048 * i : 0x8006 + 2048 * i] = b"\0" + mark
    return bytes(data)


def dir_only_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("empty-dir")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
    return buf.getvalue()


def zstd_frame(data: bytes) -> bytes:
    """A zstd frame of raw (stored) blocks: what the format allows without a compressor."""
    out = b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([17 << 3])  # no content size; window 128 MiB
    chunks = [data[i : i + 128 * 1024] for i in range(0, len(data), 128 * 1024)] or [b""]
    for i, chunk in enumerate(chunks):
        last = int(i == len(chunks) - 1)
        out += (last | (0 << 1) | (len(chunk) << 3)).to_bytes(3, "little") + chunk
    return out


def zstd_zero_bomb(size: int) -> bytes:
    """``size`` zero bytes as RLE blocks: 4 bytes per 128 KiB."""
    block = 128 * 1024
    n = size // block
    out = b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([17 << 3])
    for i in range(n):
        out += ((i == n - 1) | (1 << 1) | (block << 3)).to_bytes(3, "little") + b"\0"
    return out


def gzip_zero_bomb(size: int) -> bytes:
    """``size`` zero bytes gzipped, built from one compressed MiB repeated (full flushes
    make each MiB's deflate blocks independent), with the true CRC and length."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * MiB
    first = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    body = first + again * (size // MiB - 1) + comp.flush()
    return b"\x1f\x8b\x08\x00\0\0\0\0\x00\x03" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "zst": zstd_frame,
}
ISO = libarchive_bytes("iso9660", {"setup.exe": pe_bytes(), "docs/invoice.pdf.exe": pe_bytes()})
INNER: dict[str, tuple[str, bytes, str]] = {
    # name -> (file name, content, a member path that must be listed below the decompressed file)
    "iso": ("image.iso", ISO, "image.iso!/docs/invoice.pdf.exe"),
    "img": ("image.img", ISO, "image.img!/docs/invoice.pdf.exe"),
    "tar": ("bundle.tar", libarchive_bytes("ustar", {"invoice.pdf.exe": pe_bytes()}), "invoice.pdf.exe"),
    "v7tar": ("old.tar", libarchive_bytes("v7tar", {"invoice.pdf.exe": pe_bytes()}), "invoice.pdf.exe"),
    "cab": ("setup.cab", cab_bytes({"invoice.pdf.exe": pe_bytes()}), "setup.cab!/invoice.pdf.exe"),
}


def scanner(**limits: float) -> InternalScanner:
    return InternalScanner(InternalSettings(**limits))  # type: ignore[arg-type]


def inspect(name: str, data: bytes, **limits: float):  # type: ignore[no-untyped-def]
    return scanner(**limits).inspect(context(multipart(TEXT_PART, attachment(name, data))))


def part_paths(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {p.path for p in report.parts}


def checks(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {h.check for h in report.hits}


# -- compressed streams are identified by what they hold ------------------------------------------
@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
@pytest.mark.parametrize("inner", sorted(INNER))
def test_compressed_iso_img_tar_cab_is_opened(inner: str, ext: str) -> None:
    filename, content, below = INNER[inner]
    packed = COMPRESSORS[ext](content)
    assert container_kind(packed) == "compressed"
    report = inspect(f"{filename}.{ext}", packed)
    assert f"2/{filename}.{ext}!/{below}" in part_paths(report), part_paths(report)
    assert "double-extension" in checks(report)
    assert not checks(report) & {"archive-unreadable", "unscannable"}


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
def test_compressed_pe_is_listed_and_checked(ext: str) -> None:
    exe = pe_bytes(4096)
    report = inspect(f"invoice.pdf.{ext}", COMPRESSORS[ext](exe))
    [member] = [p for p in report.parts if p.path == f"2/invoice.pdf.{ext}!/invoice.pdf"]
    assert member.sha256 == hashlib.sha256(exe).hexdigest() and member.size == len(exe)
    assert "executable-disguised" in checks(report)  # PE content named .pdf


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
def test_zero_led_stream_is_unpacked_and_recorded(ext: str) -> None:
    """1 KiB of zeros then a PE: a tar reader calls that an empty archive; it is one file."""
    payload = b"\0" * 1024 + pe_bytes(2048)
    report = inspect(f"update.bin.{ext}", COMPRESSORS[ext](payload))
    [member] = [p for p in report.parts if "!/" in p.path]
    assert member.path == f"2/update.bin.{ext}!/update.bin"
    assert member.sha256 == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("ext,bomb", [
    ("gz", lambda: gzip_zero_bomb(512 * MiB)),
    ("bz2", lambda: bz2.compress(b"\0" * (8 * MiB), 1) * 64),  # concatenated streams: 512 MiB
    ("xz", lambda: lzma.compress(b"\0" * (8 * MiB), preset=0) * 64),
    ("zst", lambda: zstd_zero_bomb(512 * MiB)),
])
def test_zero_bombs_hit_the_ratio_limit(ext: str, bomb: Callable[[], bytes]) -> None:
    data = bomb()
    assert len(data) < 600_000
    started = time.monotonic()
    report = inspect(f"zeros.{ext}", data)
    assert "unpack-ratio" in checks(report)
    assert time.monotonic() - started < 5
    results = scanner().scan(context(multipart(TEXT_PART, attachment(f"zeros.{ext}", data))))
    assert results[-1].name == "unpack-ratio" and results[-1].disposition == Disposition.QUARANTINE


def test_zero_bomb_hits_the_bytes_limit_when_the_ratio_allows_it() -> None:
    report = inspect("zeros.zst", zstd_zero_bomb(64 * MiB), max_ratio=1e9, max_total_bytes=8 * MiB)
    assert "unpack-bytes" in checks(report)


def test_tar_gz_keeps_its_member_paths() -> None:
    tgz = gzip.compress(libarchive_bytes("ustar", {"var/log/x.log": b"log\n"}))
    assert "2/logs.tgz!/var/log/x.log" in part_paths(inspect("logs.tgz", tgz))


# -- nothing is skipped silently --------------------------------------------------------------------
@pytest.mark.parametrize("name,data,detail", [
    ("floppy.img", fat_floppy(), "disk-image"),
    ("floppy.img.gz", gzip.compress(fat_floppy()), "disk-image"),
    ("disc.iso", udf_image(), "udf"),
    ("disk.vhdx", b"vhdxfile" + b"\0" * 4096, "vhdx"),
    ("disk.vhd", b"\0" * 4096 + b"conectix" + b"\0" * 504, "vhd"),
    ("empty.zip", zip_bytes({}), "no file"),
    ("dirs.tar", dir_only_tar(), "no file"),
    ("dirs.tar.xz", lzma.compress(dir_only_tar()), "no file"),
])
def test_containers_that_cannot_be_looked_into_are_unscannable(name: str, data: bytes, detail: str) -> None:
    report = inspect(name, data)
    [hit] = [h for h in report.hits if h.check == "unscannable"]
    assert detail in hit.detail
    results = scanner().scan(context(multipart(TEXT_PART, attachment(name, data))))
    assert results[-1].name == "unscannable" and results[-1].disposition == Disposition.QUARANTINE


def test_zeros_that_look_like_an_ended_tar_are_one_file() -> None:
    report = inspect("zeros.tar.gz", gzip.compress(b"\0" * 10240))
    [member] = [p for p in report.parts if "!/" in p.path]
    assert member.path == "2/zeros.tar.gz!/zeros.tar" and member.size == 10240


def test_broken_compressed_stream_is_unreadable_and_quarantined() -> None:
    good = gzip.compress(ISO)
    broken = good[:200] + bytes(b ^ 0x55 for b in good[200:400]) + good[400:]
    results = scanner().scan(context(multipart(TEXT_PART, attachment("image.iso.gz", broken))))
    assert results[-1].name == "archive-unreadable" and results[-1].disposition == Disposition.QUARANTINE
    relaxed = InternalScanner(InternalSettings(checks={"archive-unreadable": "record"}))
    results = relaxed.scan(context(multipart(TEXT_PART, attachment("image.iso.gz", broken))))
    assert all(r.disposition == Disposition.NONE for r in results)


# -- containers behind prefixes (SFX, junk, zeros) --------------------------------------------------
EVIL_ZIP = zip_bytes({"invoice.pdf.exe": pe_bytes(), "readme.txt": b"hello\n"})


@pytest.mark.parametrize("prefix", [16, 1000, 5000, 70_000, 300_000])
@pytest.mark.parametrize("filler", [b"J", b"\0"])
def test_zip_behind_a_prefix_is_opened(prefix: int, filler: bytes) -> None:
    data = filler * prefix + EVIL_ZIP
    assert locate_container(data) == Located("zip")
    report = inspect("invoice.zip", data)
    assert "2/invoice.zip!/invoice.pdf.exe" in part_paths(report)
    assert "double-extension" in checks(report)
    # the same inside another archive, and compressed
    report = inspect("outer.zip", zip_bytes({"inner.bin": data}))
    assert "2/outer.zip!/inner.bin!/invoice.pdf.exe" in part_paths(report)
    report = inspect("x.zip.gz", gzip.compress(data))
    assert "2/x.zip.gz!/x.zip!/invoice.pdf.exe" in part_paths(report)


def test_sfx_executable_with_a_zip_is_opened() -> None:
    sfx = pe_bytes() + os.urandom(3 * MiB) + EVIL_ZIP  # bigger than the decision window: kept whole
    report = inspect("outer.zip", zip_bytes({"setup.exe": sfx}, zipfile.ZIP_STORED))
    assert "2/outer.zip!/setup.exe!/invoice.pdf.exe" in part_paths(report)


def test_member_too_big_to_keep_that_ends_with_a_zip_is_flagged() -> None:
    junk = os.urandom(2 * MiB)
    report = inspect("outer.zip", zip_bytes({"photo.dat": junk + EVIL_ZIP}, zipfile.ZIP_STORED))
    [hit] = [h for h in report.hits if h.check == "unscannable"]
    assert hit.path == "2/outer.zip!/photo.dat" and "ends with a zip" in hit.detail


@pytest.mark.parametrize("prefix", [b"MZ" + b"\0" * 100, pe_bytes(40_000), b"\0" * 70_000])
def test_7z_and_cab_behind_a_prefix_are_opened(prefix: bytes) -> None:
    seven = libarchive_bytes("7zip", {"invoice.pdf.exe": pe_bytes()})
    report = inspect("setup.exe", prefix + seven)
    assert "2/setup.exe!/invoice.pdf.exe" in part_paths(report)
    report = inspect("setup.exe", prefix + cab_bytes({"invoice.pdf.exe": pe_bytes()}))
    assert "2/setup.exe!/invoice.pdf.exe" in part_paths(report)


def test_junk_before_a_7z_named_as_one_is_opened() -> None:
    seven = libarchive_bytes("7zip", {"invoice.pdf.exe": pe_bytes()})
    report = inspect("invoice.7z", os.urandom(5000) + seven)
    assert "2/invoice.7z!/invoice.pdf.exe" in part_paths(report)
    # only executables and archive names are searched: a PDF reader never reaches it
    assert locate_container(os.urandom(5000) + seven, "invoice.pdf") is None


def test_stray_signatures_are_not_archives() -> None:
    # signatures without the structure around them: a JPEG that happens to hold them
    blob = b"\xff\xd8\xff\xe0" + os.urandom(5000) + b"7z\xbc\xaf\x27\x1c" + os.urandom(40) + b"MSCF\0\0\0\0" \
        + os.urandom(100) + b"Rar!\x1a\x07\x00" + b"\0" * 10 + b"PK\x05\x06" + b"\0" * 18
    assert locate_container(blob, "photo.dat") is None
    assert not checks(inspect("photo.dat", blob))


def test_too_many_false_signatures_is_unscannable() -> None:
    blob = b"\x00\x01" + b"7z\xbc\xaf\x27\x1c\0\0" * 2000
    assert locate_container(blob, "data.bin") == Located("too-many-signatures")
    assert "unscannable" in checks(inspect("data.bin", blob))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.binary(max_size=3000), comment=st.binary(max_size=200))
def test_any_prefix_before_a_zip_is_found(prefix: bytes, comment: bytes) -> None:
    data = bytearray(EVIL_ZIP)
    struct.pack_into("<H", data, len(data) - 2, len(comment))
    full = prefix + bytes(data) + comment
    assert locate_container(full) == Located("zip") or container_kind(full) is not None
    assert zip_at_end(full[-70_000:], whole=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4000))
def test_detection_never_raises(data: bytes) -> None:
    locate_container(data, "x.bin")
    zip_at_end(data, whole=False)
    is_tar(data)


# -- the hard time bound ------------------------------------------------------------------------------
def test_hard_deadline_interrupts_a_loop_that_checks_nothing() -> None:
    started = time.monotonic()
    with pytest.raises(HardDeadline), hard_deadline(0.2) as armed:
        assert armed
        while True:
            try:
                sum(range(1000))
            except Exception:  # a library swallowing errors does not swallow this
                pass
    assert time.monotonic() - started < 1.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None, signal.default_int_handler)


def test_hard_deadline_keeps_an_outer_timer() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with hard_deadline(5.0):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0.3 < left <= 0.5
        time.sleep(0.6)
        assert fired == [signal.SIGALRM]
        # an outer timer due first is honoured: the inner block is stopped, the outer fires after
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(HardDeadline), hard_deadline(5.0):
            time.sleep(1)
        time.sleep(0.05)
        assert fired == [signal.SIGALRM, signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
