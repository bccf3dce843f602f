"""The scan stage's MIME helpers never raise, whatever the bytes."""

from __future__ import annotations

import base64
import binascii
import quopri

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest.mime import header_summary, walk_parts
from scanners.mime.filetype import exec_kind, sniff
from scanners.mime.parse import (
    decoded_payload,
    display_header,
    parse,
    part_filename,
    part_payload,
    strict_b64decode,
    without_line_breaks,
)


def test_display_header_decodes_and_unfolds() -> None:
    msg = parse(
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n =?utf-8?q?_aus_K=C3=B6ln?= today\n"
        b'From: "=?iso-8859-1?q?J=F6rg?=" <j@example.com>\nTo: a@example.org,\n\tc@example.org\n\nbody\n'
    )
    assert display_header(msg, "subject") == "Grüße aus Köln today"
    assert display_header(msg, "From") == '"Jörg" <j@example.com>'
    assert display_header(msg, "To") == "a@example.org, c@example.org"
    assert display_header(msg, "Cc") is None


def test_parts_are_numbered_and_hashed() -> None:
    msg = parse(
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhello\n'
        b'--b\nContent-Type: application/octet-stream; name="a.bin"\nContent-Transfer-Encoding: base64\n\n'
        b"TVqQAAMAAAAEAAAA\n--b--\n"
    )
    parts, scan, defects = walk_parts(msg)
    assert [p.path for p in parts] == ["1", "2"]
    assert parts[1].filename == "a.bin" and parts[1].size == 12
    assert scan[1].payload.startswith(b"MZ")
    assert defects == []


header_line = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([b"Subject", b"From", b"To", b"Content-Type", b"X-A"]), header_line), max_size=8),
       st.binary(max_size=500))
def test_arbitrary_headers_and_bodies_never_raise(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    raw = b"".join(k + b": " + v + b"\n" for k, v in headers) + b"\n" + body
    msg = parse(raw)
    header_summary(msg)
    walk_parts(msg)


@settings(max_examples=100)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    msg = parse(raw)
    header_summary(msg)
    walk_parts(msg)


# -- the header cache (scanners.mime.parse.POLICY) must not change what anyone sees ---------------------
def _view(msg: object) -> list[tuple[object, ...]]:
    from email.message import Message

    assert isinstance(msg, Message)
    out: list[tuple[object, ...]] = []
    for part in msg.walk():
        out.append((part.get_content_type(), part.get_filename(), part.get_param("charset"),
                    part.get_content_disposition(), [str(v) for _, v in part.items()],
                    [type(d).__name__ for d in part.defects]))
    return out


def _default_parse(raw: bytes) -> object:
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(raw)


def test_cached_policy_sees_what_policy_default_sees_on_the_corpus() -> None:
    from qscan.testing.corpus import load_corpus

    for m in load_corpus():
        assert _view(parse(m.data)) == _view(_default_parse(m.data)), m.name
        # twice: the second parse is served from the cache
        assert _view(parse(m.data)) == _view(_default_parse(m.data)), m.name


_header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(ctype=_header_text, disp=_header_text, name=_header_text)
def test_cached_policy_matches_default_on_hostile_parameters(ctype: str, disp: str, name: str) -> None:
    raw = (f"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: {ctype}; name=\"{name}\"\n"
           f"Content-Disposition: {disp}; filename={name}\n\nx\n--b\nContent-Type: {ctype}\n\ny\n--b--\n")
    data = raw.encode("utf-8", "surrogateescape")
    for _ in range(2):
        assert _view(parse(data)) == _view(_default_parse(data))


def test_giant_headers_are_not_kept_across_messages() -> None:
    import scanners.mime.parse as mime

    mime._FETCHED.clear()
    big = "x" * (mime._FETCH_CACHE_MAX_VALUE + 1)
    msg = parse(f"Subject: {big}\nContent-Type: text/plain\n\nbody\n".encode())
    assert msg["Subject"] == big and msg.get_content_type() == "text/plain"
    assert all(len(v) <= mime._FETCH_CACHE_MAX_VALUE for _, v in mime._FETCHED)
    assert ("Content-Type", "text/plain") in mime._FETCHED


# -- one PE check: the event's detected type (sniff) and the internal scanner (exec_kind) agree --

def _mz(e_lfanew: int, size: int, pe_at: int | None) -> bytes:
    data = bytearray(b"MZ" + bytes(0x3A) + e_lfanew.to_bytes(4, "little"))
    data = data.ljust(size, b"\0")
    if pe_at is not None and pe_at + 4 <= size:
        data[pe_at : pe_at + 4] = b"PE\0\0"
    return bytes(data[:size])


def test_a_pe_header_closing_the_data_is_a_pe() -> None:
    # the two old copies differed here: one wanted a byte after 'PE\0\0', the other did not
    data = _mz(0x40, 0x44, 0x40)
    assert exec_kind(data) == "pe"
    assert sniff(data) == "application/x-dosexec"
    assert sniff(data[:-1]) is None and exec_kind(data[:-1]) is None


@settings(max_examples=300, deadline=None)
@given(e_lfanew=st.integers(0, 0x200), size=st.integers(0, 0x220),
       pe_at=st.one_of(st.none(), st.integers(0, 0x220)))
def test_sniff_and_exec_kind_agree_on_pe(e_lfanew: int, size: int, pe_at: int | None) -> None:
    data = _mz(e_lfanew, size, pe_at)
    assert (sniff(data) == "application/x-dosexec") == (exec_kind(data) == "pe")


# -- decoded_payload: the stdlib's bytes and defects, fewer copies ----------------------------
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@st.composite
def _encoded_payload(draw: st.DrawFn) -> bytes:
    """A base64 or quoted-printable body as mail carries it, then damaged: line breaks of every
    kind anywhere, padding cut, bytes outside the alphabet (8-bit ones too), lengths 1 over."""
    data = draw(st.binary(max_size=300))
    text = base64.b64encode(data) if draw(st.booleans()) else quopri.encodestring(data)
    width = draw(st.sampled_from([0, 4, 76, 77]))
    if width:
        text = b"\n".join(text[i:i + width] for i in range(0, len(text), width))
    if draw(st.booleans()):
        text = text.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r", b"\n\n", b" \n"])))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["strip", "insert", "cut"]))
        at = draw(st.integers(0, len(text)))
        if op == "strip":
            text = text.rstrip(b"=\r\n")
        elif op == "insert":
            junk = draw(st.binary(min_size=1, max_size=3) | st.sampled_from([b"=", b"==", b"\r", b"-", b"\x85"]))
            text = text[:at] + junk + text[at:]
        else:
            text = text[:at] + text[at + 1:]
    return text + draw(st.sampled_from([b"", b"\n", b"\r\n", b"=\n", b"A"]))


@settings(max_examples=1500, deadline=None)
@given(payload=_encoded_payload(),
       cte=st.sampled_from([b"base64", b"BASE64", b"quoted-printable", b"7bit", b"8bit", b"", b"x-uuencode",
                            b"base64 ", b"binary"]),
       multipart=st.booleans())
def test_decoded_payload_is_the_stdlibs(payload: bytes, cte: bytes, multipart: bool) -> None:
    head = b"Content-Type: application/octet-stream\n" + (
        b"Content-Transfer-Encoding: " + cte + b"\n" if cte else b"")
    if multipart:
        raw = (b'Content-Type: multipart/mixed; boundary="zz"\n\n--zz\n' + head + b"\n" + payload
               + b"\n--zz--\n")
    else:
        raw = head + b"\n" + payload
    fast, slow = parse(raw), parse(raw)
    leaf_fast = fast.get_payload()[0] if multipart else fast
    leaf_slow = slow.get_payload()[0] if multipart else slow
    assert decoded_payload(leaf_fast) == leaf_slow.get_payload(decode=True)
    assert [type(d) for d in leaf_fast.defects] == [type(d) for d in leaf_slow.defects]
    assert part_payload(leaf_fast) == part_payload(leaf_slow)
    assert decoded_payload(fast if multipart else leaf_fast) == (slow if multipart else leaf_slow).get_payload(
        decode=True)


@st.composite
def _base64_quads(draw: st.DrawFn) -> bytes:
    """Text of a length divisible by 4 from the base64 alphabet and '=' (padding anywhere, in
    any amount), or a real encoding with a character swapped: what strict mode must judge."""
    if draw(st.booleans()):
        text = bytearray(base64.b64encode(draw(st.binary(max_size=40))))
        if text and draw(st.booleans()):
            text[draw(st.integers(0, len(text) - 1))] = draw(st.sampled_from(_B64_CHARS))
        return bytes(text)
    quads = draw(st.integers(0, 6))
    return bytes(draw(st.lists(st.sampled_from(_B64_CHARS + b"===="), min_size=4 * quads, max_size=4 * quads)))


@settings(max_examples=3000, deadline=None)
@given(text=_base64_quads())
def test_strict_b64decode_is_binascii_strict_mode(text: bytes) -> None:
    """pybase64 first, binascii when it refuses: the same bytes and the same refusals as
    ``a2b_base64(strict_mode=True)`` (what the stdlib's get_payload tries first)."""
    try:
        want: bytes | None = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        want = None
    try:
        got: bytes | None = strict_b64decode(text)
    except binascii.Error:
        got = None
    assert got == want


@given(data=st.binary(max_size=200).map(lambda b: b.replace(b"\0", b"\r")))
def test_without_line_breaks_is_translate(data: bytes) -> None:
    assert without_line_breaks(data) == data.translate(None, b"\r\n")


def _stdlib_filename(part: object) -> str | None:
    from email.message import Message

    assert isinstance(part, Message)
    try:
        name = part.get_filename()
    except Exception:
        return None
    return str(name) if name else None


_param_piece = st.sampled_from(["name", "NAME", "NAME=a", "Name=b", "FileName=c", "name*=utf-8''x", "Name*0=d",
                                "filename", "Name*", "name*0*", "name*1", "fileName*0", "nam", "=?utf-8?q?name=3Dx?=", "=?utf-8?q?fi=6Cename=3Dy?=", "=", ";", '"', "'", " ",
                                "\n ", "x", "utf-8''a%41", "(name=c)", "\u212a"])


@settings(max_examples=600, deadline=None)
@given(ctype=st.lists(_param_piece, max_size=8).map("".join) | _header_text,
       disp=st.lists(_param_piece, max_size=8).map("".join) | _header_text,
       which=st.sampled_from(["both", "type", "disposition", "none"]))
def test_part_filename_is_get_filenames(ctype: str, disp: str, which: str) -> None:
    head = ""
    if which in ("both", "type"):
        head += f"Content-Type: text/plain; {ctype}\n"
    if which in ("both", "disposition"):
        head += f"Content-Disposition: attachment; {disp}\n"
    data = (f"Content-Type: multipart/mixed; boundary=b\n\n--b\n{head}\nx\n--b--\n").encode(
        "utf-8", "surrogateescape")
    try:
        msg = parse(data)
    except IndexError:  # the stdlib's header parser on a bare 'name*' (the processor's unparseable path)
        assume(False)
    for part in msg.walk():
        assert part_filename(part) == _stdlib_filename(part)


# -- headers the stdlib's own structured parser cannot read ----------------------------------------
def test_a_parameter_the_stdlib_parser_crashes_on_leaves_a_readable_part() -> None:
    """``Name*`` with no value is an IndexError inside CPython's header parser: the part is read
    from the header's text instead (type, no filename), and the walk goes on."""
    raw = (b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: application/octet-stream; Name*\r\n"
           b"Content-Disposition: attachment; filename*\r\n\r\nAAAA\r\n--x--\r\n")
    msg = parse(raw)
    leaf = list(msg.walk())[1]
    assert leaf.get_content_type() == "application/octet-stream"
    assert part_filename(leaf) is None
    assert [p.content_type for p in walk_parts(msg)[0]] == ["application/octet-stream"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab*=;\"' \\()<>@,:/?[]%\t\r\n")), max_size=40))
def test_any_content_type_parameters_parse(params: str) -> None:
    raw = f"From: a@b\r\nContent-Type: text/plain; {params}\r\n\r\nbody\r\n".encode()
    msg = parse(raw)
    msg.get_content_type()
    part_filename(msg)
    walk_parts(msg)
