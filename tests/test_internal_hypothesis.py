"""Generated MIME trees and raw bytes: the internal scanner never raises and never errs internally."""

from __future__ import annotations

import base64
import io
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.mime import walk_parts
from scanners.base import ScanContext
from scanners.internal.format_checks import RENAME_PREFIX, rename_repeated, repeated_offsets
from scanners.internal.policy import InternalSettings
from scanners.internal.rawmime import walk_headers
from scanners.internal.scanner import InternalScanner
from scanners.mime.parse import parse
from tests.internal_corpus import HEAD, pe_bytes, tnef_bytes, uuencoded

SCANNER = InternalScanner(InternalSettings(max_depth=4, max_members=50))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.sampled_from([
    "a.txt", "invoice.pdf.exe", "photo.jpg   .scr", "x" * 300, "file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}",
    "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=", "a\"b.zip", "", "winmail.dat", "fwd.eml", "caf\u00e9.doc",
])
ctypes_ = st.sampled_from([
    "text/plain", "text/html", "application/octet-stream", "application/zip", "image/gif", "audio/wav",
    "application/ms-tnef", "message/rfc822", "text/plain; charset=\"utf-8\"", "application/(x)pdf",
    "garbage", "",
])
junk_lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")), max_size=3)
blobs = st.one_of(
    st.binary(max_size=300),
    st.just(pe_bytes()),
    st.builds(lambda n, d: tnef_bytes({n or "x": d}), names, st.binary(max_size=50)),
    st.builds(lambda n, d: b"text\n" + uuencoded(n or "x", d), names, st.binary(max_size=100)),
)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, (name, data) in enumerate(members):
            z.writestr(f"{i}-{name}" if name else f"{i}", data)
    return buf.getvalue()


payloads = st.recursive(
    blobs, lambda inner: st.lists(st.tuples(names, inner), min_size=1, max_size=3).map(_zip), max_leaves=6
)


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    head = b""
    for _ in range(draw(st.integers(0, 2))):
        ctype = draw(ctypes_).encode()
        name = draw(names).encode("utf-8")
        head += b"Content-Type: " + ctype + (b'; name="' + name + b'"' if draw(st.booleans()) else b"") + b"\n"
    if draw(st.booleans()):
        head += b'Content-Disposition: attachment; filename="' + draw(names).encode() + b'"\n'
    for line in draw(junk_lines):
        head += line + b"\n"
    data = draw(payloads)
    if draw(st.booleans()):
        head += b"Content-Transfer-Encoding: base64\n"
        data = base64.encodebytes(data)
    return head + b"\n" + data


def multipart_of(children: list[bytes], boundary: bytes, close: bool) -> bytes:
    out = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\npreamble\n'
    for c in children:
        out += b"--" + boundary + b"\n" + c + b"\n"
    return out + (b"--" + boundary + b"--\n" if close else b"")


boundaries = st.sampled_from([b"b1", b"b2", b"=_x", b"b" * 260, b"a b", b""])
entities = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.builds(multipart_of, st.lists(inner, max_size=4), boundaries, st.booleans()),
        inner.map(lambda e: b"Content-Type: message/rfc822\n\n" + HEAD + e),
    ),
    max_leaves=8,
)


def ctx_for(raw: bytes) -> ScanContext:
    try:
        msg = parse(raw)
        _meta, parts, _defects = walk_parts(msg)
    except Exception:
        msg, parts = None, []
    return ScanContext(raw=raw, message=msg, parts=parts, sender="a@example.com", recipients=["b@example.org"],
                       client_ip="192.0.2.1", relay=False, size=len(raw), max_size=1 << 30)


def _no_internal_error(raw: bytes) -> None:
    ctx = ctx_for(raw)
    results = SCANNER.scan(ctx)
    assert all(r.name != "internal-error" for r in results), [r.detail for r in results]
    for r in results:
        if r.transform is not None:
            out = r.transform(raw)
            assert out.replace(RENAME_PREFIX, b"") == raw.replace(RENAME_PREFIX, b"")


@SETTINGS
@given(entities, st.booleans())
def test_generated_mime_trees_never_raise(entity: bytes, crlf: bool) -> None:
    raw = HEAD + entity
    _no_internal_error(raw.replace(b"\n", b"\r\n") if crlf else raw)


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _no_internal_error(raw)
    _no_internal_error(HEAD + b"Content-Type: multipart/mixed; boundary=x\n\n--x\n" + raw)


@SETTINGS
@given(entities)
def test_rename_leaves_no_repeated_header_and_only_inserts_the_prefix(entity: bytes) -> None:
    raw = HEAD + entity
    out = rename_repeated(raw)
    assert repeated_offsets(walk_headers(out)) == []
    assert out.replace(RENAME_PREFIX, b"") == raw.replace(RENAME_PREFIX, b"")
    assert len(out) - len(raw) == len(RENAME_PREFIX) * len(repeated_offsets(walk_headers(raw)))
